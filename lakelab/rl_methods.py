"""The on-policy RL methods by name: REINFORCE, RLOO, GRPO and PPO, beside the preference
objectives of ``lakelab.registry``.

An RL method learns from episodes its own policy samples, not from a fixed dataset: each
step the loop samples ``group_size`` episodes per group, scores them with the environment's
reward, turns rewards into advantages (``advantage``) and takes ``inner_steps`` optimiser
steps on the method's loss (``lakelab.policy_gradient``), whose ratios compare the current
policy with the one that sampled. Each entry holds the facts the docs, the CLI and the
loops show, as ``lakelab.objective_spec.Objective`` does for the preference objectives:

    get_rl_method("grpo").hyperparams     # group_size, epsilons, beta, aggregation, ...
    resolve_rl_hparams("grpo", {"beta": 0.04})

The lake trains them (``lakelab.mlp.online``, ``lakelab lake --methods grpo ...``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lakelab import policy_gradient as pg
from lakelab.objective_spec import HyperParam
from lakelab.sequences import resolve
from lakelab.validate import Interval

__all__ = ["ADVANTAGES", "RL_METHODS", "RLMethod", "get_rl_method", "is_rl_method",
           "resolve_rl_hparams"]  # fmt: skip

ADVANTAGES = ("baseline", "gae", "group", "leave_one_out")
GROUP = Interval(2.0, None)
STEPS = Interval(1.0, None)
NONNEGATIVE = Interval(0.0, None)


@dataclass(frozen=True)
class RLMethod:
    """An on-policy RL method: its loss in ``lakelab.policy_gradient`` and its facts."""

    name: str
    title: str
    advantage: str
    """How rewards become advantages: "baseline" (minus the batch mean), "leave_one_out"
    (RLOO), "group" (GRPO's normalised), "gae" (PPO, per token, with a value head)."""
    hyperparams: tuple[HyperParam, ...]
    summary: str
    formula: str
    paper: str
    equation: str = ""
    trl: dict[str, dict[str, Any]] = field(default_factory=dict)
    """TRL spellings whose loss code this method's loss reproduces (tested)."""

    @property
    def citation(self) -> str:
        return f"{self.paper}, {self.equation}" if self.equation else self.paper


def _int(name: str, default: int, interval: Interval, help: str) -> HyperParam:
    return HyperParam(name, default, interval=interval, help=help)


def _real(name: str, default: float, interval: Interval, help: str) -> HyperParam:
    return HyperParam(name, default, interval=interval, help=help)


def _common(inner: int) -> tuple[HyperParam, ...]:
    return (
        _int("group_size", 8, GROUP, "episodes sampled per group (G); batch_size / G groups"),
        _int("inner_steps", inner, STEPS, "optimiser steps on each sampled batch"),
        _real("step_penalty", 0.0, NONNEGATIVE, "reward lost per move (the goal gives 1)"),
    )


CLIPPING = (
    _real("epsilon_low", 0.2, pg.CLIP, "clip rho below at 1 - epsilon_low"),
    _real("epsilon_high", 0.2, pg.CLIP, "clip rho above at 1 + epsilon_high (DAPO: 0.28)"),
)

RL_METHODS: dict[str, RLMethod] = {
    "reinforce": RLMethod(
        name="reinforce",
        title="REINFORCE (batch-mean baseline)",
        advantage="baseline",
        hyperparams=_common(1),
        summary="Raise the log-likelihood of each sampled episode by its reward minus the "
        "batch's mean reward.",
        formula="L = -mean_i A_i S(y_i); A_i = r_i - mean_j r_j",
        paper="Williams 1992, Machine Learning 8",
    ),
    "rloo": RLMethod(
        name="rloo",
        title="RLOO",
        advantage="leave_one_out",
        hyperparams=(*_common(1), *CLIPPING),
        summary="REINFORCE whose baseline for each episode is the mean reward of the other "
        "episodes of its group, with TRL's sequence-level clipped ratio.",
        formula="L = mean_i -min(rho_i A_i, clip(rho_i) A_i); A_i = r_i - mean_{j != i} r_j",
        paper="Ahmadian et al. 2024, arXiv 2402.14740",
        equation="eq. 8",
        trl={"RLOOTrainer(beta=0.0)": {}},  # TRL's KL-penalised rewards (beta > 0): not here
    ),
    "grpo": RLMethod(
        name="grpo",
        title="GRPO",
        advantage="group",
        hyperparams=(
            *_common(1),
            *CLIPPING,
            _real("beta", 0.0, NONNEGATIVE, "weight of the k3 KL to the reference (TRL: 0)"),
            HyperParam(
                "aggregation",
                "dapo",
                choices=pg.AGGREGATIONS,
                help="the tokens' mean: dapo (TRL's default), grpo, bnpo, dr_grpo",
            ),
            HyperParam(
                "scale",
                "group",
                choices=pg.SCALES,
                help="advantages divided by the group's std, the batch's, or none",
            ),
        ),
        summary="Clipped policy gradient with advantages normalised within each group of "
        "episodes, no value function.",
        formula="l_t = -min(rho_t A, clip(rho_t) A) + beta k3_t; "
        "A_i = (r_i - mean_g r) / (std_g r + 1e-4)",
        paper="Shao et al. 2024, arXiv 2402.03300",
        equation="eq. 3",
        trl={
            "GRPOTrainer(loss_type='dapo')": {"aggregation": "dapo"},
            "GRPOTrainer(loss_type='grpo')": {"aggregation": "grpo"},
            "GRPOTrainer(loss_type='bnpo')": {"aggregation": "bnpo"},
            "GRPOTrainer(loss_type='dr_grpo')": {"aggregation": "dr_grpo"},
        },
    ),
    "ppo": RLMethod(
        name="ppo",
        title="PPO",
        advantage="gae",
        hyperparams=(
            *_common(4),
            _real("epsilon_low", 0.2, pg.CLIP, "clip rho to 1 +- epsilon"),
            _real("gae_lambda", 0.95, pg.UNIT, "GAE's lambda"),
            _real("vf_coef", 0.5, NONNEGATIVE, "weight of the value loss"),
            _real("value_clip", 0.2, NONNEGATIVE, "the value's move per batch is clipped"),
        ),
        summary="Clipped policy gradient on per-step advantages from a learned value (GAE).",
        formula="L = mean_t -min(rho_t A_t, clip(rho_t) A_t) + vf_coef L_V; "
        "A_t = sum_k (gamma lam)^k delta_{t+k}",
        paper="Schulman et al. 2017, arXiv 1707.06347",
        equation="eqs. 7, 9",
    ),
}


def is_rl_method(name: str) -> bool:
    return name in RL_METHODS


def get_rl_method(name: str) -> RLMethod:
    if name not in RL_METHODS:
        raise ValueError(f"unknown RL method {name!r}; valid: {sorted(RL_METHODS)}")
    return RL_METHODS[name]


def resolve_rl_hparams(name: str, overrides: dict | None = None) -> dict:
    """Every hyper-parameter of RL method ``name``, defaults updated by ``overrides`` and
    checked (ValueError naming the bad value); integer knobs come back as ints."""
    method = get_rl_method(name)
    hp = resolve(method, overrides)  # numbers as floats, ranges checked
    for key in ("group_size", "inner_steps"):
        if hp[key] != int(hp[key]):
            raise ValueError(f"{name}: {key} must be an integer, got {hp[key]!r}")
        hp[key] = int(hp[key])
    return hp
