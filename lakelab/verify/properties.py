"""Checks against facts derived by hand, not against lakelab's code: closed forms and optima.

Closed forms (``closed/...``), each on a small per-token batch with a prompt and padding:

    at pi = pi_ref (``AT_THE_REFERENCE``): dpo log 2 for every beta (hinge: 1), ipo
          (1 / (2 beta))^2, dpo_norm log 2, exo -log 2 - log(eps (1 - eps)) / 2, nca 2 log 2,
          bco_pair softplus(delta) + softplus(-delta), sppo_hard 1 / (2 beta^2), apo 1,
          discopop (1 + log 2) / 2
    ipo   at the target margin h = 1 / (2 beta), 0 with zero gradient
    sft   the mean over sequences of each response's mean token NLL
    ift   with gamma = 0 it is SFT
    orpo  with y_w = y_l it is -A(y_w) + lam log 2
    asft  with every token at probability 1/2 it is log 2 (1 + 2 lam)
    simpo, alphapo with A(y_w) = A(y_l) it is log(1 + exp(gamma)); cpo_ipo (1 / (2 beta))^2
    cpo   with y_w = y_l it is log 2 (hinge: 1); cpo_nll that + cpo_alpha * 9.5 / 6
    rpo   at pi = pi_ref DPO's value + rpo_alpha * 58 / 45, the chosen responses' mean NLL
    wpo   at pi = pi_ref with every token at p = 1/2 (the rest even over 6): (25/9) DPO's
    kto, apo_unpaired, bco (unpaired, 3 desirable and 1 undesirable example) at pi = pi_ref
          (3 w_D + w_U) / 8 (bco (3 softplus(delta) + softplus(-delta)) / 4), desirable only
          w_D / 2; kto with z0 = 2 from the mismatched pairs, and with z0 clamped at 0

The defining optimum (``optimum``), on a one-state tabular problem: K = 4 responses of one
token each, pi = softmax(theta), pairs (i, j) of every two responses labelled by
Bradley-Terry preferences from a known reward r, P(i > j) = sigmoid(r_i - r_j). The
population loss sum_{i != j} P(i > j) loss(i, j) is minimised at

    dpo (sigmoid or robust, no label smoothing)   pi_ref exp(r / beta) / Z
    dpo_norm (A(y) = S(y) for one-token responses) pi_ref exp(r / beta) / Z
    simpo with gamma = 0                          exp(r / beta) / Z  (no reference)
    cpo (sigmoid, no label smoothing)             exp(r / beta) / Z  (no reference)
    ipo   pi_ref exp(u) / Z with u_i = (1/K) sum_j (2 P(i > j) - 1) / (2 beta)  (least squares
          of the margins onto IPO's targets over every pair)
    sft   (chosen responses drawn from d; no pairs)  d

The check asks that the population gradient of the function under test vanish there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from lakelab.objective_spec import Objective
from lakelab.registry import SequenceLogps
from lakelab.verify.calls import Broken, batch_loss, loss_and_grads, map_rows
from lakelab.verify.checks import CALLED_WRONG
from lakelab.verify.report import Check

PROMPT = 2  # prompt positions before each response in the closed-form batches
GARBAGE = -7.0  # what the positions off the masks hold


@dataclass(frozen=True)
class ClosedForm:
    """A batch of per-token log-probs on which the loss has a value derived by hand."""

    name: str
    says: str
    logps: SequenceLogps
    value: float
    bug: str
    hparams: dict = field(default_factory=dict)
    zero_gradient: bool = False


def tokens(rows: list[list[float]], width: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs (B, PROMPT + width) and mask: a prompt, each row's response
    tokens, then padding; off the mask the values are GARBAGE."""
    x = torch.full((len(rows), PROMPT + width), GARBAGE, dtype=torch.float64)
    mask = torch.zeros_like(x, dtype=torch.bool)
    for b, row in enumerate(rows):
        x[b, PROMPT : PROMPT + len(row)] = torch.tensor(row, dtype=torch.float64)
        mask[b, PROMPT : PROMPT + len(row)] = True
    return x, mask


def _masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, x, torch.zeros_like(x))  # a reference's log-probs off the mask


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


