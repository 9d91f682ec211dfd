"""Configuration of the Frozen Lake alignment experiment (IFT paper, section 5.3).

The paper publishes no map, sizes or hyper-parameters; every choice below is ours, named and
documented so a student can change it (``lakelab lake --help``, or a JSON file of fields).
Values are validated where they enter: a bad field raises ``ValueError`` naming it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lakelab.configs import METHODS, TrackConfig, choose_preset
from lakelab.lakes import make_lake
from lakelab.registry import BUILTINS
from lakelab.rl_methods import RL_METHODS
from lakelab.validate import check_choice, check_real

CHOSEN_MODES = ("demos", "single")
NEGATIVE_MODES = ("offline", "online")
OFFLINE_SOURCES = ("suboptimal", "initial")


@dataclass(frozen=True)
class LakeConfig(TrackConfig):
    """One protocol of the experiment. All randomness flows from ``first_seed``."""

    lake: str = "two-paths"
    """Preset name or map rows joined by '/'. The default has exactly one optimal (8 moves)
    and one sub-optimal (12 moves) route, as the paper's map is described."""
    slippery: bool = False
    """Gymnasium's is_slippery."""
    success_rate: float = 1 / 3
    """Slippery lakes: probability of the intended move."""
    gamma: float = 0.9
    """Discount of the soft optimum, the returns and the visitation distribution."""
    tau: float = 0.02
    """Temperature of soft value iteration: pi* = softmax(Q*/tau). Small enough that
    tau log 4 / (1 - gamma) < 1 (else the soft optimum prefers wandering to the goal)."""
    hidden: int = 32
    """Width of the MLP's hidden layer (paper: "a two-layer fully connected network")."""
    activation: str = "tanh"
    """Hidden nonlinearity: tanh or relu."""
    optimum_steps: int = 1000
    """Adam steps fitting theta* (theta_0 trained on pi*'s action probabilities)."""
    optimum_lr: float = 0.02
    """Learning rate of that fit (cosine-decayed to 0)."""
    optimum_kl_target: float = 1e-3
    """theta* must reach this mean KL(pi* || pi_theta*) over live states, else an error."""
    methods: tuple[str, ...] = METHODS
    """Objectives to fine-tune with, from ``lakelab.registry.OBJECTIVES``."""
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-method hyper-parameter overrides, e.g. {"dpo": {"beta": 0.5}}; defaults from
    the registry."""
    chosen: str = "demos"
    """Chosen data from pi*: "demos" (n_demos successful episodes sampled from the soft
    optimum) or "single" (the one optimal route, the tau -> 0 limit)."""
    n_demos: int = 256
    """Number of demonstrations in "demos" mode."""
    negatives: str = "online"
    """Rejected data: "offline" (a fixed pool, see offline_source) or "online" (sampled from
    the current policy each step, never equal to a chosen trajectory)."""
    offline_source: str = "suboptimal"
    """Offline pool: "suboptimal" (the fixed sub-optimal route) or "initial" (episodes
    sampled from pi_theta_0)."""
    batch_size: int = 64
    """Chosen (and rejected) trajectories per step and seed."""
    steps: int = 300
    """Fine-tuning steps, the same budget for every method."""
    lr: float = 0.01
    """Adam learning rate of fine-tuning, the same for every method."""
    log_every: int = 10
    """Exact metrics are computed every this many steps (and at the last)."""
    seeds: int = 10
    """Number of seeds; each has its own theta_0, theta*, data and negatives."""
    first_seed: int = 0
    """Seeds are first_seed .. first_seed + seeds - 1."""
    max_len: int = 100
    """Sampled episodes are cut after this many moves (Gymnasium's 4x4 limit)."""
    explored_share: float = 0.005
    """A cell counts as explored once it holds at least this share of the explored mass."""

    def __post_init__(self) -> None:
        make_lake(self.lake, slippery=self.slippery, success_rate=self.success_rate)
        check_real("gamma", self.gamma, 0.0, 1.0, high_open=True)
        check_real("tau", self.tau, 0.0, low_open=True)
        if self.tau * math.log(4) / (1 - self.gamma) >= 1.0:
            raise ValueError(
                f"tau * log 4 / (1 - gamma) = {self.tau * math.log(4) / (1 - self.gamma):.3g} "
                f"must be < 1 (tau={self.tau}, gamma={self.gamma}): otherwise the entropy bonus "
                "outweighs the goal and the soft optimum wanders instead of finishing"
            )
        positive = ("hidden", "optimum_steps", "n_demos", "batch_size", "log_every", "seeds")
        self.check_ints(positive=(*positive, "max_len"), nonneg=("steps", "first_seed"))
        check_real("optimum_lr", self.optimum_lr, 0.0, low_open=True)
        check_real("lr", self.lr, 0.0, low_open=True)
        check_real("optimum_kl_target", self.optimum_kl_target, 0.0, low_open=True)
        check_real("explored_share", self.explored_share, 0.0, 1.0, low_open=True, high_open=True)
        check_choice("activation", self.activation, ("relu", "tanh"))
        check_choice("chosen", self.chosen, CHOSEN_MODES)
        check_choice("negatives", self.negatives, NEGATIVE_MODES)
        check_choice("offline_source", self.offline_source, OFFLINE_SOURCES)
        self.check_methods()


PRESETS: dict[str, LakeConfig] = {
    "paper": LakeConfig(),
    "quick": LakeConfig(
        seeds=3, steps=60, optimum_steps=400, n_demos=64, batch_size=32, log_every=20
    ),
    "all": LakeConfig(methods=BUILTINS),  # the paper's protocol, every built-in objective
    "rl": LakeConfig(methods=tuple(RL_METHODS)),  # on-policy RL, the paper's lake and budget
}


def preset(name: str) -> LakeConfig:
    return choose_preset(PRESETS, name)


config_from_dict = LakeConfig.from_dict  # a config from a dict of fields (JSON), over a base
