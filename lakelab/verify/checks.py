"""The battery's comparisons with the reference: agreement, float32, the batch's order and size,
what the masks hide, each hyper-parameter. Every check returns a ``Check`` whose ``bug`` says
what a failure most likely means."""

from __future__ import annotations

import math

import torch

from lakelab.objective_spec import HyperParam
from lakelab.reductions import mean_logps, sum_logps
from lakelab.registry import get_objective, loss_on
from lakelab.verify.calls import Broken, batch_loss, close, loss_and_grads, map_floats, map_rows
from lakelab.verify.forms import IGNORE_INDEX
from lakelab.verify.report import Check

# float64 agreement (the forms' ``tolerance``: rel 1e-6, abs 1e-8 on log-probs, loose enough
# for an implementation that upcasts them to float32 inside, as TRL's ORPO, ~3e-9 relative;
# 1e-5 and 1e-6 on logits, enough for a float32 log_softmax); the invariance checks below
RTOL, ATOL = 1e-6, 1e-8
CALLED_WRONG = "the function cannot be called as documented"
DIFFERENT = "the formula differs from the reference (see docs/objectives.md)"
PRECISION = (
    "a loss of precision: half-precision rounding, or float32 where a loss is a small "
    "difference of large terms"
)
FLOAT_INPUTS = ("chosen", "rejected", "ref_chosen", "ref_rejected")  # the float inputs' order


def agreement(fn, ref, inputs, knobs, name: str, like: str, form) -> Check:
    """Loss and its gradient w.r.t. the policy's inputs against the reference, float64 (the
    reference's log-probs are constants: a function may detach them)."""
    want, want_grads = loss_and_grads(ref, inputs, knobs)
    try:
        got, got_grads = loss_and_grads(fn, map_floats(inputs, torch.Tensor.double), knobs)
    except Broken as err:
        return Check(name, False, str(err), CALLED_WRONG)
    rtol, atol = form.tolerance
    if not close(got, want, rtol, atol):
        return Check(
            name,
            False,
            f"loss {got.item():.10g}, reference {want.item():.10g}",
            diagnose_value(
                got, want, knobs, len(inputs[0]), alternatives(like, inputs, knobs, form)
            ),
        )
    for k, (g, w) in enumerate(zip(got_grads[:2], want_grads[:2], strict=False)):
        if not close(g, w, 10 * rtol, atol):
            worst = (g.double() - w).abs().max().item() if g.shape == w.shape else math.nan
            return Check(
                name,
                False,
                f"gradient w.r.t. {FLOAT_INPUTS[k]} off by up to {worst:.3g}",
                "its gradient does not agree: a detach() or a custom backward in the "
                "wrong place, a clamp that is active here, or another reduction of the tokens",
            )
    return Check(name, True, f"loss {got.item():.10g} and gradients match")


def diagnose_value(
    got: torch.Tensor, want: torch.Tensor, knobs: dict, batch: int, mix_ups: dict[str, float]
) -> str:
    """The likeliest reason a value differs: a named mix-up that reproduces it, an extra
    factor of a hyper-parameter, a sum over the batch; else a different formula."""
    ratio = (got / want).item() if want.item() != 0 else math.inf
    for bug, value in mix_ups.items():
        if math.isclose(got.item(), value, rel_tol=1e-6, abs_tol=1e-9):
            return bug
    if math.isclose(ratio, 1.0, rel_tol=1e-3):
        return f"{PRECISION} (it agrees to {abs(ratio - 1):.1g} relative)"
    if math.isclose(ratio, batch, rel_tol=1e-6):
        return "the batch is summed instead of averaged"
    two = math.isclose(ratio, 0.5, rel_tol=1e-6) or math.isclose(ratio, 2.0, rel_tol=1e-6)
    factor_two = "off by a factor 2: averaged over 2B rows (chosen and rejected concatenated)"
    for key, value in knobs.items():
        if isinstance(value, float) and value not in (0.0, 1.0):
            said = ""
            if math.isclose(ratio, value, rel_tol=1e-6):
                said = f"the loss is scaled by {key} (an extra factor {key})"
            elif math.isclose(ratio, 1 / value, rel_tol=1e-6):
                said = f"the loss is divided by {key}"
            if said:
                return f"{said}, or {factor_two}" if two else said
    return factor_two if two else DIFFERENT


