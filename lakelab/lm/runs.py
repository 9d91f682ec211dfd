"""Run directories of the LM track: atomic, resumable, the layout of ``lakelab.rundir``.

    out/config.json                  the protocol (LMConfig as JSON)
    out/cells/base-seedS.json        the base model's pre-training curve (held-out metrics)
    out/cells/M-seedS.json           one finished (method, seed) alignment curve
    out/checkpoints/base-seedS.pt    state dicts, {"protocol": str, "state_dict": ...},
    out/checkpoints/M-seedS.pt       loaded with torch.load(..., weights_only=True)
    out/metrics.csv                  long format: method, seed, stage, step, one column a metric
    out/summary.csv                  final values per method (base first): mean, 95% interval
    out/figure.png                   curves with 95% bands

A cell counts as finished only if it parses, belongs to the same protocol and has every
logged step (``lakelab.rundir``), so re-running into the same directory computes only what is
missing (more seeds or methods welcome, a different protocol refused). An aligned cell needs
its seed's base model: loaded from its checkpoint when that is intact, else pre-trained again
(deterministically, so identically).

By default a process's seeds train together (``lakelab.lm.batched``): their missing base
models are pre-trained as one batched computation, then each method aligns, together, the
seeds that miss it; RL methods train one seed after another. ``stack=k`` trains them in
stacks of at most k seeds (less memory, and a stack's cells are written sooner); ``stack=1``
runs the plain loop, one seed after another. Every stack size writes the same files, bit
for bit (tested).

Training runs on one CPU thread (``lakelab.training.torch_threads``), so the results do not
depend on the machine's core count.
"""

from __future__ import annotations

import io
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch

from lakelab.files import (
    atomic_save_figure,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)
from lakelab.lm.batched import align_seeds, pretrain_seeds
from lakelab.lm.config import LMConfig
from lakelab.lm.data import SeedData, seed_data, tasks
from lakelab.lm.metrics import METRICS, HeldOut, evaluate, held_out
from lakelab.lm.model import TinyGPT, model_config
from lakelab.lm.rl import align_rl
from lakelab.lm.train import ReferenceCache, align, pretrain
from lakelab.registry import get_objective
from lakelab.rl_methods import is_rl_method
from lakelab.rundir import cell_path, check_protocol, n_logs, read_cell, write_cell
from lakelab.stats import ci95
from lakelab.training import torch_threads, worker_start_method

BASE = "base"


def checkpoint_path(out: Path, method: str, seed: int) -> Path:
    return out / "checkpoints" / f"{method}-seed{seed}.pt"


def load_cell(out: Path, config: LMConfig, method: str, seed: int) -> dict | None:
    """A finished cell's content, or None if missing, unreadable or from another protocol."""
    if method == BASE:
        expected = n_logs(config.pretrain_steps, config.pretrain_log_every)
    else:
        expected = n_logs(config.align_steps, config.log_every)
    return read_cell(cell_path(out, method, seed), config.fingerprint(), method, seed, expected)


def save_checkpoint(path: Path, model: TinyGPT, protocol: str) -> None:
    buf = io.BytesIO()
    torch.save({"protocol": protocol, "state_dict": model.state_dict()}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, config: LMConfig) -> TinyGPT | None:
    """The model saved at ``path`` (weights_only: no code is unpickled), or None if the file
    is missing, unreadable or from another protocol."""
    try:
        saved = torch.load(path, weights_only=True)
        if saved["protocol"] != config.fingerprint():
            return None
        model = TinyGPT(model_config(config.model))
        model.load_state_dict(saved["state_dict"])
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, EOFError):
        return None
    return model


def run_lm(
    config: LMConfig,
    out: str | Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    stack: int | None = None,
    workers: int = 1,
) -> dict[str, Path]:
    """Run (or resume) the LM experiment into ``out``; returns the paths written.

    ``progress(done_steps, total_steps)`` is called as pre-training and alignment advance
    (steps summed over seeds; a worker's steps count when it finishes). ``stack``: at most
    this many seeds train together (default: all of a process's), 1 for one after another
    (module docstring). ``workers`` > 1 splits the seeds that have work left into that many groups,
    every ``workers``-th seed in one: this process trains the first while worker processes
    (forked on Linux, ``worker_start_method``) train the others. A seed's numbers do not
    depend on which seeds train beside it or where (tested).
    """
    for name, value in (("workers", workers), ("stack", 1 if stack is None else stack)):
        if isinstance(value, bool) or not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    out = Path(out)
    check_protocol(out, config)
    atomic_write_json(out / "config.json", config.to_dict())
    plan = _plan(config, out, config.seed_list)
    done = 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        if progress is not None:
            progress(done, total)

    total = sum(p.steps for p in plan.values())
    if total and progress is not None:
        progress(0, total)
    busy = [seed for seed, p in plan.items() if p.steps]
    groups = [{s: plan[s] for s in busy[i::workers]} for i in range(min(workers, len(busy)))]
    if len(groups) > 1:
        tasks(config)  # the lakes, built once (cached): forked workers inherit them
        context = multiprocessing.get_context(worker_start_method())
        with ProcessPoolExecutor(len(groups) - 1, context) as pool:
            jobs = [pool.submit(_run_seeds, config, out, g, stack) for g in groups[1:]]
            _run_seeds(config, out, groups[0], stack, tick)
            for job in as_completed(jobs):
                tick(job.result())
    elif groups:
        _run_seeds(config, out, groups[0], stack, tick)
    return write_reports(config, out)


