"""The LM track: the same objectives on a tiny causal transformer that plans on Frozen Lake.

A prompt is a lake written as characters, a response is a plan (moves, then an end token);
the exact solver knows the optimal plans and the soft-optimal policy, and the real Gymnasium
environment executes what the model writes. Modules, in reading order:

- ``tokenizer``: the 12-character vocabulary, lakes and plans as text, bad characters rejected.
- ``model``: ``TinyGPT`` (nanoGPT-sized, ``scaled_dot_product_attention``), presets, generation.
- ``kv_cache``: the key-value cache of fast generation (``generate(cache=True)``).
- ``data``: seeded train / held-out lakes, solver ground truth, the mixed-quality corpus,
  chosen and rejected plans, padded token tensors.
- ``config``: ``LMConfig``, every knob documented and validated; presets ``quick``, ``default``.
- ``train``: pre-training and alignment through ``lakelab.registry.compute_objective``; IFT's
  temporal residual on token embeddings; the reference log-prob cache.
- ``stacked``, ``batched``: the seeds of a run trained together, one ``StackedGPT`` whose
  rows are the seeds' models; bit-equal to ``train`` one seed after another.
- ``metrics``: held-out success in the real env, shortest-plan rate, token KL to pi*,
  log-likelihoods of chosen and rejected plans.
- ``rl``: the on-policy RL methods (REINFORCE, RLOO, GRPO) on sampled plans.
- ``runs``, ``report``: resumable run directories (``lakelab lm``) and their figure.
- ``lr_grid``: a learning rate per objective, chosen on validation lakes (``lakelab lm-lr``).
"""
