"""Run directories of the Frozen Lake experiment: atomic, resumable, self-describing.

    out/config.json           the protocol (LakeConfig as JSON)
    out/cells/M-seedS.json    one finished (method, seed) cell: logged rows and grids
    out/metrics.csv           long format: method, seed, step, one column per metric
    out/summary.csv           final values per method: mean and 95% interval over seeds
    out/figure.png            curves (mean and 95% band) and explored grids per method

Every file is written atomically (``lakelab.files``). A cell file counts as finished only if it
parses, belongs to the same protocol and has every logged step, so re-running into the same
directory trains only what is missing (more seeds or methods welcome; a different protocol is
refused) and a truncated or corrupted file is recomputed, never trusted.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd

from lakelab.files import atomic_save_figure, atomic_write_json, atomic_write_text
from lakelab.mlp.config import LakeConfig
from lakelab.mlp.experiment import MethodResult, Setup, build_setup
from lakelab.mlp.joint import train_methods
from lakelab.mlp.online import train_online
from lakelab.mlp.replay import write_replay
from lakelab.mlp.report import experiment_figure
from lakelab.registry import get_objective
from lakelab.rl_methods import is_rl_method
from lakelab.rundir import cell_path, check_protocol, n_logs, read_cell, write_cell
from lakelab.stats import ci95
from lakelab.training import worker_start_method

SUMMARY_METRICS = (
    "param_mse",
    "kl_uniform",
    "kl_visitation",
    "success",
    "return",
    "optimality",
    "logp_optimal",
    "logp_suboptimal",
    "explored_cells",
    "explored_overlap",
)


def load_cell(path: Path, config: LakeConfig, method: str, seed: int) -> dict | None:
    """A finished cell's content, or None if missing, unreadable, from another protocol, or
    from a lakelab that logged fewer metrics (it is then recomputed)."""
    cell = read_cell(
        path, config.fingerprint(), method, seed, n_logs(config.steps, config.log_every)
    )
    if cell is None or not all(k in cell for k in ("explored", "state_error", "final_policy")):
        return None
    if not all(k in row for row in cell["rows"] for k in SUMMARY_METRICS):
        return None
    return cell


def run_lake(
    config: LakeConfig,
    out: str | Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> dict[str, Path]:
    """Run (or resume) the experiment into ``out``; returns the paths written.

    ``progress(done_steps, total_steps)`` is called as training advances (in method-steps:
    per step for the methods trained in this process, per finished share for the others).
    The missing methods train together (``joint.train_methods``: one batched
    computation). ``workers`` > 1 splits them into that many shares by estimated cost
    (``shares``): this process trains the first while worker processes (forked on Linux,
    ``worker_start_method``) train the others. The numbers are the same either way (a
    method's computation does not depend on which methods share its batch or where it runs;
    tested). Each process writes its share's cells as soon as the share finishes, so an
    error or interruption loses only the shares still running.
    """
    if not (isinstance(workers, int) and workers >= 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    out = Path(out)
    check_protocol(out, config)
    atomic_write_json(out / "config.json", config.to_dict())
    seeds = config.seed_list
    missing = {
        m: [i for i, s in enumerate(seeds) if load_cell(cell_path(out, m, s), config, m, s) is None]
        for m in config.methods
    }
    todo = [m for m in config.methods if missing[m]]
    total, done = config.steps * len(todo), 0
    if total and progress:
        progress(0, total)

    def tick(k: int) -> None:
        nonlocal done
        done += k
        if progress:
            progress(done, total)

    parts = [{m: missing[m] for m in part} for part in shares(config, todo, workers)]
    if len(parts) > 1:
        context = multiprocessing.get_context(worker_start_method())
        warm_up = _warm_up if context.get_start_method() == "spawn" else None
        with ProcessPoolExecutor(len(parts) - 1, context, initializer=warm_up) as pool:
            if warm_up:
                pool.submit(int)  # start the workers now: they import torch during the set-up
            setup = build_setup(config)
            jobs = [pool.submit(_train_share, setup, part, out) for part in parts[1:]]
            _train_share(setup, parts[0], out, progress=tick)  # this process's share
            for job in as_completed(jobs):
                tick(config.steps * len(job.result()))
    elif parts:
        _train_share(build_setup(config), parts[0], out, progress=tick)
    return write_reports(config, out)


def _train_share(
    setup: Setup,
    part: dict[str, list[int]],
    out: Path,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Train the methods of ``part`` (method -> seed indices) together and write their
    cells; returns the methods."""
    preference = {m: seeds for m, seeds in part.items() if not is_rl_method(m)}
    results = train_methods(setup, preference, progress=progress) if preference else {}
    for method, seeds in part.items():  # RL methods sample their own episodes, seed by seed
        if is_rl_method(method):
            results[method] = train_online(setup, method, seeds)
            if progress is not None:
                progress(setup.config.steps)
    for method, result in results.items():
        for n, i in enumerate(part[method]):
            _write_cell(out, setup.config, method, setup.seeds[i], result, n)
    return list(results)


