"""lakelab: alignment objectives made visible, comparable and verifiably correct.

The foundations, in reading order:

- ``lakelab.lakes``: Frozen Lake maps, validation, presets, random lakes (``make_lake``).
- ``lakelab.solver``: exact tabular DP: value iteration, soft value iteration, policy
  evaluation, state visitation, success probability, finite horizons.
- ``lakelab.objectives``: SFT, IFT, DPO, IPO, ORPO, ASFT, SimPO as pure tensor functions;
  ``lakelab.reductions`` (S(y), A(y), IFT's token weights) and ``lakelab.residual`` (IFT's
  temporal residual, eq. 17) beside them.
- ``lakelab.registry``: every objective by name with its formula, paper and hyper-parameters,
  and ``compute_objective``, what the training loops call; ``register_objective`` adds your
  own (``lakelab.objective_spec`` says what a well-formed one is), ``mixture`` and
  ``weight`` make one of others (``lakelab.mixtures``).
- ``lakelab.analysis``: gradients w.r.t. chosen/rejected log-probs (the ASFT claim).
- ``lakelab.plotting``: lakes with values as heatmaps and policies as arrows.
- Shared by both tracks: ``validate`` (range checks), ``configs`` (what both configs share),
  ``stats`` (95% t-intervals), ``rundir`` (resumable run directories), ``files`` (atomic
  writes), ``training`` (one torch thread, the divergence error).

The two tracks, each a package with the same file names (config, model, data, train,
metrics, runs, report): ``lakelab.mlp`` (the IFT paper's Frozen Lake experiment, a two-layer
MLP policy) and ``lakelab.lm`` (a tiny transformer that writes plans for lakes). The
``lakelab`` command is ``lakelab.cli``.
"""

from lakelab.lakes import PRESETS, Lake, make_lake, random_lake
from lakelab.solver import (
    Solution,
    TabularMDP,
    finite_horizon_values,
    policy_evaluation,
    soft_value_iteration,
    state_visitation,
    success_probability,
    value_iteration,
)

# the registry imports torch: its names load on first use, so `lakelab solve` stays light
_FROM_REGISTRY = (
    "HyperParam", "Objective", "mixture", "register_objective", "unregister_objective", "weight"
)  # fmt: skip


def __getattr__(name: str):
    if name in _FROM_REGISTRY:
        from lakelab import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'lakelab' has no attribute {name!r}")


__all__ = [
    "PRESETS",
    "HyperParam",
    "Lake",
    "Objective",
    "Solution",
    "TabularMDP",
    "finite_horizon_values",
    "make_lake",
    "mixture",
    "policy_evaluation",
    "random_lake",
    "register_objective",
    "soft_value_iteration",
    "state_visitation",
    "success_probability",
    "unregister_objective",
    "value_iteration",
    "weight",
]
__version__ = "0.1.0"
