"""lakelab: alignment objectives made visible, comparable and verifiably correct.

Modules and the concepts they hold:

- ``lakelab.lakes``: Frozen Lake maps, validation, presets, random lakes (``make_lake``).
- ``lakelab.solver``: exact tabular DP: value iteration, soft value iteration, policy
  evaluation, state visitation, success probability, finite horizons.
- ``lakelab.objectives``: SFT, IFT, DPO, IPO, ORPO, ASFT, SimPO as pure tensor functions.
- ``lakelab.reductions``, ``lakelab.residual``: S(y)/A(y), IFT token weights, IFT eq. 17.
- ``lakelab.registry``: ``OBJECTIVES`` and ``compute_objective``, what training loops call.
- ``lakelab.analysis``: gradients w.r.t. chosen/rejected log-probs (the ASFT claim).
- ``lakelab.plotting``: lakes with values as heatmaps and policies as arrows.
- ``lakelab.files``: atomic result files.
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

__all__ = [
    "PRESETS",
    "Lake",
    "Solution",
    "TabularMDP",
    "finite_horizon_values",
    "make_lake",
    "policy_evaluation",
    "random_lake",
    "soft_value_iteration",
    "state_visitation",
    "success_probability",
    "value_iteration",
]
__version__ = "0.1.0"