AT_THE_REFERENCE = {  # objective -> knobs -> (loss at pi = pi_ref, said in words)
    "dpo": lambda k: (1.0, "1 (hinge)") if k["variant"] == "hinge" else (math.log(2), "log 2"),
    "ipo": lambda k: (1 / (2 * k["beta"]) ** 2, "(1 / (2 beta))^2"),
    "dpo_norm": lambda k: (math.log(2), "log 2"),
    "ld_dpo": lambda k: (math.log(2), "log 2"),
    "aot": lambda k: (math.log(2), "log 2"),
    "exo": lambda k: (
        -math.log(2) - 0.5 * math.log(k["label_smoothing"] * (1 - k["label_smoothing"])),
        "-log 2 - log(eps (1 - eps)) / 2",
    ),
    "nca": lambda k: (2 * math.log(2), "2 log 2"),
    "bco_pair": lambda k: (
        _softplus(k["delta"]) + _softplus(-k["delta"]),
        "softplus(delta) + softplus(-delta) (2 log 2 at delta = 0)",
    ),
    "sppo_hard": lambda k: (1 / (2 * k["beta"] ** 2), "1 / (2 beta^2)"),
    "apo": lambda k: (1.0, "1"),
    "discopop": lambda k: ((1 + math.log(2)) / 2, "(1 + log 2) / 2"),
}

SFT_ROWS = [[-1.0, -2.0], [-0.5], [-3.0, -1.0, -2.0]]  # A(y) = -1.5, -0.5, -2: SFT = 4/3
SFT_VALUE = 4.0 / 3.0  # (a token-level batch mean would be 9.5 / 6)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def unpaired_closed_forms(objective: Objective, knobs: dict) -> list[ClosedForm]:
    """An unpaired objective's closed forms: 3 desirable examples and 1 undesirable one (the
    loss is a mean over examples, not over kinds), at the reference, with one kind only,
    and KTO's reference point z0 taken from the mismatched pairs and clamped at 0."""
    name, beta = objective.name, knobs["beta"]
    w_d, w_u = knobs.get("desirable_weight", 1.0), knobs.get("undesirable_weight", 1.0)
    x, m = tokens([[-1.0, -2.0, -0.5], [-0.2], [-4.0, -1.0]])
    y, n = tokens([[-3.0, -0.5]])
    kl, km = tokens([[-1.0], [-2.0]])  # mismatched pairs: log-ratios 2 or -1 below

    def batch(d_ratio: float = 0.0, pair_ratio: float = 0.0, kinds: str = "DU") -> SequenceLogps:
        """S - S_ref = d_ratio for each desirable example (on its first response token), 0
        for the undesirable one, pair_ratio for each mismatched pair."""
        ref_x = _masked(x, m) - d_ratio * (torch.arange(x.shape[1]) == PROMPT)
        c, cm, rc = (x, m, ref_x) if "D" in kinds else (x[:0], m[:0], ref_x[:0])
        r, rm, rr = (y, n, _masked(y, n)) if "U" in kinds else (y[:0], n[:0], y[:0])
        pairs = (kl, km, _masked(kl - pair_ratio, km)) if objective.mismatched else ()
        return SequenceLogps(c, cm, r, rm, rc, rr, *pairs)

    if name == "bco":
        sp = _softplus(knobs["delta"]), _softplus(-knobs["delta"])
        at_ref, says = (3 * sp[0] + sp[1]) / 4, "(3 softplus(delta) + softplus(-delta)) / 4"
        alone, alone_says = sp[0], "softplus(delta)"
    else:  # kto, apo_unpaired: 1 - sigmoid(0) = sigmoid(0) = 1/2 per example, weighted
        at_ref, says = (3 * w_d + w_u) / 8, "(3 w_D + w_U) / 8"
        alone, alone_says = w_d / 2, "w_D / 2"
    out = [
        ClosedForm(
            "closed/policy_is_reference",
            f"at pi = pi_ref, 3 desirable examples and 1 undesirable, the loss is {says}",
            batch(),
            at_ref,
            "the loss is not a mean over all examples (a mean per kind, or a sum), the "
            "weights are elsewhere, or the reference's log-probs are not subtracted",
        ),
        ClosedForm(
            "closed/desirable_only",
            f"at pi = pi_ref on desirable examples only the loss is {alone_says}",
            batch(kinds="D"),
            alone,
            "a batch without undesirable examples is not a mean over the desirable ones "
            "(an empty kind's mean is NaN, or counted as 0)",
        ),
    ]
    if name == "kto":
        value = (3 * w_d / 2 + w_u * (1 - _sigmoid(2 * beta))) / 4
        out += [
            ClosedForm(
                "closed/reference_point",
                "with the mismatched pairs' log-ratios 2 (z0 = 2) and the desirable examples' "
                "log-ratios 2, the loss is (3 w_D / 2 + w_U (1 - sigmoid(2 beta))) / 4",
                batch(d_ratio=2.0, pair_ratio=2.0),
                value,
                "z0 is not the mismatched pairs' mean log-ratio (taken from the examples "
                "themselves, from the policy alone, or left out)",
            ),
            ClosedForm(
                "closed/clamped_reference_point",
                f"with the mismatched pairs' log-ratios -1, z0 = max(0, -1) = 0: {says}",
                batch(pair_ratio=-1.0),
                at_ref,
                "z0 is not clamped at 0 (max(0, mean log-ratio))",
            ),
        ]
    return out


