"""``lakelab verify``: check an objective implementation against lakelab's, in seconds.

    report = verify(my_dpo, like="dpo", hparams={"beta": 0.1})
    report.ok          # True when every check passes
    print(report)      # one line per check: verdict, what was measured, the likely bug

The function under test takes the per-sequence log-probs that the reference objective
``like`` consumes, in TRL's order (``inputs="sequences"``):

    fn(chosen, rejected, ref_chosen, ref_rejected, **hparams)   # DPO, IPO: S(y) or A(y), (B,)
    fn(chosen, rejected, **hparams)                              # ORPO, ASFT, SimPO: A(y)
    fn(chosen, **hparams)                                        # SFT: A(y_w)

(S: summed, A: mean log-prob of a response, as the registry's ``reduction`` says); or, with
``inputs="tokens"``, a ``lakelab.registry.SequenceLogps`` of per-token log-probs (B, T)
whose masks select the responses, the other positions (prompt, padding) holding arbitrary
values, ``fn(logps, **hparams)``, where most masking and length-normalisation bugs live. It
gets the reference's hyper-parameters as keywords and returns the batch loss: a scalar,
per-sequence losses (B,) (averaged), or a tuple whose first element is one of those.

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

from lakelab.reductions import mean_logps, sum_logps
from lakelab.registry import (
    SequenceLogps,
    compute_objective,
    get_objective,
    loss_on,
    resolve_hparams,
)

__all__ = ["Check", "Report", "verify"]

INPUTS = ("sequences", "tokens")
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
    if objective.reduction == "tokens" and inputs == "sequences":
        raise ValueError(f"{like!r} works on per-token log-probs: use inputs='tokens'")
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
    mine = _theirs(fn, taken, tokens=inputs == "tokens")
    if inputs == "tokens":
        batches = _token_batches(objective)
        ref = _token_reference(like)
    else:
        batches, ref = _batches(objective), _reference(like)
    for name, batch in batches.items():
        add(_value_and_gradient(mine, ref, batch, knobs, f"agrees/{name}", like))
    add(_float32(mine, ref, batches["saturated"], knobs))
    add(_batch_order(mine, batches["random"], knobs))
    add(_batch_size(mine, batches["random"], knobs))
    if inputs == "tokens":
        add(_masked_contents(mine, batches["random"], knobs))
    for p in objective.hyperparams:
        if p.model_side or p.choices is not None:
            continue
        name = f"hparam/{p.name}"
        if p.name not in taken:
            add(Check(name, True, f"not a parameter of the function: checked at {knobs[p.name]:g}"))
            continue
        moved = dict(knobs, **{p.name: _moved(p, knobs[p.name])})
        try:
            ref(*batches["random"], **moved)
        except ValueError:  # the reference refuses that value with these settings
            continue
        check = _value_and_gradient(mine, ref, batches["random"], moved, name, like)
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


def _theirs(fn: Callable, taken: set[str], *, tokens: bool) -> Callable:
    """``fn`` called with the hyper-parameters it takes only (tokens: on a SequenceLogps)."""

    def call(*inputs: torch.Tensor | None, **knobs: Any) -> Any:
        kept = {k: v for k, v in knobs.items() if k in taken}
        return fn(SequenceLogps(*inputs), **kept) if tokens else fn(*inputs, **kept)

    return call


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


def _token_batches(objective) -> dict[str, list[torch.Tensor | None]]:
    """Per-token batches (B, T) in ``SequenceLogps`` order (chosen, its mask, rejected, its
    mask, the reference's two; None where the objective needs none): unequal lengths, prompts
    of up to 4 positions and padding, all holding arbitrary values off the masks."""
    g = torch.Generator().manual_seed(0)

    def uniform(shape: tuple[int, ...], lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)

    def masks(B: int, T: int) -> torch.Tensor:  # prompt, then 1..T - prompt response tokens
        prompt = torch.randint(0, 5, (B,), generator=g)
        length = 1 + (torch.rand(B, generator=g) * (T - prompt)).long().clamp(max=T - 1)
        t = torch.arange(T)
        return (t >= prompt[:, None]) & (t < (prompt + length).clamp(max=T)[:, None])

    def batch(B: int, T: int, on_mask: Callable[[tuple[int, ...]], torch.Tensor]) -> list:
        out: list[torch.Tensor | None] = []
        pairs = 1 + objective.needs_pairs
        for _ in range(pairs):
            m = masks(B, T)
            out += [torch.where(m, on_mask((B, T)), uniform((B, T), -20.0, 5.0)), m]
        out += [None, None] * (2 - pairs)
        if objective.needs_reference:
            out += [
                torch.where(out[1], on_mask((B, T)), 0.0),
                torch.where(out[3], on_mask((B, T)), 0.0),
            ]
        else:
            out += [None, None]
        return out

    batches = {"random": batch(6, 12, lambda shape: uniform(shape, -3.0, -0.01))}
    edge = torch.tensor([0.0, -1e-9, -1e-3, -1e3], dtype=torch.float64)
    batches["extremes"] = batch(8, 6, lambda shape: edge[torch.randint(0, 4, shape, generator=g)])
    saturated = batch(6, 12, lambda shape: uniform(shape, -1e-3, -1e-4))
    if objective.needs_pairs:  # rejected far less likely in half the rows, chosen in the other
        far = torch.full_like(saturated[0], -300.0)
        half = torch.arange(6)[:, None] < 3
        saturated[2] = torch.where(half & saturated[3], far, saturated[2])
        saturated[0] = torch.where(~half & saturated[1], far, saturated[0])
    batches["saturated"] = saturated
    if objective.needs_reference:  # the policy equals the reference
        same = batch(6, 12, lambda shape: uniform(shape, -3.0, -0.01))
        same[4] = torch.where(same[1], same[0], 0.0)
        same[5] = torch.where(same[3], same[2], 0.0)
        batches["policy_is_reference"] = same
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


def _floats(inputs: list) -> list[bool]:
    return [isinstance(x, torch.Tensor) and x.is_floating_point() for x in inputs]


def _map(inputs: list, f: Callable[[torch.Tensor], torch.Tensor]) -> list:
    """``f`` applied to the float tensors of ``inputs``; masks and None kept."""
    return [f(x) if is_float else x for x, is_float in zip(inputs, _floats(inputs), strict=True)]


def _rows(inputs: list, f: Callable[[torch.Tensor], torch.Tensor]) -> list:
    """``f`` applied to every tensor of ``inputs`` (a row operation); None kept."""
    return [None if x is None else f(x) for x in inputs]


def _loss_and_grads(fn, inputs, knobs) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The loss and its gradient w.r.t. each float input (zeros where it has none)."""
    leaves = _map(inputs, lambda x: x.detach().clone().requires_grad_(True))
    floats = [x for x, is_float in zip(leaves, _floats(leaves), strict=True) if is_float]
    loss = _call(fn, leaves, knobs)
    if not loss.requires_grad:
        raise _Broken("returned a loss that does not depend on the inputs (no gradient)")
    grads = torch.autograd.grad(loss, floats, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for x, g in zip(floats, grads, strict=True)]
    return loss.detach(), grads


def _reference(like: str) -> Callable:
    return lambda *inputs, **knobs: loss_on(like, list(inputs), knobs)[0]


def _token_reference(like: str) -> Callable:
    return lambda *inputs, **knobs: compute_objective(like, SequenceLogps(*inputs), knobs)[0]


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> bool:
    both_nan = torch.isnan(a) & torch.isnan(b)
    return bool((both_nan | torch.isclose(a, b, rtol=rtol, atol=atol)).all())


# -- the checks ------------------------------------------------------------------------------


def _value_and_gradient(fn, ref, inputs, knobs, name, like) -> Check:
    """Loss and its gradient w.r.t. every input against the reference, float64."""
    want, want_grads = _loss_and_grads(ref, inputs, knobs)
    try:
        got, got_grads = _loss_and_grads(fn, _map(inputs, torch.Tensor.double), knobs)
    except _Broken as err:
        return Check(name, False, str(err), "the function cannot be called as documented")
    if not _close(got, want, RTOL, ATOL):
        ratio = (got / want).item() if want.item() != 0 else math.inf
        return Check(
            name,
            False,
            f"loss {got.item():.10g}, reference {want.item():.10g}",
            _diagnose_value(ratio, knobs, len(inputs[0]), got, _alternatives(like, inputs, knobs)),
        )
    for k, (g, w) in enumerate(zip(got_grads, want_grads, strict=True)):
        if not _close(g, w, GRAD_RTOL, GRAD_ATOL):
            worst = (g - w).abs().max().item()
            return Check(
                name,
                False,
                f"gradient w.r.t. input {k} off by up to {worst:.3g}",
                "its gradient does not agree: a detach() or a custom backward in the "
                "wrong place, a clamp that is active here, or another reduction of the tokens",
            )
    return Check(name, True, f"loss {got.item():.10g} and gradients match")


def _diagnose_value(
    ratio: float, knobs: dict, batch: int, got: torch.Tensor, alternatives: dict[str, float]
) -> str:
    for bug, value in alternatives.items():
        if math.isclose(got.item(), value, rel_tol=1e-6, abs_tol=1e-9):
            return bug
    for key, value in knobs.items():
        if isinstance(value, float) and value not in (0.0, 1.0):
            if math.isclose(ratio, value, rel_tol=1e-6):
                return f"the loss is scaled by {key} (an extra factor {key})"
            if math.isclose(ratio, 1 / value, rel_tol=1e-6):
                return f"the loss is divided by {key}"
    if math.isclose(ratio, batch, rel_tol=1e-6):
        return "the batch is summed instead of averaged"
    return "the formula differs from the reference (see docs/objectives.md)"


def _alternatives(like: str, inputs: list, knobs: dict) -> dict[str, float]:
    """What the loss would be under common convention mix-ups of the per-token form: the
    other reduction of the responses' tokens (summed vs mean log-probs) and, for a likelihood
    objective, a token-level mean over the whole batch instead of per-sequence means."""
    if len(inputs) != 6:  # the sequences form: the inputs come reduced already
        return {}
    objective = get_objective(like)
    out: dict[str, float] = {}
    if objective.reduction in ("sum", "mean"):
        other = mean_logps if objective.reduction == "sum" else sum_logps
        kind = ("mean", "summed") if objective.reduction == "sum" else ("summed", "mean")
        pairs = [(inputs[0], inputs[1]), (inputs[2], inputs[3])]
        pairs += [(inputs[4], inputs[1]), (inputs[5], inputs[3])]
        reduced = [other(x, m) for x, m in pairs if x is not None]
        with torch.no_grad():
            out[f"uses {kind[0]} log-probs where {like} uses {kind[1]} ones"] = loss_on(
                like, reduced, knobs
            )[0].item()
    if not objective.needs_pairs:
        chosen, mask = inputs[0], inputs[1]
        token_mean = -torch.where(mask, chosen, 0.0).sum() / mask.sum()
        out["a token-level mean over the batch instead of a mean per sequence"] = token_mean.item()
    return out


def _masked_contents(fn, inputs, knobs) -> Check:
    """Other values at the prompt and padding positions (off every mask) change nothing."""
    masks = {0: inputs[1], 2: inputs[3], 4: inputs[1], 5: inputs[3]}
    other = [
        torch.where(masks[k], x, 1e3 * torch.ones_like(x)) if k in masks and x is not None else x
        for k, x in enumerate(inputs)
    ]
    try:
        a, grads_a = _loss_and_grads(fn, inputs, knobs)
        b, grads_b = _loss_and_grads(fn, other, knobs)
    except _Broken as err:
        return Check("masked_contents", False, str(err))
    same = _close(a, b, 1e-12, 1e-12) and all(
        _close(x, y, 1e-12, 1e-12) for x, y in zip(grads_a, grads_b, strict=True)
    )
    return Check(
        "masked_contents",
        same,
        f"loss {a.item():.10g}, with other prompt and padding values {b.item():.10g}",
        ""
        if same
        else "prompt or padding positions leak into the loss: a mask not applied "
        "(the rejected response's prompt left unmasked, or padding counted)",
    )


def _float32(fn, ref, inputs, knobs) -> Check:
    """In float32, loss and gradients finite wherever the float64 reference is finite."""
    want, _ = _loss_and_grads(ref, inputs, knobs)
    try:
        got, grads = _loss_and_grads(fn, _map(inputs, torch.Tensor.float), knobs)
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
        b = _call(fn, _rows(inputs, lambda x: x[perm]), knobs).item()
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
        b = _call(fn, _rows(inputs, lambda x: torch.cat([x, x])), knobs).item()
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
