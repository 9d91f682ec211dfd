"""Running a sweep: every cell of a ``SweepSpec``, resumable, on a process pool or Ray.

A cell's result is one file, written atomically as soon as the cell finishes
(``lakelab.mlp.sweep``), so rerunning a sweep skips exactly the finished cells. A cell that
raises is recorded with its error (``status = "error"``) and the sweep goes on;
``retry_failed`` runs those again.

Backends: ``local`` (default; ``workers`` processes, or this process when ``workers=1``) and
``ray`` (the same cells as Ray tasks, on a local Ray or the cluster at ``address``; needs the
``lakelab[ray]`` extra). Results do not depend on the backend: a cell's numbers depend only
on its protocol (every cell trains on one torch thread).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from lakelab.files import atomic_write_json
from lakelab.mlp.config import LakeConfig
from lakelab.mlp.experiment import build_setup
from lakelab.mlp.joint import train_method
from lakelab.mlp.sweep import FINAL_KEYS, KEPT_LOG_KEYS, Cell, SweepSpec, cell_file, load_cell
from lakelab.mlp.sweep_report import write_sweep_reports

BACKENDS = ("local", "ray")


_SETUPS: dict[str, Any] = {}  # per process: the last set-ups built, by protocol


def run_cell(config: LakeConfig, method: str) -> dict[str, Any]:
    """Train one cell; never raises: a failure is returned as ``status = "error"``."""
    start = time.perf_counter()
    try:
        key = config.fingerprint(exclude=("methods",))
        if key not in _SETUPS:
            _SETUPS.clear()  # keep one: cells arrive point-major
            _SETUPS[key] = build_setup(config)
        setup = _SETUPS[key]
        result = train_method(setup, method)
        rows = []
        for n, seed in enumerate(setup.seeds):
            first, last = result.rows[n][0], result.rows[n][-1]
            row = {"seed": seed, **{k: last[k] for k in FINAL_KEYS}}
            row.update({f"initial_{k}": first[k] for k in ("param_mse", "success")})
            row["peak_success"] = max(r["success"] for r in result.rows[n])
            row.update({k: last.get(k, float("nan")) for k in KEPT_LOG_KEYS})
            rows.append(row)
        status = {"status": "ok", "rows": rows}
    except Exception as err:  # a failing cell is data: recorded, and the sweep goes on
        status = {"status": "error", "error": f"{type(err).__name__}: {err}"}
    return {**status, "seconds": time.perf_counter() - start}


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    *,
    backend: str = "local",
    workers: int = 1,
    address: str | None = None,
    retry_failed: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Path]:
    """Run (or resume) every cell of ``spec`` into ``out``; write the tables and the figure.

    ``progress(done_cells, total_cells)`` after each cell. Returns the paths written.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if not (isinstance(workers, int) and workers >= 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    out = Path(out)
    atomic_write_json(out / "sweep.json", spec.to_dict())
    cells = spec.cells()

    def todo(cell: Cell) -> bool:
        found = load_cell(out, cell)
        return found is None or (retry_failed and found["status"] == "error")

    pending = [c for c in cells if todo(c)]
    done = len(cells) - len(pending)
    if progress:
        progress(done, len(cells))
    runner = _run_ray if backend == "ray" else _run_local
    for cell, result in runner(pending, workers, address):
        atomic_write_json(
            cell_file(out, cell),
            {"id": cell.id, "method": cell.method, "point": cell.point, **result},
        )
        done += 1
        if progress:
            progress(done, len(cells))
    return write_sweep_reports(spec, out)


def _run_local(cells: list[Cell], workers: int, address: str | None) -> Iterator[tuple]:
    if workers == 1 or len(cells) <= 1:
        for cell in cells:
            yield cell, run_cell(cell.config, cell.method)
        return
    context = multiprocessing.get_context("spawn")  # fork after torch threads can deadlock
    with ProcessPoolExecutor(min(workers, len(cells)), context, initializer=_warm_up) as pool:
        jobs = {pool.submit(run_cell, c.config, c.method): c for c in cells}
        try:
            for job in as_completed(jobs):
                yield jobs[job], job.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _run_ray(cells: list[Cell], workers: int, address: str | None) -> Iterator[tuple]:
    try:
        import ray
    except ImportError:
        raise ValueError(
            "the ray backend needs Ray: pip install 'lakelab[ray]' (or use backend local)"
        ) from None
    started = not ray.is_initialized()
    if started:
        kwargs = {"address": address} if address else {"num_cpus": workers}
        ray.init(**kwargs, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        task = ray.remote(num_cpus=1)(run_cell)
        refs = {task.remote(c.config, c.method): c for c in cells}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            yield refs.pop(ready[0]), ray.get(ready[0])
    finally:
        if started:
            ray.shutdown()


def _warm_up() -> None:
    import lakelab.mlp.joint  # noqa: F401