def closed_forms(objective: Objective, knobs: dict) -> list[ClosedForm]:
    """The closed forms that hold for ``objective`` at hyper-parameters ``knobs``."""
    name = objective.name
    if objective.unpaired:
        return unpaired_closed_forms(objective, knobs)
    chosen, cm = tokens([[-1.0, -2.0, -0.5], [-0.2], [-4.0, -1.0]])
    rejected, rm = tokens([[-3.0], [-0.7, -0.1, -2.0, -1.0], [-2.5, -2.5]])
    same = SequenceLogps(chosen, cm, rejected, rm, _masked(chosen, cm), _masked(rejected, rm))
    out = []
    if name in AT_THE_REFERENCE:
        value, says = AT_THE_REFERENCE[name](knobs)
        out.append(
            ClosedForm(
                "closed/policy_is_reference",
                f"at pi = pi_ref the loss is {says}",
                same,
                value,
                "the reference's log-probs are not subtracted (or from the wrong response), "
                "the loss is rescaled, or a target margin (IPO's, SPPO's 1 / (2 beta)) is "
                "another",
            )
        )
    if name == "ipo":
        target = 1 / (2 * knobs["beta"])  # every chosen token target higher than the reference's
        at_target = SequenceLogps(
            chosen, cm, rejected, rm, _masked(chosen - target, cm), _masked(rejected, rm)
        )
        out.append(
            ClosedForm(
                "closed/target_margin",
                "at h = 1 / (2 beta), on mean log-probs, the loss and its gradient are 0",
                at_target,
                0.0,
                "the margin h is not built from mean log-probs A(y) (summed ones give "
                "length times the target), or the target is not 1 / (2 beta)",
                zero_gradient=True,
            )
        )
    if name == "rpo":  # DPO at the reference plus rpo_alpha times SFT's mean NLL, 58 / 45
        value, says = AT_THE_REFERENCE["dpo"](knobs)
        out.append(
            ClosedForm(
                "closed/policy_is_reference",
                f"at pi = pi_ref the loss is {says} + rpo_alpha * 58 / 45 (the chosen "
                "responses' mean NLL)",
                same,
                value + knobs["rpo_alpha"] * 58 / 45,
                "the NLL term is not rpo_alpha times the mean over sequences of each chosen "
                "response's mean token NLL (a token-level mean, or summed log-probs), or "
                "DPO's term is off",
            )
        )
    if name == "wpo":  # every token at p = 1/2, the other 5 of VOCAB at 1/10 each
        half = math.log(0.5)
        x, m = tokens([[half] * 3, [half], [half] * 2])
        y, n = tokens([[half] * 2, [half] * 4, [half]])
        sq = torch.full_like(x, math.log(0.3))  # sum_v p(v)^2 = 1/4 + 5/100
        at_ref = SequenceLogps(x, m, y, n, _masked(x, m), _masked(y, n),
                               chosen_log_sum_sq=sq, rejected_log_sum_sq=sq.clone())  # fmt: skip
        value, says = AT_THE_REFERENCE["dpo"](knobs)
        out.append(
            ClosedForm(
                "closed/weights",
                f"at pi = pi_ref, every token at probability 1/2 and the rest spread evenly, "
                f"each weight is exp(log(0.5 / 0.3)) = 5/3: the loss is (25/9) {says}",
                at_ref,
                25 / 9 * value,
                "the weights are not exp(mean_t (logp_t - log sum_v p(v)^2)) of both "
                "responses, multiplied (a sum instead of a mean over the tokens, one "
                "response's weight only, or log sum p^2 left out)",
            )
        )
    if out:
        return out
    sft_x, sft_m = tokens(SFT_ROWS)
    if name == "sft":
        return [
            ClosedForm(
                "closed/mean_nll",
                "the mean over sequences of each response's mean token NLL",
                SequenceLogps(sft_x, sft_m),
                SFT_VALUE,
                "not a mean of per-sequence means: a token-level mean over the batch, or "
                "summed log-probs",
            )
        ]
    if name == "sft_token_mean":
        return [
            ClosedForm(
                "closed/token_mean",
                "the NLL averaged over the batch's response tokens",
                SequenceLogps(sft_x, sft_m),
                9.5 / 6,
                "not a token-level mean over the batch: a mean of per-sequence means (SFT's "
                "per-sequence form), or padding counted",
            )
        ]
    if name == "ift":
        return [
            ClosedForm(
                "closed/gamma_0_is_sft",
                "with gamma = 0 the loss is SFT's mean NLL",
                SequenceLogps(sft_x, sft_m),
                SFT_VALUE,
                "IFT's weights at gamma = 0 are not 1 on every token, or the tokens are "
                "reduced otherwise than SFT's per-sequence mean",
                hparams={"gamma": 0.0},
            )
        ]
    if name == "orpo":
        return [
            ClosedForm(
                "closed/equal_responses",
                "with y_w = y_l the loss is -A(y_w) + lam log 2",
                SequenceLogps(sft_x, sft_m, sft_x.clone(), sft_m.clone()),
                SFT_VALUE + knobs["lam"] * math.log(2),
                "the odds-ratio term is not lam times -logsigmoid(log odds ratio), or the "
                "NLL term is not the mean NLL of y_w",
            )
        ]
    if name == "asft":
        half = math.log(0.5)
        x, m = tokens([[half] * 3, [half], [half] * 2])
        y, n = tokens([[half] * 2, [half] * 4, [half]])
        return [
            ClosedForm(
                "closed/even_odds",
                "with every token at probability 1/2 the loss is log 2 (1 + 2 lam)",
                SequenceLogps(x, m, y, n),
                math.log(2) * (1 + 2 * knobs["lam"]),
                "the log-odds are not log(p / (1 - p)) of the mean log-prob, or an "
                "absolute term is missing or mis-weighted",
            )
        ]
    x, m = tokens([[-1.0, -2.0], [-0.5], [-3.0, -1.0, -2.0]])
    y, n = tokens([[-1.5], [-0.25, -0.75], [-2.0, -2.0]])  # the same means, other lengths
    if name in ("simpo", "alphapo", "cpo_ipo"):
        value, says = (
            ((1 / (2 * knobs["beta"])) ** 2, "(1 / (2 beta))^2")
            if name == "cpo_ipo"
            else (math.log1p(math.exp(knobs["gamma"])), "log(1 + exp(gamma))")
        )
        return [
            ClosedForm(
                "closed/equal_means",
                f"with A(y_w) = A(y_l) the loss is {says}",
                SequenceLogps(x, m, y, n),
                value,
                "the margin is not taken between mean log-probs (summed ones differ here), "
                "or the target margin (gamma, 1 / (2 beta)) is not subtracted",
            )
        ]
    if name in ("cpo", "cpo_nll"):
        value = 1.0 if knobs["variant"] == "hinge" else math.log(2)
        says = "1 (hinge)" if value == 1 else "log 2"
        bug = "the margin is not S(y_w) - S(y_l), or the loss is rescaled"
        if name == "cpo_nll":  # plus cpo_alpha times the NLL over the batch's tokens, 9.5 / 6
            value += knobs["cpo_alpha"] * 9.5 / 6
            says += " + cpo_alpha * 9.5 / 6 (the NLL averaged over the chosen tokens)"
            bug += "; or the NLL is not a token-level mean over the batch's chosen tokens"
        return [
            ClosedForm(
                "closed/equal_responses",
                f"with y_w = y_l the loss is {says}",
                SequenceLogps(x, m, x.clone(), m.clone()),
                value,
                bug,
            )
        ]
    return []


