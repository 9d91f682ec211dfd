"""Alarms: where TRL's proxies and the exact truth of a Frozen Lake run disagree.

A preference run logs what TRL logs (``batch/rewards/margins``, ``batch/rewards/accuracies``,
``batch/logps/chosen``, ``batch/logps/rejected``: the proxies) and, on the lake, what a
real run never has: the exact success probability, V^pi/V* (``optimality``) and the KL to pi*
(the truth). Each alarm reads the means over seeds at the logged steps and, when it fires,
says what it saw and what causes it:

    reference   margins, rewards/chosen and rewards/rejected stay at 0: the policy equals
                its reference (DPO's loss then sits at log 2 = 0.693) and nothing is learned
    saturated   rewards/accuracies reaches 1 while success falls (by more than 0.02, or
                to less than half): the proxy has nothing left to say about the policy
    displaced   the margin rises while logps/chosen falls: the rejected likelihood falls
                faster than the chosen one (likelihood displacement)
    exhausted   most online negatives come from the offline pool: the policy reproduces its
                demonstrations and sampling finds few fresh rejected trajectories

``lakelab lake`` prints them at the end of a run; the app shows them beside the curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

__all__ = ["PROXIES", "Alarm", "alarms", "format_alarms", "has_proxies"]

PROXIES = ("batch/rewards/margins", "batch/rewards/accuracies", "batch/logps/chosen",
           "batch/logps/rejected")  # fmt: skip
"""TRL's names for what a preference run logs about its batches."""

STILL = 1e-4  # |reward| below this at every logged step: the policy has not moved
SATURATED = 0.99  # accuracy at or above: saturated
SUCCESS_DROP = 0.02  # success falling by more than this, or to less than half, is a fall
CHOSEN_DROP = 0.1  # nats of logps/chosen
EXHAUSTED = 0.5  # share of the rejected slots filled from the offline pool


@dataclass(frozen=True)
class Alarm:
    method: str
    kind: str  # reference, saturated, displaced or exhausted
    step: int  # the logged step where it fired
    message: str


def alarms(metrics: pd.DataFrame, *, batch_size: int) -> list[Alarm]:
    """Every alarm of every method of ``metrics`` (``metrics.csv`` of a lake run), in the
    order of the methods."""
    found: list[Alarm] = []
    for method, rows in metrics.groupby("method", sort=False):
        mean = rows.drop(columns=["method"]).groupby("step").mean(numeric_only=True)
        for check in (_reference, _saturated, _displaced, _exhausted):
            alarm = check(str(method), mean, batch_size)
            if alarm is not None:
                found.append(alarm)
    return found


def has_proxies(metrics: pd.DataFrame) -> bool:
    """Whether any method of ``metrics`` logged one of TRL's preference proxies."""
    return any(c in metrics and metrics[c].notna().any() for c in PROXIES)


def format_alarms(found: list[Alarm], metrics: pd.DataFrame | None = None) -> str:
    """The alarms as lines of text; with ``metrics``, a run without any proxy says so."""
    if not found and metrics is not None and not has_proxies(metrics):
        return "alarms: none (no method logged TRL's preference proxies)"
    if not found:
        return "alarms: none (the proxies and the exact truth agree)"
    return "\n".join(["alarms:", *(f"  {a.method} [{a.kind}] {a.message}" for a in found)])


def _series(mean: pd.DataFrame, column: str) -> pd.Series | None:
    """A logged column without the steps that have no value (step 0 has no batch yet)."""
    if column not in mean:
        return None
    values = mean[column].dropna()
    return values if len(values) else None


def _reference(method: str, mean: pd.DataFrame, batch_size: int) -> Alarm | None:
    rewards = [_series(mean, f"batch/rewards/{k}") for k in ("chosen", "rejected", "margins")]
    if any(r is None for r in rewards) or max(r.abs().max() for r in rewards) >= STILL:
        return None
    steps = rewards[2].index
    loss = _series(mean, "batch/loss")
    at = "" if loss is None else f" (loss {loss.iloc[-1]:.4f})"
    return Alarm(
        method,
        "reference",
        int(steps[0]),
        f"rewards/margins, rewards/chosen and rewards/rejected stay within {STILL:g} of 0 "
        f"from step {steps[0]} to {steps[-1]}{at}: the policy still equals its reference (for "
        f"DPO the loss sits at log 2 = {math.log(2):.4f}), so nothing is learned; raise lr or "
        "beta, or check that the gradient reaches the policy",
    )


def _saturated(method: str, mean: pd.DataFrame, batch_size: int) -> Alarm | None:
    accuracy, success = _series(mean, "batch/rewards/accuracies"), _series(mean, "success")
    if accuracy is None or success is None or not (accuracy >= SATURATED).any():
        return None
    first = int(accuracy.index[accuracy >= SATURATED][0])
    later = success.loc[first:]
    if first not in success.index or not len(later):
        return None
    low_step, at, low = int(later.idxmin()), success.loc[first], later.min()
    if at - low <= SUCCESS_DROP and not low < at / 2:
        return None
    return Alarm(
        method,
        "saturated",
        first,
        f"rewards/accuracies is {accuracy.loc[first]:.2f} from step {first}, yet the exact "
        f"success probability falls from {at:.3g} to {low:.3g} (step {low_step}): every pair "
        "is already ranked right, so the proxy no longer watches the policy",
    )


def _displaced(method: str, mean: pd.DataFrame, batch_size: int) -> Alarm | None:
    margins, chosen = _series(mean, "batch/rewards/margins"), _series(mean, "batch/logps/chosen")
    if margins is None or chosen is None or len(chosen) < 2:
        return None
    rise, fall = margins.iloc[-1] - margins.iloc[0], chosen.iloc[0] - chosen.iloc[-1]
    if rise <= 0 or fall <= CHOSEN_DROP:
        return None
    step = int(chosen.index[-1])
    rejected = _series(mean, "batch/logps/rejected")
    also = "" if rejected is None else (
        f" and logps/rejected from {rejected.iloc[0]:.2f} to {rejected.iloc[-1]:.2f}"
    )  # fmt: skip
    return Alarm(
        method,
        "displaced",
        step,
        f"rewards/margins rises from {margins.iloc[0]:.2f} to {margins.iloc[-1]:.2f} while "
        f"logps/chosen falls from {chosen.iloc[0]:.2f} to {chosen.iloc[-1]:.2f}{also} (step "
        f"{step}): the rejected likelihood falls faster, and the chosen mass goes elsewhere "
        "(likelihood displacement; the replay shows where)",
    )


def _exhausted(method: str, mean: pd.DataFrame, batch_size: int) -> Alarm | None:
    if "online_fallback" not in mean or not (mean["online_fallback"] > 0).any():
        return None
    cumulative = mean["online_fallback"]
    steps = cumulative.index.to_numpy()
    # the slots filled from the offline pool per rejected slot, between consecutive logs
    rate = cumulative.diff().iloc[1:] / (pd.Series(steps).diff().iloc[1:].to_numpy() * batch_size)
    over = rate[rate >= EXHAUSTED]
    if not len(over):
        return None
    end = int(over.index[0])  # the interval ending at this logged step
    start = int(steps[list(steps).index(end) - 1])
    return Alarm(
        method,
        "exhausted",
        start,
        f"from step {start} to {end}, {over.iloc[0]:.0%} of the online rejected slots came "
        "from the offline pool: the policy reproduces its demonstrations and sampling finds "
        "few fresh negatives",
    )