class SeedPlan(NamedTuple):
    """What one seed of a run still needs."""

    pretrain: bool  # its base model's cell is missing
    todo: list[str]  # the methods whose cells are missing
    steps: int  # the training steps that makes


def _plan(config: LMConfig, out: Path, seeds: list[int]) -> dict[int, SeedPlan]:
    plan = {}
    for seed in seeds:
        todo = [m for m in config.methods if load_cell(out, config, m, seed) is None]
        pretrain = load_cell(out, config, BASE, seed) is None
        steps = config.pretrain_steps * pretrain + config.align_steps * len(todo)
        plan[seed] = SeedPlan(pretrain, todo, steps)
    return plan


def _run_seeds(config: LMConfig, out: Path, plan: dict[int, SeedPlan], stack: int | None,
               tick=None) -> int:  # fmt: skip
    """Train what the seeds of ``plan`` miss into ``out`` (one process's share); returns its
    steps."""
    steps = 0

    def count(k: int) -> None:
        nonlocal steps
        steps += k
        if tick is not None:
            tick(k)

    # a seed's base model: from its checkpoint if its cell and checkpoint are intact and some
    # method needs it; None means pre-train (again)
    bases: dict[int, TinyGPT | None] = {}
    for seed, p in plan.items():
        if p.pretrain:
            bases[seed] = None
        elif p.todo:
            bases[seed] = load_checkpoint(checkpoint_path(out, BASE, seed), config)
    todo = {seed: p.todo for seed, p in plan.items()}
    with torch_threads(1):
        held = held_out(config) if bases else None
        seeds = list(bases)
        if stack == 1:  # the plain loop
            for seed in seeds:
                _run_seed(config, out, seed, bases[seed], todo[seed], held, count)
        elif seeds:
            size = stack or len(seeds)
            for part in (seeds[i : i + size] for i in range(0, len(seeds), size)):
                _run_batched(config, out, {s: bases[s] for s in part}, todo, held, count)
    return steps


def _run_batched(config, out, bases: dict, todo: dict, held: HeldOut, tick) -> None:
    """``_run_seed`` for every seed of ``bases`` at once: the missing base models pre-trained
    together, then per method the seeds that miss it aligned together."""
    seeds = list(bases)
    data = {seed: seed_data(config, seed) for seed in seeds}
    missing = [seed for seed in seeds if bases[seed] is None]
    if missing:
        rows: dict[int, list[dict]] = {seed: [] for seed in missing}
        logs = [_pretrain_logger(rows[seed], held) for seed in missing]
        corpora = [data[seed].corpus for seed in missing]
        trained = pretrain_seeds(config, corpora, missing, logs=logs, progress=tick)
        for seed, base in zip(missing, trained, strict=True):
            save_checkpoint(checkpoint_path(out, BASE, seed), base, config.fingerprint())
            _write_cell(out, config, BASE, seed, rows[seed])
            bases[seed] = base
    references = {seed: _reference(bases[seed], data[seed], todo[seed]) for seed in seeds}
    base_metrics = {}
    for seed in (seed for seed in seeds if todo[seed]):
        final = load_cell(out, config, BASE, seed)["rows"][-1]
        base_metrics[seed] = {k: final[k] for k in METRICS}
    for method in config.methods:
        need = [seed for seed in seeds if method in todo[seed]]
        if not need:
            continue
        rows = {seed: [] for seed in need}
        logs = [_align_logger(rows[seed], base_metrics[seed], held) for seed in need]
        if is_rl_method(method):  # sampled plans: one seed after another
            models = [
                align_rl(config, bases[seed], method, data[seed], seed, log=log, progress=tick)
                for seed, log in zip(need, logs, strict=True)
            ]
        else:
            models = align_seeds(config, [bases[seed] for seed in need], method,
                                 [data[seed] for seed in need], need,
                                 references=[references[seed] for seed in need], logs=logs,
                                 progress=tick)  # fmt: skip
        for seed, model in zip(need, models, strict=True):
            save_checkpoint(checkpoint_path(out, method, seed), model, config.fingerprint())
            _write_cell(out, config, method, seed, rows[seed])


