"""The Frozen Lake track: a two-layer MLP policy fine-tuned on exact lakes (IFT paper, 5.3).

Modules in reading order:

- ``config``: ``LakeConfig``, every knob of the experiment, and its presets.
- ``model``: the MLP policy over one-hot states, many seeds stacked; ``optim``: Adam.
- ``data``: trajectories, episodes as arrays, padded batches; ``sampling``: episodes from a
  policy in the exact MDP (plain and vectorised).
- ``experiment``: the set-up every method shares (pi*, theta_0, theta*, chosen and offline
  pools).
- ``logps``: from the policy to the per-token log-probs the objectives consume.
- ``train``: the plain training loop, one objective and one seed, top to bottom.
- ``metrics``: exact metrics from the tabular MDP.
- ``negatives``, ``joint``: the fast path, every method and seed in one batched loop.
- ``runs``, ``report``: resumable run directories (``lakelab lake``) and their figure.
- ``sweep``, ``sweep_run``, ``sweep_report``: grids of protocols (``lakelab sweep``).
"""
