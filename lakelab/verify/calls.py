"""Calling the function under test safely: its loss, its gradients, never its traceback.

A batch is a list of positional inputs in the order of its form (``lakelab.verify.forms``):
float tensors are differentiable inputs, bool and integer tensors (masks, labels) and None
are carried along unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch


class Broken(Exception):
    """The function under test raised or returned something that is not a loss."""


def _parameters(fn: Callable) -> list[inspect.Parameter] | None:
    """``fn``'s parameters (a torch module's ``forward``'s); None if they cannot be read."""
    target = fn.forward if isinstance(fn, torch.nn.Module) else fn
    try:
        return list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return None


def accepted(fn: Callable, knobs: dict) -> set[str] | None:
    """The hyper-parameters ``fn`` accepts by keyword (all of them with ``**kwargs``); None if
    its signature cannot be inspected."""
    params = _parameters(fn)
    if params is None:
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return set(knobs)
    return {p.name for p in params if p.name in knobs}


def unknown_numbers(fn: Callable, knobs: dict) -> list[str]:
    """Keyword parameters of ``fn`` with a numeric default that ``knobs`` does not name (e.g.
    TRL's ``beta`` for what lakelab's ORPO calls ``lam``)."""
    params = _parameters(fn) or []
    return [
        p.name
        for p in params
        if p.name not in knobs
        and isinstance(p.default, int | float)
        and not isinstance(p.default, bool)
    ]


def batch_loss(fn: Callable, inputs: list, knobs: dict) -> torch.Tensor:
    """The batch-mean loss of ``fn`` on ``inputs``; Broken if it raises or is no loss."""
    try:
        out = fn(*inputs, **knobs)
    except Exception as err:
        raise Broken(f"raised {type(err).__name__}: {err}") from None
    if isinstance(out, tuple | list):
        out = out[0] if out else None
    if not isinstance(out, torch.Tensor):
        raise Broken(f"returned {type(out).__name__}, not a tensor")
    if out.dim() == 1 and out.shape[0] == inputs[0].shape[0]:
        out = out.mean()  # per-sequence losses
    if out.dim() != 0:
        raise Broken(f"returned shape {tuple(out.shape)}, not a scalar or (B,)")
    if not out.is_floating_point():
        raise Broken(f"returned dtype {out.dtype}, not a floating-point loss")
    return out


def floats(inputs: list) -> list[bool]:
    """Which inputs are differentiable (float tensors)."""
    return [isinstance(x, torch.Tensor) and x.is_floating_point() for x in inputs]


def map_floats(inputs: list, f: Callable[[torch.Tensor], torch.Tensor]) -> list:
    """``f`` applied to the float tensors of ``inputs``; masks, labels and None kept."""
    return [f(x) if is_float else x for x, is_float in zip(inputs, floats(inputs), strict=True)]


def map_rows(inputs: list, f: Callable[[torch.Tensor], torch.Tensor]) -> list:
    """``f`` applied to every tensor of ``inputs`` (a row operation); None kept."""
    return [None if x is None else f(x) for x in inputs]


def loss_and_grads(fn: Callable, inputs: list, knobs: dict) -> tuple[torch.Tensor, list]:
    """The loss and its gradient w.r.t. each float input (zeros where it has none). ``fn``
    gets copies of the inputs, so it may edit them in place."""
    leaves = map_floats(inputs, lambda x: x.detach().clone().requires_grad_(True))
    wrt = [x for x, is_float in zip(leaves, floats(leaves), strict=True) if is_float]
    loss = batch_loss(fn, map_floats(leaves, torch.Tensor.clone), knobs)  # in-place edits: ok
    if not loss.requires_grad:
        raise Broken("returned a loss that does not depend on the inputs (no gradient)")
    try:
        grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    except Exception as err:
        raise Broken(f"raised {type(err).__name__} in its backward pass: {err}") from None
    grads = [torch.zeros_like(x) if g is None else g for x, g in zip(wrt, grads, strict=True)]
    return loss.detach(), grads


def close(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> bool:
    """Elementwise isclose, NaN equal to NaN; False for different shapes."""
    if a.shape != b.shape:
        return False
    a, b = a.double(), b.double()
    both_nan = torch.isnan(a) & torch.isnan(b)
    return bool((both_nan | torch.isclose(a, b, rtol=rtol, atol=atol)).all())


def examples_mean(fn: Callable, rejected_at: int) -> Callable:
    """``fn`` of an unpaired objective, whose losses may come one per example (B_D + B_U,),
    desirable and undesirable concatenated as TRL's KTO does: then their mean. ``rejected_at``
    is the undesirable examples' position among the inputs."""

    def call(*inputs: Any, **knobs: Any) -> Any:
        out = fn(*inputs, **knobs)
        loss = out[0] if isinstance(out, tuple | list) and out else out
        n = len(inputs[0]) + len(inputs[rejected_at])
        if isinstance(loss, torch.Tensor) and loss.dim() == 1 and len(loss) == n != len(inputs[0]):
            return loss.mean()
        return out

    return call


def keywords_only(fn: Callable, taken: set[str], unpack: Callable[[list], Any] | None) -> Callable:
    """``fn`` called with the hyper-parameters it takes only, on the inputs as its form hands
    them over (``unpack``: the batch as one object, e.g. a SequenceLogps; None: positional)."""

    def call(*inputs: Any, **knobs: Any) -> Any:
        kept = {k: v for k, v in knobs.items() if k in taken}
        return fn(unpack(list(inputs)), **kept) if unpack else fn(*inputs, **kept)

    return call