def check_closed_form(fn: Callable, form, objective: Objective, knobs, taken, cf) -> Check | None:
    """``fn`` on the closed form's batch, in ``form``; None if it needs a hyper-parameter the
    function does not take."""
    if not set(cf.hparams) <= taken:
        return None
    inputs = form.from_tokens(objective, cf.logps)
    hp = dict(knobs, **cf.hparams)
    where = ", ".join(f"{k}={v:g}" for k, v in cf.hparams.items())
    said = f"{cf.says}{f' ({where})' if where else ''}: {cf.value:.10g}"
    try:
        loss, grads = loss_and_grads(fn, inputs, hp)
    except Broken as err:
        return Check(cf.name, False, str(err), CALLED_WRONG)
    worst = max(g.abs().max().item() for g in grads) if cf.zero_gradient else 0.0
    ok = math.isclose(loss.item(), cf.value, rel_tol=1e-6, abs_tol=1e-9) and worst < 1e-9
    got = f"; got {loss.item():.10g}" + (f", gradient up to {worst:.3g}" if worst else "")
    return Check(cf.name, ok, said + ("" if ok else got), "" if ok else cf.bug)


# -- the tabular optimum ---------------------------------------------------------------------

K = 4
REWARD_UNITS = torch.tensor([1.5, 0.5, 0.0, -1.0], dtype=torch.float64)  # r = beta * these
PI_REF = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
DATA = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)  # SFT's chosen responses