def _reference(base: TinyGPT, data: SeedData, methods: list[str]) -> ReferenceCache | None:
    """The seed's reference cache if one of ``methods`` needs it, else None."""
    needs_ref = any(not is_rl_method(m) and get_objective(m).needs_reference for m in methods)
    return ReferenceCache.build(base, data) if needs_ref else None


def _run_seed(config, out, seed, base, methods: list[str], held: HeldOut, tick) -> None:
    """Pre-train the base model if ``base`` is None, then align it with ``methods``."""
    data = seed_data(config, seed)
    if base is None:
        base = _pretrain_base(config, out, seed, data, held, tick)
    if not methods:
        return
    reference = _reference(base, data, methods)
    base_final = load_cell(out, config, BASE, seed)["rows"][-1]
    base_metrics = {k: base_final[k] for k in METRICS}
    for method in methods:
        rows: list[dict] = []
        log = _align_logger(rows, base_metrics, held)
        if is_rl_method(method):  # plans sampled from the model, scored on their lakes
            model = align_rl(config, base, method, data, seed, log=log, progress=tick)
        else:
            model = align(config, base, method, data, seed, reference=reference, log=log,
                          progress=tick)  # fmt: skip
        save_checkpoint(checkpoint_path(out, method, seed), model, config.fingerprint())
        _write_cell(out, config, method, seed, rows)


def _align_logger(rows: list[dict], base_metrics: dict, held: HeldOut):
    def log(model: TinyGPT, step: int, extra: dict) -> None:
        # step 0 is the base model, already evaluated at the end of pre-training
        metrics = base_metrics if step == 0 else evaluate(model, held)
        rows.append({"step": step, **metrics, **extra})

    return log


def _pretrain_logger(rows: list[dict], held: HeldOut):
    def log(model: TinyGPT, step: int) -> None:
        rows.append({"step": step, **evaluate(model, held)})

    return log


def _pretrain_base(config, out: Path, seed: int, data: SeedData, held: HeldOut, tick) -> TinyGPT:
    rows: list[dict] = []
    base = pretrain(config, data.corpus, seed, log=_pretrain_logger(rows, held), progress=tick)
    save_checkpoint(checkpoint_path(out, BASE, seed), base, config.fingerprint())
    _write_cell(out, config, BASE, seed, rows)
    return base


def _write_cell(out: Path, config: LMConfig, method: str, seed: int, rows: list[dict]) -> None:
    write_cell(out, config.fingerprint(), method, seed, rows)


def write_reports(config: LMConfig, out: Path) -> dict[str, Path]:
    """metrics.csv, summary.csv and figure.png from the finished cells of ``config``."""
    rows = []
    for method in (BASE, *config.methods):
        stage = "pretrain" if method == BASE else "align"
        for seed in config.seed_list:
            cell = load_cell(out, config, method, seed)
            rows += [{"method": method, "seed": seed, "stage": stage, **r} for r in cell["rows"]]
    metrics = pd.DataFrame(rows)
    atomic_write_text(out / "metrics.csv", metrics.to_csv(index=False))
    atomic_write_text(out / "summary.csv", summarize(metrics).to_csv(index=False))
    from lakelab.lm.report import lm_figure

    title = (
        f"{config.size}x{config.size} lakes, {config.n_test} held-out, {config.seeds} seed(s), "
        f"model {config.model}, negatives {config.negatives}: mean and 95% interval"
    )
    atomic_save_figure(lm_figure(metrics, title), out / "figure.png", dpi=110)
    names = ("config.json", "metrics.csv", "summary.csv", "figure.png")
    return {name.split(".")[0]: out / name for name in names}


def summarize(metrics: pd.DataFrame) -> pd.DataFrame:
    """Each method's last logged values (the base model's: end of pre-training):
    ``{metric}_mean`` and ``{metric}_ci95`` (half-width of the 95% t-interval over seeds)."""
    final = metrics.groupby(["method", "seed"], sort=False).tail(1)
    out = []
    for method, group in final.groupby("method", sort=False):
        row: dict[str, float | str] = {"method": method, "seeds": len(group)}
        for k in METRICS:
            row[f"{k}_mean"], row[f"{k}_ci95"] = ci95(group[k].to_numpy())
        out.append(row)
    return pd.DataFrame(out)
