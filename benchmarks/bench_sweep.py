"""Sweeps: cells per second, sequential vs the local process pool; Ray's overhead per cell.

    .venv/bin/python benchmarks/bench_sweep.py [--points 8] [--workers 2]

In one run, on the same grid (the `paper` preset, SFT and DPO, ``--points`` values of lr):

1. sequential: every cell in this process (``workers=1``);
2. local pool: ``--workers`` spawned processes (start-up included, as a user pays it);
3. Ray: a local Ray instance with ``--workers`` CPUs; its start-up is timed apart, and the
   overhead per cell is (Ray time - pool time) / cells on tiny cells (1 training step), where
   the work itself is negligible.

Each sweep writes into a fresh temporary directory, so nothing is resumed.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from lakelab.mlp.config import preset
from lakelab.mlp.sweep import SweepSpec
from lakelab.mlp.sweep_run import run_sweep


def timed_sweep(spec: SweepSpec, **kw) -> float:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        run_sweep(spec, out, **kw)
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    base = preset("paper").replace(methods=("sft", "dpo"))
    lrs = [0.01 + 0.005 * i for i in range(args.points)]
    spec = SweepSpec(base, tuple({"lr": lr} for lr in lrs))
    cells = len(spec.cells())

    t_seq = timed_sweep(spec, workers=1)
    t_pool = timed_sweep(spec, workers=args.workers)
    print(f"{cells} cells (paper preset: {base.seeds} seeds x {base.steps} steps each)")
    print()
    print("| backend | seconds | cells/s | vs sequential |")
    print("|---|---|---|---|")
    print(f"| sequential, 1 process | {t_seq:.1f} | {cells / t_seq:.2f} | 1.0x |")
    print(
        f"| local pool, {args.workers} processes | {t_pool:.1f} | {cells / t_pool:.2f} "
        f"| {t_seq / t_pool:.2f}x |"
    )
    try:
        import ray
    except ImportError:
        print("\n(ray not installed: pip install 'lakelab[ray]')")
        return
    tiny = SweepSpec(
        base.replace(steps=1, log_every=1, optimum_steps=10, optimum_kl_target=10.0),
        spec.points,
    )
    t0 = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    t_start = time.perf_counter() - t0
    t_ray = timed_sweep(tiny, backend="ray")
    ray.shutdown()
    t_tiny_pool = timed_sweep(tiny, workers=args.workers)
    t_tiny_seq = timed_sweep(tiny, workers=1)
    print()
    print(f"Tiny cells (1 step), {cells} of them; Ray start-up {t_start:.1f} s, timed apart:")
    print()
    print("| backend | seconds | per cell, ms |")
    print("|---|---|---|")
    for name, t in (
        ("sequential", t_tiny_seq),
        (f"local pool ({args.workers})", t_tiny_pool),
        (f"ray ({args.workers} CPUs, started)", t_ray),
    ):
        print(f"| {name} | {t:.2f} | {1000 * t / cells:.0f} |")


if __name__ == "__main__":
    main()
