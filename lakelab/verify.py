"""``lakelab verify``: check an objective implementation against lakelab's, in seconds.

    report = verify(my_dpo, like="dpo", hparams={"beta": 0.1})
    report.ok          # True when every check passes
    print(report)      # one line per check: verdict, what was measured, the likely bug

The function under test takes the per-sequence log-probs that the reference objective
``like`` consumes, in TRL's order (``inputs="sequences"``):

    fn(chosen, rejected, ref_chosen, ref_rejected, **hparams)   # DPO, IPO: S(y) or A(y), (B,)
    fn(chosen, rejected, **hparams)                              # ORPO, ASFT, SimPO: A(y)
    fn(chosen, **hparams)                                        # SFT: A(y_w)

(S: summed, A: mean log-prob of a response, as the registry's ``reduction`` says), with the
reference's hyper-parameters as keywords, and returns the batch loss: a scalar, per-sequence
losses (B,) (averaged), or a tuple whose first element is one of those.

Each check is computed in float64 against ``lakelab.registry`` (the reference), on a random
batch and on adversarial ones (saturated margins of both signs, log-probs of exactly 0, tiny
and huge, policy equal to the reference). A function that raises or returns garbage fails the
check with a line saying so, never a traceback.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from lakelab.registry import get_objective, loss_on, resolve_hparams

__all__ = ["Check", "Report", "verify"]

INPUTS = ("sequences",)
RTOL, ATOL = 1e-6, 1e-8  # float64 agreement; loose enough for float32 internals (~1e-9)
GRAD_RTOL, GRAD_ATOL = 1e-5, 1e-8


@dataclass(frozen=True)
class Check:
    """One named check: passed or not, what was measured and, if it failed, the likely bug."""

    name: str
    ok: bool
    measured: str
    bug: str = ""


@dataclass
class Report:
    """The verdicts of ``verify``: ``ok`` when every check passed."""

    like: str
    hparams: dict[str, Any]
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}

    def __str__(self) -> str:
        lines = [f"lakelab verify: like {self.like!r}, hparams {self.hparams}"]
        for c in self.checks:
            lines.append(f"  {'PASS' if c.ok else 'FAIL'}  {c.name}: {c.measured}")
            if not c.ok and c.bug:
                lines.append(f"        likely bug: {c.bug}")
        passed = sum(c.ok for c in self.checks)
        lines.append(f"{passed} passed, {len(self.checks) - passed} failed")
        return "\n".join(lines)


class _Broken(Exception):
    """The function under test raised or returned something that is not a loss."""


def verify(
    fn: Callable[..., Any],
    like: str,
    hparams: dict[str, Any] | None = None,
    inputs: str = "sequences",
) -> Report:
    """Run every check of ``fn`` against objective ``like`` (see the module docstring)."""
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {list(INPUTS)}, got {inputs!r}")
    objective = get_objective(like)
    if objective.reduction == "tokens":
        raise ValueError(f"{like!r} works on per-token log-probs; inputs='sequences' cannot")
    if not callable(fn):
        raise ValueError(f"the function to verify must be callable, got {fn!r}")
    hp = resolve_hparams(like, hparams)
    knobs = {p.name: hp[p.name] for p in objective.hyperparams if not p.model_side}
    report = Report(like, knobs)
    add = report.checks.append
    taken = _taken(fn, knobs)
    if taken is None:
        add(Check("signature", False, "fn has no inspectable signature", ""))
        taken = set(knobs)
    mine = _theirs(fn, taken)
    batches = _batches(objective)
    for name, batch in batches.items():
        add(_value_and_gradient(mine, like, batch, knobs, f"agrees/{name}"))
    add(_float32(mine, like, batches["saturated"], knobs))
    add(_batch_order(mine, batches["random"], knobs))
    add(_batch_size(mine, batches["random"], knobs))
    for p in objective.hyperparams:
        if p.model_side or p.choices is not None:
            continue
        name = f"hparam/{p.name}"
        if p.name not in taken:
            add(Check(name, True, f"not a parameter of the function: checked at {knobs[p.name]:g}"))
            continue
        moved = dict(knobs, **{p.name: _moved(p, knobs[p.name])})
        try:
            loss_on(like, batches["random"], moved)
        except ValueError:  # the reference refuses that value with these settings
            continue
        check = _value_and_gradient(mine, like, batches["random"], moved, name)
        bug = (
            check.bug
            if check.measured.startswith(("raised", "returned"))
            else (f"{p.name} is ignored or used differently (e.g. squared)")
        )
        add(Check(name, check.ok, f"at {p.name}={moved[p.name]:g}: {check.measured}", bug))
    return report


def _taken(fn: Callable, knobs: dict) -> set[str] | None:
    """The hyper-parameters ``fn`` accepts by keyword (all of them with ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return set(knobs)
    return {p.name for p in params if p.name in knobs}


def _theirs(fn: Callable, taken: set[str]) -> Callable:
    """``fn`` called with the hyper-parameters it takes only."""
    return lambda *inputs, **knobs: fn(*inputs, **{k: v for k, v in knobs.items() if k in taken})


# -- batches ---------------------------------------------------------------------------------


def _batches(objective) -> dict[str, list[torch.Tensor]]:
    """The inputs (float64, (B,) each) of every batch the checks use, as the reference takes
    them: chosen, then rejected and the reference's two where the objective needs them."""
    g = torch.Generator().manual_seed(0)
    summed = objective.reduction == "sum"
    low = -30.0 if summed else -3.0  # S(y) of a ~10-token response; A(y) a mean

    def uniform(n: int, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)

    n_inputs = 1 + objective.needs_pairs + 2 * objective.needs_reference
    random = [uniform(8, low, -0.01) for _ in range(n_inputs)]
    edge = torch.tensor([0.0, -1e-9, -1e-3, -1e3, -5.0, -0.5], dtype=torch.float64)
    extremes = [edge, edge.flip(0)] + [torch.full_like(edge, -2.0)] * (n_inputs - 2)
    spread = 4000.0 if summed else 100.0  # margins far into saturation, of both signs
    far = torch.tensor([-spread, spread, -spread / 2, spread / 2], dtype=torch.float64)
    base = torch.full_like(far, -spread - 1.0)
    saturated = [base + far.clamp(min=0), base + (-far).clamp(min=0)]
    saturated += [torch.full_like(far, -2.0)] * (n_inputs - 2)
    batches = {"random": random, "extremes": extremes[:n_inputs], "saturated": saturated[:n_inputs]}
    if objective.needs_reference:  # the policy equals the reference
        same = uniform(8, low, -0.01), uniform(8, low, -0.01)
        batches["policy_is_reference"] = [same[0], same[1], same[0].clone(), same[1].clone()]
    return batches


def _moved(p, value: float) -> float:
    """Another allowed value of a numeric hyper-parameter, far enough to change the loss."""
    for candidate in (value * 1.7 + 0.3, value * 0.6, value + 0.05):
        try:
            if candidate != value:
                return p.check(candidate, "verify")
        except ValueError:
            continue
    return value


# -- calling both ----------------------------------------------------------------------------


def _call(fn: Callable, inputs: list[torch.Tensor], knobs: dict) -> torch.Tensor:
    """The batch-mean loss of ``fn`` on ``inputs``; _Broken if it raises or is no loss."""
    try:
        out = fn(*inputs, **knobs)
    except Exception as err:
        raise _Broken(f"raised {type(err).__name__}: {err}") from None
    if isinstance(out, tuple | list):
        out = out[0] if out else None
    if not isinstance(out, torch.Tensor):
        raise _Broken(f"returned {type(out).__name__}, not a tensor")
    if out.dim() == 1 and out.shape[0] == inputs[0].shape[0]:
        out = out.mean()  # per-sequence losses
    if out.dim() != 0:
        raise _Broken(f"returned shape {tuple(out.shape)}, not a scalar or (B,)")
    return out


def _loss_and_grads(fn, inputs, knobs) -> tuple[torch.Tensor, list[torch.Tensor]]:
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    loss = _call(fn, leaves, knobs)
    if not loss.requires_grad:
        raise _Broken("returned a loss that does not depend on the inputs (no gradient)")
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return loss.detach(), [
        torch.zeros_like(x) if g is None else g for x, g in zip(leaves, grads, strict=True)
    ]


def _reference(like: str) -> Callable:
    return lambda *inputs, **knobs: loss_on(like, list(inputs), knobs)[0]


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> bool:
    both_nan = torch.isnan(a) & torch.isnan(b)
    return bool((both_nan | torch.isclose(a, b, rtol=rtol, atol=atol)).all())


# -- the checks ------------------------------------------------------------------------------


def _value_and_gradient(fn, like, inputs, knobs, name) -> Check:
    """Loss and its gradient w.r.t. every input against the reference, float64."""
    want, want_grads = _loss_and_grads(_reference(like), inputs, knobs)
    try:
        got, got_grads = _loss_and_grads(fn, [x.double() for x in inputs], knobs)
    except _Broken as err:
        return Check(name, False, str(err), "the function cannot be called as documented")
    if not _close(got, want, RTOL, ATOL):
        ratio = (got / want).item() if want.item() != 0 else math.inf
        return Check(
            name,
            False,
            f"loss {got.item():.10g}, reference {want.item():.10g}",
            _diagnose_value(ratio, knobs, len(inputs[0])),
        )
    for k, (g, w) in enumerate(zip(got_grads, want_grads, strict=True)):
        if not _close(g, w, GRAD_RTOL, GRAD_ATOL):
            worst = (g - w).abs().max().item()
            return Check(
                name,
                False,
                f"gradient w.r.t. input {k} off by up to {worst:.3g}",
                "the loss agrees but its gradient does not: a detach() or a custom "
                "backward in the wrong place, or a clamp that is active here",
            )
    return Check(name, True, f"loss {got.item():.10g} and gradients match")


def _diagnose_value(ratio: float, knobs: dict, batch: int) -> str:
    for key, value in knobs.items():
        if isinstance(value, float) and value not in (0.0, 1.0):
            if math.isclose(ratio, value, rel_tol=1e-6):
                return f"the loss is scaled by {key} (an extra factor {key})"
            if math.isclose(ratio, 1 / value, rel_tol=1e-6):
                return f"the loss is divided by {key}"
    if math.isclose(ratio, batch, rel_tol=1e-6):
        return "the batch is summed instead of averaged"
    return "the formula differs from the reference (see docs/objectives.md)"


def _float32(fn, like, inputs, knobs) -> Check:
    """In float32, loss and gradients finite wherever the float64 reference is finite."""
    want, _ = _loss_and_grads(_reference(like), inputs, knobs)
    try:
        got, grads = _loss_and_grads(fn, [x.float() for x in inputs], knobs)
    except _Broken as err:
        return Check("float32", False, str(err), "the function fails on float32 inputs")
    finite = bool(torch.isfinite(got)) and all(bool(torch.isfinite(g).all()) for g in grads)
    if math.isfinite(want.item()) and not finite:
        return Check(
            "float32",
            False,
            f"loss {got.item()} on saturated margins",
            "an unstable formula: log(sigmoid(x)) instead of logsigmoid(x), or "
            "log(1 - exp(x)) without log1mexp",
        )
    return Check("float32", True, "loss and gradients finite on saturated margins")


def _batch_order(fn, inputs, knobs) -> Check:
    """Permuting the pairs of a batch leaves the loss unchanged."""
    perm = torch.randperm(len(inputs[0]), generator=torch.Generator().manual_seed(1))
    try:
        a = _call(fn, inputs, knobs).item()
        b = _call(fn, [x[perm] for x in inputs], knobs).item()
    except _Broken as err:
        return Check("batch_order", False, str(err))
    ok = math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return Check(
        "batch_order",
        ok,
        f"loss {a:.10g}, permuted {b:.10g}",
        "" if ok else "rows are paired with the wrong rows (a shift or a sort)",
    )


def _batch_size(fn, inputs, knobs) -> Check:
    """The batch repeated twice has the same batch-mean loss."""
    try:
        a = _call(fn, inputs, knobs).item()
        b = _call(fn, [torch.cat([x, x]) for x in inputs], knobs).item()
    except _Broken as err:
        return Check("batch_size", False, str(err))
    ok = math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    bug = (
        ""
        if ok
        else (
            "the batch is summed instead of averaged"
            if math.isclose(b, 2 * a, rel_tol=1e-6)
            else "the loss depends on the batch size"
        )
    )
    return Check("batch_size", ok, f"loss {a:.10g}, batch twice {b:.10g}", bug)