def alternatives(like: str, inputs: list, knobs: dict, form) -> dict[str, float]:
    """What the loss would be under the common mix-ups: chosen and rejected swapped; in the
    per-token forms the other reduction of the responses' tokens (summed vs mean log-probs),
    for a likelihood objective a token-level mean over the whole batch, and for logits labels
    that are not shifted."""
    objective = get_objective(like)
    out: dict[str, float] = {}
    if objective.needs_pairs:  # every form: the pair's roles swapped
        if form.name == "sequences":  # chosen, rejected[, ref_chosen, ref_rejected][, kl...]
            swapped = [inputs[1], inputs[0], *inputs[2:4][::-1], *inputs[4:]]
        else:  # chosen, its mask or labels, rejected, its mask or labels, the reference's two
            swapped = [inputs[2], inputs[3], inputs[0], inputs[1], inputs[5], inputs[4]]
            swapped += inputs[6:9]  # a mismatched objective's pairs stay
            swapped += inputs[9:11][::-1]  # WPO's sums of squared probabilities swap too
        with torch.no_grad():
            out["chosen and rejected are swapped"] = form.reference(like)(*swapped, **knobs).item()
    if {"desirable_weight", "undesirable_weight"} <= set(knobs):  # unpaired: w_D for w_U
        swapped = dict(knobs, desirable_weight=knobs["undesirable_weight"],
                       undesirable_weight=knobs["desirable_weight"])  # fmt: skip
        with torch.no_grad():
            out["desirable_weight and undesirable_weight are swapped"] = form.reference(like)(
                *inputs, **swapped
            ).item()
    logps = form.to_tokens(inputs)
    if logps is None:  # the sequences form: the inputs come reduced already
        return out
    with torch.no_grad():
        if objective.reduction in ("sum", "mean"):
            other = mean_logps if objective.reduction == "sum" else sum_logps
            kind = ("mean", "summed") if objective.reduction == "sum" else ("summed", "mean")
            pairs = [(logps.chosen, logps.chosen_mask), (logps.rejected, logps.rejected_mask)]
            pairs += [(logps.ref_chosen, logps.chosen_mask)]
            pairs += [(logps.ref_rejected, logps.rejected_mask)]
            pairs += [(logps.kl, logps.kl_mask), (logps.ref_kl, logps.kl_mask)]
            present = [(x, m) for x, m in pairs if x is not None]
            if all(len(x) for x, _ in present):  # (an unpaired batch may lack one kind)
                reduced = [other(x, m) for x, m in present]
                mix_up = f"uses {kind[0]} log-probs where {like} uses {kind[1]} ones"
                out[mix_up] = loss_on(like, reduced, knobs)[0].item()
        if not objective.needs_pairs:
            m = logps.chosen_mask
            token_mean = -torch.where(m, logps.chosen, 0.0).sum() / m.sum()
            out["a token-level mean over the batch instead of a mean per sequence"] = (
                token_mean.item()
            )
        if form.name == "logits":
            mix_up = "the labels are not shifted: the logits at t score the label at t, not t + 1"
            out[mix_up] = form.reference(like)(*_unshifted(inputs), **knobs).item()
    return out


def _unshifted(inputs: list) -> list:
    """A logits batch on which the reference scores logits[t] against labels[t] (what an
    implementation that forgot the shift computes): one more position, labels moved right."""
    out = list(inputs)
    for k in (0, 2, 4, 5, 6, 8):
        if k < len(out) and out[k] is not None:
            out[k] = torch.cat([out[k], torch.zeros_like(out[k][:, :1])], dim=1)
    for k in (1, 3, 7):
        if k < len(out) and out[k] is not None:
            out[k] = torch.cat([torch.full_like(out[k][:, :1], IGNORE_INDEX), out[k]], dim=1)
    return out


def masked_contents(fn, inputs, knobs, form) -> Check:
    """Other values at the prompt and padding positions (off every mask) change nothing."""
    other = form.off_mask(inputs)
    try:
        a, grads_a = loss_and_grads(fn, inputs, knobs)
        b, grads_b = loss_and_grads(fn, other, knobs)
    except Broken as err:
        return Check("masked_contents", False, str(err), CALLED_WRONG)
    same = close(a, b, 1e-12, 1e-12) and all(
        close(x, y, 1e-12, 1e-12) for x, y in zip(grads_a, grads_b, strict=True)
    )
    where = "whose next label is -100" if form.name == "logits" else "off the masks"
    return Check(
        "masked_contents",
        same,
        f"loss {a.item():.10g}, {b.item():.10g} with other values at the positions {where}",
        ""
        if same
        else "prompt or padding positions leak into the loss: a mask not applied "
        "(the rejected response's prompt left unmasked, padding counted, or label -100 "
        "gathered as a token instead of ignored)",
    )


