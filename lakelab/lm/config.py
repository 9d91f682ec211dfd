"""Configuration of the LM track: lakes as prompts, plans as responses, a tiny transformer.

Every choice is ours (no paper fixes them), named and documented here; ``lakelab lm --help``
lists every field as a flag. A bad field raises ``ValueError`` naming it and what is allowed.
Presets: ``quick`` (tens of seconds, three objectives, the tests run it) and ``default`` (every
objective, 10 seeds, a weak base and a learning rate per objective; the table in
docs/lm-track.md). Both use 4x4 lakes: at this budget 4x4 does not saturate.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from lakelab.configs import METHODS, TrackConfig, choose_preset
from lakelab.lm.model import model_config
from lakelab.lm.tokenizer import prompt_length
from lakelab.registry import OBJECTIVES, get_objective
from lakelab.rl_methods import RL_METHODS, get_rl_method, is_rl_method
from lakelab.validate import check_choice, check_real

NEGATIVE_MODES = ("offline", "online")
EVALUATE_ON = ("test", "validation")


@dataclass(frozen=True)
class LMConfig(TrackConfig):
    """One protocol of the LM experiment. Lakes come from ``lake_seed`` (the data set, the
    same for every seed); each seed has its own model initialisation, corpus, chosen ties,
    rejected plans and batches."""

    size: int = 4
    """Side of the square random lakes (S top-left, G bottom-right)."""
    p_frozen: float = 0.8
    """Probability that a cell is ice rather than a hole (Gymnasium's default)."""
    n_train: int = 2400
    """Distinct training lakes: pre-training corpus and alignment prompts."""
    n_test: int = 200
    """Distinct held-out lakes, none of them a training lake: every metric is on these."""
    n_val: int = 200
    """Distinct validation lakes, neither training nor held-out lakes: ``lakelab lm-lr``
    chooses learning rates on these (``evaluate_on="validation"``)."""
    evaluate_on: str = "test"
    """The lakes every metric is measured on: "test" (the held-out lakes) or "validation"."""
    lake_seed: int = 0
    """Seed of the lakes."""
    gamma: float = 0.9
    """Discount of the solver: < 1, so a wall bump is never optimal and shorter is better."""
    tau: float = 0.01
    """Temperature of the soft optimum pi* = softmax(Q*/tau) that the token KL compares
    against; tau log 4 / (1 - gamma) must stay below 1 (else pi* wanders)."""
    max_moves: int = 12
    """Longest corpus walk; generation stops after max_moves + 1 tokens (moves and end)."""
    corpus_per_lake: int = 2
    """Base-model plans per training lake."""
    corpus_mix: tuple[float, float, float] = (0.25, 0.45, 0.30)
    """Shares of optimal, avoiding and random plans in the corpus (docs/lm-track.md)."""
    model: str = "micro"
    """Transformer preset of ``lakelab.lm.model.MODEL_PRESETS``."""
    batch_size: int = 64
    """Sequences per step (pairs for paired objectives), pre-training and alignment."""
    pretrain_steps: int = 600
    """AdamW steps of pre-training (SFT on the mixed corpus) that make the base model."""
    pretrain_lr: float = 3e-3
    """Learning rate of pre-training."""
    pretrain_log_every: int = 200
    """The base model is evaluated every this many pre-training steps (and at the last)."""
    align_steps: int = 200
    """Alignment steps, the same budget and batches for every method."""
    align_lr: float = 1e-3
    """AdamW learning rate of alignment, for every method not in ``align_lrs``."""
    align_lrs: dict[str, float] = field(default_factory=dict)
    """Per-method learning rates of alignment, e.g. {"dpo": 3e-4}, over ``align_lr``. The
    default preset's are chosen on validation lakes by ``lakelab lm-lr`` (docs/lm-track.md)."""
    weight_decay: float = 0.0
    """AdamW weight decay (0: the loss is the objective and nothing else)."""
    methods: tuple[str, ...] = METHODS
    """Objectives, from ``lakelab.registry.OBJECTIVES``."""
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-method overrides, e.g. {"dpo": {"beta": 0.5}}; defaults from the registry."""
    negatives: str = "offline"
    """Rejected plans: "offline" (one fixed sub-optimal or failing walk per lake) or
    "online" (sampled from the current model each step; optimal samples are replaced by the
    offline plan and counted in the metric ``online_fallback``)."""
    log_every: int = 50
    """Held-out metrics every this many alignment steps (and at the last)."""
    seeds: int = 3
    """Number of seeds."""
    first_seed: int = 0
    """Seeds are first_seed .. first_seed + seeds - 1."""

    def __post_init__(self) -> None:
        sizes = ("size", "n_train", "n_test", "n_val", "max_moves", "corpus_per_lake",
                 "batch_size")  # fmt: skip
        self.check_ints(
            positive=(*sizes, "pretrain_log_every", "log_every", "seeds"),
            nonneg=("pretrain_steps", "align_steps", "lake_seed", "first_seed"),
        )
        check_real("p_frozen", self.p_frozen, 0.0, 1.0, low_open=True)
        check_real("gamma", self.gamma, 0.0, 1.0, low_open=True, high_open=True)
        check_real("tau", self.tau, 0.0, low_open=True)
        if self.tau * math.log(4) / (1 - self.gamma) >= 1.0:
            raise ValueError(
                f"tau * log 4 / (1 - gamma) must be < 1, got tau={self.tau}, "
                f"gamma={self.gamma}: the soft optimum would wander instead of finishing"
            )
        for name in ("pretrain_lr", "align_lr"):
            check_real(name, getattr(self, name), 0.0, low_open=True)
        check_real("weight_decay", self.weight_decay, 0.0)
        mix = tuple(self.corpus_mix)
        if len(mix) != 3 or any(not isinstance(x, int | float) or x < 0 for x in mix):
            raise ValueError(f"corpus_mix must be 3 shares >= 0, got {self.corpus_mix!r}")
        if not math.isclose(sum(mix), 1.0):
            raise ValueError(f"corpus_mix must sum to 1, got {mix} (sum {sum(mix):g})")
        object.__setattr__(self, "corpus_mix", tuple(float(x) for x in mix))
        if self.n_train < self.batch_size:
            raise ValueError(
                f"n_train ({self.n_train}) must be >= batch_size ({self.batch_size}): a batch "
                "holds distinct lakes"
            )
        model = model_config(self.model)
        if self.seq_len - 1 > model.block_size:
            raise ValueError(
                f"a {self.size}x{self.size} prompt ({prompt_length(self.size)} tokens) plus "
                f"max_moves {self.max_moves} and the end token needs block_size >= "
                f"{self.seq_len - 1}; model {self.model!r} has {model.block_size}"
            )
        check_choice("negatives", self.negatives, NEGATIVE_MODES)
        check_choice("evaluate_on", self.evaluate_on, EVALUATE_ON)
        self.check_methods()
        if not isinstance(self.align_lrs, dict):
            raise ValueError(
                f"align_lrs must map methods to learning rates, got {self.align_lrs!r}"
            )
        known = (*OBJECTIVES, *RL_METHODS)
        for method, lr in self.align_lrs.items():
            if method not in known:
                raise ValueError(f"align_lrs: unknown method {method!r}; known: {sorted(known)}")
            check_real(f"align_lrs[{method!r}]", lr, 0.0, low_open=True)
        for m in (m for m in self.methods if is_rl_method(m)):
            if get_rl_method(m).advantage == "gae":
                raise ValueError(
                    f"{m}: its value head and inner steps run on the lake only "
                    "(lakelab lake --methods ...); the LM track has reinforce, rloo and grpo"
                )
            if self.method_hparams(m)["inner_steps"] != 1:
                raise ValueError(
                    f"{m}: inner_steps must be 1 on the LM track (one optimiser step per "
                    "sampled batch), got " + str(self.method_hparams(m)["inner_steps"])
                )
            group = self.method_hparams(m)["group_size"]
            if self.batch_size % group:
                raise ValueError(
                    f"{m}: batch_size {self.batch_size} must be a multiple of group_size "
                    f"{group} (each lake's prompt is sampled group_size times)"
                )
        mismatched = [
            m for m in self.methods if not is_rl_method(m) and get_objective(m).mismatched
        ]
        if mismatched and self.batch_size < 2:
            raise ValueError(
                f"batch_size must be >= 2 for {mismatched}: their mismatched pairs join each "
                "lake's prompt to another lake's plan, and a batch of 1 has no other lake"
            )

    def fingerprint(self, *, exclude: tuple[str, ...] = ("methods", "seeds")) -> str:
        """``TrackConfig.fingerprint`` plus the shape behind the ``model`` preset's name: a
        preset redefined in the code (as ``tiny`` was) makes another protocol, so the cells
        and checkpoints of the old shape are not taken for this one's."""
        d = json.loads(super().fingerprint(exclude=exclude))
        d["model_shape"] = dataclasses.asdict(model_config(self.model))
        return json.dumps(d, sort_keys=True)

    def method_lr(self, method: str) -> float:
        """The alignment learning rate of ``method``: ``align_lrs[method]``, else ``align_lr``."""
        return float(self.align_lrs.get(method, self.align_lr))

    @property
    def seq_len(self) -> int:
        """Tokens of the longest sample: prompt, max_moves moves, end."""
        return prompt_length(self.size) + self.max_moves + 1


PRESETS: dict[str, LMConfig] = {
    # ~1 minute of one core: a base that has begun to read the map (held-out success ~0.25),
    # then 30 steps of three objectives, one of each family (likelihood, IFT, reference-based
    # preference); the tests run it, and run every objective on a nano model
    "quick": LMConfig(
        n_train=1200,
        pretrain_steps=300,
        pretrain_log_every=300,
        align_steps=30,
        align_lr=3e-3,
        log_every=30,
        seeds=1,
        methods=("sft", "ift", "dpo"),
    ),
    # the table in docs/lm-track.md: every objective, ten seeds, from a weak base (600 steps of
    # the 28k-parameter "tiny" model: held-out success ~0.17, so no objective saturates),
    # then 60 alignment steps, each objective at its own learning rate, chosen on validation
    # lakes by `lakelab lm-lr` (docs/lm-track.md); about 3 minutes on 2 cores (bench_lm.py)
    "default": LMConfig(
        model="tiny",
        pretrain_steps=600,
        align_steps=60,
        log_every=30,
        seeds=10,
        # `lakelab lm-lr` (grid 1e-4 .. 1e-2; 4 seeds of its own; validation lakes)
        align_lrs={
            "sft": 3e-3,
            "ift": 3e-3,
            "dpo": 1e-4,
            "ipo": 1e-4,
            "orpo": 3e-3,
            "asft": 3e-3,
            "simpo": 1e-4,
        },
    ),
}


def preset(name: str) -> LMConfig:
    return choose_preset(PRESETS, name)