@dataclass(frozen=True)
class Optimum:
    """A tabular problem and the policy that minimises the objective's population loss."""

    says: str
    target: torch.Tensor  # pi*, (K,)
    reference: torch.Tensor | None  # pi_ref, or None without one
    reward: torch.Tensor | None  # r, or None for SFT
    hparams: dict = field(default_factory=dict)


def optimum(objective: Objective, knobs: dict) -> Optimum | None:
    """The closed-form minimiser of ``objective``'s population loss, where one is known."""
    name = objective.name
    beta = knobs.get("beta")
    if name == "sft":
        return Optimum("the data distribution d", DATA, None, None)
    reward = None if beta is None else beta * REWARD_UNITS
    dpo_like = (
        name == "dpo"
        and knobs["variant"] != "hinge"
        and knobs["label_smoothing"] == 0
        and knobs["f_divergence_type"] == "reverse_kl"
    )
    if dpo_like or name == "dpo_norm":  # one-token responses: A(y) = S(y)
        tilted = _normalised(PI_REF * torch.exp(reward / beta))
        return Optimum("pi_ref exp(r / beta) / Z", tilted, PI_REF, reward)
    if name == "cpo" and knobs["variant"] == "sigmoid" and knobs["label_smoothing"] == 0:
        return Optimum("exp(r / beta) / Z", _normalised(torch.exp(reward / beta)), None, reward)
    if name == "simpo":
        tilted = _normalised(torch.exp(reward / beta))
        return Optimum("exp(r / beta) / Z", tilted, None, reward, {"gamma": 0.0})
    if name == "ipo":
        P = torch.sigmoid(reward[:, None] - reward[None, :])
        u = ((2 * P - 1) / (2 * beta)).mean(dim=1)
        says = "pi_ref exp(u) / Z, u_i = mean_j (2 P_ij - 1) / (2 beta)"
        return Optimum(says, _normalised(PI_REF * torch.exp(u)), PI_REF, reward)
    return None


def _normalised(p: torch.Tensor) -> torch.Tensor:
    return p / p.sum()


