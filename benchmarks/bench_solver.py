"""Value iteration: lakelab's vectorised solver vs the straightforward loop over Gymnasium's P.

    .venv/bin/python benchmarks/bench_solver.py [--repeats 5] [--sweeps 50]

The loop is the one the tests check the solver against (``tests/oracles.py``). Both run the
same number of Bellman sweeps (gamma = 0.99, slippery random lakes, so every state-action has
up to 3 successors) and must agree to 1e-12; the table reports the median time per sweep of
each over ``--repeats`` runs and their ratio, measured in one process so the machine's load
affects both alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from lakelab.lakes import random_lake
from lakelab.solver import bellman_backup

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests/
from tests.oracles import loop_value_iteration


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sweeps", type=int, default=50)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    args = parser.parse_args()
    gamma = 0.99
    print("| lake | states | loop ms/sweep | lakelab ms/sweep | speed-up |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        lake = random_lake(size, p_frozen=0.85, seed=size, slippery=True)
        env_P = lake.make_env().unwrapped.P

        def loop(env_P=env_P, n_states=lake.n_states):
            return loop_value_iteration(env_P, n_states, gamma, args.sweeps)

        t_loop, v_loop = timed(loop, args.repeats)

        def ours(lake=lake):
            V = np.zeros(lake.n_states)
            for _ in range(args.sweeps):
                V, _ = bellman_backup(lake, V, gamma)
            return V

        t_ours, v_ours = timed(ours, args.repeats)
        assert np.allclose(v_ours, v_loop, atol=1e-12), "implementations disagree"
        n = args.sweeps
        print(
            f"| {size}x{size} | {lake.n_states} | {1e3 * t_loop / n:.3f} | "
            f"{1e3 * t_ours / n:.4f} | {t_loop / t_ours:.0f}x |"
        )


if __name__ == "__main__":
    main()