# relative cost of a method in a joint run, for `shares` (how it was measured:
# docs/benchmarks.md)
_COST = {"plain": 1.0, "mixed pass": 3.5, "offline pairs": 2.0, "online pairs": 3.0,
         "online rl": 8.0}  # fmt: skip


def shares(config: LakeConfig, methods: list[str], workers: int) -> list[list[str]]:
    """``methods`` split into at most ``workers`` shares of about equal estimated cost
    (longest first, each to the lightest share), the heaviest share first; each share keeps
    the config's order of methods."""
    if not methods:
        return []
    cost = {m: _COST[_kind(config, m)] for m in methods}
    loads: list[list] = [[0.0, []] for _ in range(min(workers, len(methods)))]
    for m in sorted(methods, key=lambda m: -cost[m]):  # stable: ties keep the config's order
        lightest = min(loads, key=lambda load: load[0])
        lightest[0] += cost[m]
        lightest[1].append(m)
    loads.sort(key=lambda load: -load[0])
    return [[m for m in methods if m in part] for _, part in loads]


def _kind(config: LakeConfig, method: str) -> str:
    if is_rl_method(method):
        return "online rl"
    objective = get_objective(method)
    if objective.mixed_pass:
        return "mixed pass"
    if objective.needs_pairs:
        return f"{config.negatives} pairs"
    return "plain"


def _warm_up() -> None:
    """Spawned worker start-up: import the heavy modules before the first job arrives."""
    import lakelab.mlp.joint  # noqa: F401


def _write_cell(out: Path, config, method: str, seed: int, r: MethodResult, n: int) -> None:
    """The replay first, then the cell: a cell present means its replay is there too."""
    write_replay(out, method, seed, [row["step"] for row in r.rows[n]], r.replay, row=n)
    write_cell(
        out,
        config.fingerprint(),
        method,
        seed,
        r.rows[n],
        explored=r.explored[n].tolist(),
        state_error=r.state_error[n].tolist(),
        final_policy=r.final_policy[n].tolist(),
    )


def write_reports(config: LakeConfig, out: Path) -> dict[str, Path]:
    """metrics.csv, summary.csv and figure.png from the finished cells of ``config``."""
    cells = {
        (m, s): load_cell(cell_path(out, m, s), config, m, s)
        for m in config.methods
        for s in config.seed_list
    }
    rows = [
        {"method": m, "seed": s, **row} for (m, s), cell in cells.items() for row in cell["rows"]
    ]
    metrics = pd.DataFrame(rows)
    atomic_write_text(out / "metrics.csv", metrics.to_csv(index=False))
    summary = summarize(metrics)
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    explored = {
        m: np.mean([_share(cells[(m, s)]["explored"]) for s in config.seed_list], axis=0)
        for m in config.methods
    }
    fig = experiment_figure(config, metrics, explored)
    # zlib level 1, not the default 6: a slightly larger file (speed: docs/benchmarks.md)
    atomic_save_figure(fig, out / "figure.png", dpi=110, pil_kwargs={"compress_level": 1})
    import matplotlib.pyplot as plt

    plt.close(fig)  # long-running callers (the app) would otherwise keep every figure
    return {
        k: out / f
        for k, f in (
            ("config", "config.json"),
            ("metrics", "metrics.csv"),
            ("summary", "summary.csv"),
            ("figure", "figure.png"),
        )
    }


def _share(mass: list[float]) -> np.ndarray:
    mass = np.asarray(mass)
    return mass / mass.sum() if mass.sum() > 0 else mass


def summarize(metrics: pd.DataFrame) -> pd.DataFrame:
    """Final-step values per method: ``{metric}_mean`` and ``{metric}_ci95`` (half-width)."""
    final = metrics[metrics["step"] == metrics["step"].max()]
    out = []
    for method, group in final.groupby("method", sort=False):
        row: dict[str, float | str] = {"method": method, "seeds": len(group)}
        for k in SUMMARY_METRICS:
            row[f"{k}_mean"], row[f"{k}_ci95"] = ci95(group[k].to_numpy())
        out.append(row)
    return pd.DataFrame(out)