def population_loss(fn: Callable, form, objective: Objective, problem: Optimum, theta, hp):
    """sum over rows of weight * fn(row): every ordered pair (i, j), i != j, weighted by
    P(i > j) (SFT: every response i weighted by d_i), one row per call, each response one
    token after a prompt, in ``form``."""
    logp = theta.log_softmax(0)
    if problem.reward is None:
        rows, weights = [[i] for i in range(K)], problem.target
    else:
        P = torch.sigmoid(problem.reward[:, None] - problem.reward[None, :])
        rows = [[i, j] for i in range(K) for j in range(K) if i != j]
        # per unordered pair the two orders' weights P(i > j) + P(j > i) sum to 1: dividing by
        # the number of unordered pairs makes the weights a distribution
        weights = torch.stack([P[i, j] for i, j in rows]) / (K * (K - 1) / 2)

    def column(index: list[int], values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = tokens([[0.0]] * len(index), width=2)
        x = x.clone()
        x[:, PROMPT] = values[index]
        return x, mask

    chosen, cm = column([r[0] for r in rows], logp)
    parts: list = [chosen, cm]
    if objective.needs_pairs:
        parts += list(column([r[1] for r in rows], logp))
    if objective.needs_reference:
        ref = problem.reference.log()
        parts += [column([r[0] for r in rows], ref)[0], column([r[1] for r in rows], ref)[0]]
    parts += [None] * (6 - len(parts))
    inputs = form.from_tokens(objective, SequenceLogps(*parts))
    total = 0.0
    for k in range(len(rows)):
        row = map_rows(inputs, lambda x, k=k: x[k : k + 1])
        total = total + weights[k] * batch_loss(fn, row, hp)
    if not total.requires_grad:
        raise Broken("returned a loss that does not depend on the inputs (no gradient)")
    return total


def check_optimum(fn: Callable, form, objective: Objective, knobs, taken) -> Check | None:
    """The population gradient of ``fn`` vanishes at the known optimum (None: no closed form
    at these hyper-parameters, or one the function does not take)."""
    problem = optimum(objective, knobs)
    if problem is None or not set(problem.hparams) <= taken:
        return None
    hp = dict(knobs, **problem.hparams)
    where = "".join(f", {k}={v:g}" for k, v in problem.hparams.items())
    uniform = torch.full((K,), 1 / K, dtype=torch.float64)
    start = (problem.reference if problem.reference is not None else uniform).log()

    def gradient(theta: torch.Tensor) -> torch.Tensor:
        theta = theta.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(population_loss(fn, form, objective, problem, theta, hp), theta)
        return g

    try:
        at_optimum, at_start = gradient(problem.target.log()), gradient(start)
    except (Broken, RuntimeError) as err:
        return Check("optimum", False, f"{err}", CALLED_WRONG)
    ratio = at_optimum.norm().item() / max(at_start.norm().item(), 1e-300)
    said = f"population gradient at {problem.says}{where} is {ratio:.2g} of that at the start"
    if ratio < 1e-6:
        return Check("optimum", True, said)
    try:
        where = _where_minimised(fn, form, objective, problem, hp, start)
    except Exception as err:  # the search must never turn a report into a traceback
        where = f"its minimum is not at the known optimum (searching it failed: {err})"
    return Check("optimum", False, said, where)


def _where_minimised(fn, form, objective, problem: Optimum, hp: dict, start) -> str:
    """Where the function's population loss is minimised instead, in words."""
    try:
        theta = _minimise(lambda t: population_loss(fn, form, objective, problem, t, hp), start)
    except (Broken, RuntimeError) as err:
        return f"its minimum is not at the known optimum; minimising it failed: {err}"
    found = theta.softmax(0)
    kl = (problem.target * (problem.target / found).log()).sum().item()
    text = f"its population loss is minimised elsewhere (KL(pi* || its minimiser) = {kl:.3g})"
    if problem.reward is not None:  # its log-ratios a multiple of the optimum's?
        base = (
            problem.reference if problem.reference is not None else torch.full((K,), 1 / K).double()
        )
        u, want = found.log() - base.log(), problem.target.log() - base.log()
        u, want = u - u.mean(), want - want.mean()
        scale = (u @ want / (want @ want)).item()
        if (u - scale * want).abs().max().item() < 1e-4 * max(1.0, abs(scale)):
            ref = "pi_ref" if problem.reference is not None else "uniform"
            text += f": at log-ratios to {ref} {scale:.4g} times the optimum's"
            if scale < 0:
                text += " (the preference reversed: chosen and rejected swapped, or a sign)"
            if "exp(r / beta)" in problem.says:
                text += (
                    f", i.e. exp(r / b) with b = {hp['beta'] / scale:.4g} for beta = {hp['beta']:g}"
                )
            else:
                text += " (a factor on beta or on the target margin)"
    return text


def _minimise(loss: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor) -> torch.Tensor:
    """A damped Newton method with backtracking (K is 4: the Hessian is four backward passes)."""
    theta = theta.detach().clone()
    for _ in range(50):
        t = theta.clone().requires_grad_(True)
        value = loss(t)
        (g,) = torch.autograd.grad(value, t, create_graph=True)
        if g.norm() < 1e-12:
            break
        rows = [
            torch.autograd.grad(g[i], t, retain_graph=True, allow_unused=True)[0] for i in range(K)
        ]
        H = torch.stack([torch.zeros(K, dtype=t.dtype) if r is None else r for r in rows])
        step = torch.linalg.solve(H + 1e-6 * torch.eye(K, dtype=t.dtype), g.detach())
        if not bool(torch.isfinite(step).all()) or step @ g.detach() <= 0:
            step = g.detach()  # not a descent direction: a gradient step
        size, v0 = 1.0, value.item()
        while size > 1e-8 and not loss((theta - size * step).requires_grad_()).item() < v0:
            size /= 2
        if size <= 1e-8:
            break
        theta = (theta - size * step).detach()
    return theta