def float32(fn, ref, inputs, knobs) -> Check:
    """In float32, loss and gradients finite wherever the float64 reference is finite."""
    want, _ = loss_and_grads(ref, inputs, knobs)
    try:
        got, grads = loss_and_grads(fn, map_floats(inputs, torch.Tensor.float), knobs)
    except Broken as err:
        return Check("float32", False, f"on float32 inputs it {err}", CALLED_WRONG)
    finite = bool(torch.isfinite(got)) and all(bool(torch.isfinite(g).all()) for g in grads)
    if math.isfinite(want.item()) and not finite:
        return Check(
            "float32",
            False,
            f"loss {got.item()} on saturated margins",
            "an unstable formula: log(sigmoid(x)) instead of logsigmoid(x), "
            "log(1 - exp(x)) without log1mexp, or an exp that overflows (0 * inf = nan)",
        )
    return Check("float32", True, "loss and gradients finite on saturated margins")


def batch_order(fn, inputs, knobs) -> Check:
    """Permuting the pairs of a batch leaves the loss unchanged."""
    perm = torch.randperm(len(inputs[0]), generator=torch.Generator().manual_seed(1))
    try:
        a = batch_loss(fn, inputs, knobs).item()
        b = batch_loss(fn, map_rows(inputs, lambda x: x[perm]), knobs).item()
    except Broken as err:
        return Check("batch_order", False, str(err), CALLED_WRONG)
    ok = math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL)
    return Check(
        "batch_order",
        ok,
        f"loss {a:.10g}, permuted {b:.10g}",
        "" if ok else "rows are paired with the wrong rows (a shift or a sort)",
    )


def batch_size(fn, inputs, knobs) -> Check:
    """Two batches together have the row-weighted mean of their losses: the batch and its
    first three rows, concatenated."""
    n, k = len(inputs[0]), 3
    try:
        a = batch_loss(fn, inputs, knobs).item()
        b = batch_loss(fn, map_rows(inputs, lambda x: x[:k]), knobs).item()
        both = batch_loss(fn, map_rows(inputs, lambda x: torch.cat([x, x[:k]])), knobs).item()
    except Broken as err:
        return Check("batch_size", False, str(err), CALLED_WRONG)
    want = (n * a + k * b) / (n + k)
    ok = math.isclose(both, want, rel_tol=RTOL, abs_tol=ATOL)
    if ok:
        bug = ""
    elif math.isclose(both, a + b, rel_tol=1e-6):
        bug = "the batch is summed instead of averaged"
    else:
        bug = "the loss depends on the batch size, or uses only some of its rows"
    measured = f"{n} rows {a:.10g}, {k} rows {b:.10g}, together {both:.10g} (want {want:.10g})"
    return Check("batch_size", ok, measured, bug)


def moved(p: HyperParam, value: float) -> float:
    """Another allowed value of a numeric hyper-parameter, far enough to change the loss."""
    for candidate in (value * 1.7 + 0.3, value * 0.6, value + 0.05):
        try:
            if candidate != value:
                return p.check(candidate, "verify")
        except ValueError:
            continue
    return value


def hyperparameter(
    fn, ref, inputs, knobs, p: HyperParam, taken: set[str], like: str, form
) -> Check | None:
    """Agreement again with ``p`` moved to another allowed value (None: the reference
    refuses that value with these settings, so there is nothing to compare)."""
    name = f"hparam/{p.name}"
    if p.name not in taken:
        return Check(
            name, True, f"not a parameter of the function: checked at {knobs[p.name]:g} only"
        )
    other = dict(knobs, **{p.name: moved(p, knobs[p.name])})
    try:
        ref(*inputs, **other)
    except ValueError:
        return None
    check = agreement(fn, ref, inputs, other, name, like, form)
    if check.bug == DIFFERENT:  # right at the default, wrong here: the knob is the problem
        bug = f"{p.name} is ignored or used differently (e.g. squared)"
    else:  # a named mix-up, a broken call, a wrong gradient: say that
        bug = check.bug
    return Check(name, check.ok, f"at {p.name}={other[p.name]:g}: {check.measured}", bug)


def choice(fn, ref, inputs, knobs, p: HyperParam, taken: set[str], like: str, form) -> list:
    """Agreement again at each other value of a choice hyper-parameter (e.g. DPO's variant),
    where the reference accepts it with the other settings."""
    if p.name not in taken:
        return [Check(f"hparam/{p.name}", True, f"not a parameter of the function: checked at "
                      f"{knobs[p.name]!r} only")]  # fmt: skip
    out = []
    for value in p.choices:
        if value == knobs[p.name]:
            continue
        other = dict(knobs, **{p.name: value})
        try:
            ref(*inputs, **other)
        except ValueError:  # e.g. hinge with label smoothing: nothing to compare
            continue
        check = agreement(fn, ref, inputs, other, f"hparam/{p.name}={value}", like, form)
        bug = (
            f"{p.name}={value!r} is ignored or computed otherwise"
            if check.bug == DIFFERENT
            else check.bug
        )
        out.append(Check(check.name, check.ok, check.measured, bug))
    return out
