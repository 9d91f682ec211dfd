"""``lakelab verify``: check an objective implementation against lakelab's, in seconds.

    report = verify(my_dpo, like="dpo", hparams={"beta": 0.1})
    report.ok          # True when every check passes
    print(report)      # one line per check: verdict, what was measured, the likely bug

The function under test takes one of three forms (``inputs=``, ``lakelab.verify.forms``):

    "sequences"  fn(chosen, rejected, ref_chosen, ref_rejected, **hp)   DPO, IPO: S(y) or A(y)
                 fn(chosen, rejected, **hp)                             ORPO, ASFT, SimPO: A(y)
                 fn(chosen, **hp)                                       SFT: A(y_w)
    "tokens"     fn(logps: SequenceLogps, **hp)    per-token log-probs (B, T) and masks
    "logits"     fn(batch: SequenceLogits, **hp)   logits (B, T, V), labels (B, T), -100 ignored

(S: summed, A: mean log-prob of a response, as the registry's ``reduction`` says). For an
unpaired objective (KTO, BCO) chosen are the desirable and rejected the undesirable examples,
their numbers independent (the batches include one kind only and unequal kinds), and KTO also
takes the mismatched pairs' log-probs and the reference's: ``fn(chosen, rejected, ref_chosen,
ref_rejected, kl, ref_kl, **hp)``, or the fields kl, kl_mask (kl_labels), ref_kl. In the
per-token forms the positions off the masks (prompt, padding) hold arbitrary values: that is
where most masking and length-normalisation bugs live. The function gets the reference's
hyper-parameters as keywords (those its signature names) and returns the batch loss: a
scalar, per-sequence losses (B,) (averaged; unpaired: one per example), or a tuple whose first
element is one of those.

The battery, each check named and, when it fails, saying the bug it most likely means:

- ``agrees/...``: value and gradient against ``lakelab.registry`` in float64 on a random
  batch and adversarial ones (``checks``, batches in ``batches``);
- ``float32``, ``batch_order``, ``batch_size``, ``masked_contents`` (per-token forms);
- ``closed/...`` and ``optimum``: facts derived by hand, not from lakelab's code
  (``properties``);
- ``hparam/NAME``: agreement again with each numeric hyper-parameter moved.

A function that raises or returns garbage fails with a line saying so, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lakelab.registry import get_objective, resolve_hparams
from lakelab.verify import checks, properties
from lakelab.verify.batches import BATCHES
from lakelab.verify.calls import accepted, examples_mean, keywords_only, unknown_numbers
from lakelab.verify.forms import FORMS, IGNORE_INDEX, SequenceLogits, label_logps
from lakelab.verify.report import Check, Report

__all__ = ["IGNORE_INDEX", "Check", "Report", "SequenceLogits", "label_logps", "verify"]


def verify(
    fn: Callable[..., Any],
    like: str,
    hparams: dict[str, Any] | None = None,
    inputs: str = "sequences",
) -> Report:
    """Run every check of ``fn`` against objective ``like`` (see the module docstring)."""
    if inputs not in FORMS:
        raise ValueError(f"inputs must be one of {list(FORMS)}, got {inputs!r}")
    objective = get_objective(like)
    if objective.reduction == "tokens" and inputs == "sequences":
        raise ValueError(
            f"{like!r} works on per-token log-probs: use inputs='tokens' or inputs='logits'"
        )
    if not callable(fn):
        raise ValueError(f"the function to verify must be callable, got {fn!r}")
    form = FORMS[inputs]
    hp = resolve_hparams(like, hparams)
    knobs = {p.name: hp[p.name] for p in objective.hyperparams if not p.model_side}
    report = Report(like, knobs, inputs)
    add = report.checks.append
    taken = accepted(fn, knobs)
    if taken is None:
        add(Check("signature", False, "fn has no inspectable signature", ""))
        taken = set(knobs)
    mine = keywords_only(fn, taken, form.unpack)
    if objective.unpaired:  # per-example losses: desirable, then undesirable
        mine = examples_mean(mine, form.rejected_at)
    ref = form.reference(like)
    batches = BATCHES[inputs](objective)
    for name, batch in batches.items():
        add(checks.agreement(mine, ref, batch, knobs, f"agrees/{name}", like, form))
    _by_batch(report.checks)
    add(checks.float32(mine, ref, batches["saturated"], knobs))
    add(checks.batch_order(mine, batches["random"], knobs))
    if not objective.batchwise:  # a batchwise loss is not a mean of row losses
        add(checks.batch_size(mine, batches["random"], knobs))
    if form.off_mask(batches["random"]) is not None:
        add(checks.masked_contents(mine, batches["random"], knobs, form))
    for closed in properties.closed_forms(objective, knobs):
        check = properties.check_closed_form(mine, form, objective, knobs, taken, closed)
        if check is not None:
            add(check)
    check = properties.check_optimum(mine, form, objective, knobs, taken)
    if check is not None:
        add(check)
    for p in objective.hyperparams:
        if p.model_side:
            continue
        if p.choices is not None:
            report.checks += checks.choice(
                mine, ref, batches["random"], knobs, p, taken, like, form
            )
            continue
        check = checks.hyperparameter(mine, ref, batches["random"], knobs, p, taken, like, form)
        if check is not None:
            add(check)
    missing = [k for k, v in knobs.items() if k not in taken and not isinstance(v, str)]
    extra = unknown_numbers(fn, knobs)
    if missing and extra:
        add(
            Check(
                "signature",
                False,
                f"it takes {extra}, verify passes {missing} (lakelab's names for {like})",
                f"a hyper-parameter under another name (TRL's ORPO calls lam beta): the "
                f"function runs at its own default of {extra}; wrap it to take {missing}",
            )
        )
    return report


def _by_batch(found: list[Check]) -> None:
    """An agreement check that fails only on adversarial batches says so."""
    if not found or not found[0].ok:
        return
    for k, c in enumerate(found):
        if not c.ok and c.bug == checks.DIFFERENT:
            kinds = c.name.endswith(("_only", "unequal_kinds"))  # an unpaired batch
            found[k] = Check(
                c.name,
                False,
                c.measured,
                "it agrees when the kinds come in equal numbers, not here: a mean per kind "
                "(or per pair) instead of over all examples, or a kind's rows paired up"
                if kinds
                else "it agrees on the random batch, not on this one: a clamp, or a formula "
                "unstable or wrong only on extreme inputs",
            )
