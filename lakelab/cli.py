"""The ``lakelab`` command line.

    lakelab solve [--lake 4x4] [--slippery] [--gamma 1.0] [--tau T] [--out DIR]
    lakelab lake [--preset paper|quick] [--config FILE.json] [--methods M ...] [--seeds N]
                 [--steps N] [--chosen demos|single] [--negatives offline|online] [--out DIR]
                 [--workers N]
    lakelab sweep [FILE.toml | --grid knob=v1,v2 ...] [--backend local|ray] [--workers N]
                  [--retry-failed] [--out DIR]
    lakelab lm [--preset quick|default] [--methods M ...] [--seeds N]
               [--negatives offline|online] [--out DIR]

Every sub-command validates its arguments through the same functions the library uses, so a
bad map or value exits with lakelab's ``ValueError`` message and status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def progress_bar(desc: str, unit: str, *, quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(done, total)`` callback drawing a tqdm bar, closed at the end."""
    from tqdm import tqdm

    bars: list = []

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit=unit, desc=desc, disable=quiet))
        bars[0].n = done
        bars[0].refresh()

    try:
        yield progress
    finally:
        for bar in bars:
            bar.close()


def _solve(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from lakelab.files import atomic_save_figure
    from lakelab.lakes import make_lake
    from lakelab.plotting import solution_figure
    from lakelab.solver import soft_value_iteration, success_probability, value_iteration

    lake = make_lake(args.lake, slippery=args.slippery, success_rate=args.success_rate)
    if args.tau is None:
        sol = value_iteration(lake, gamma=args.gamma)
        kind = f"optimal (value iteration, gamma={args.gamma:g})"
    else:
        sol = soft_value_iteration(lake, tau=args.tau, gamma=args.gamma)
        kind = f"soft-optimal (tau={args.tau:g}, gamma={args.gamma:g})"
    p_success = success_probability(lake, sol.policy)
    label = args.lake if lake.name else "custom"
    title = f"{label}{' slippery' if lake.slippery else ''}: {kind}"
    fig = solution_figure(lake, sol.V, sol.policy, title)
    out = Path(args.out) / f"solution-{label}{'-slippery' if lake.slippery else ''}.png"
    atomic_save_figure(fig, out, dpi=120)
    print(f"{title}\n  V*(start) = {sol.V[lake.start]:.4f} after {sol.iterations} sweeps")
    print(f"  success probability of this policy = {p_success:.4f}")
    print(f"  wrote {out}")
    return 0


def _lake(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from lakelab.mlp.config import config_from_dict, load_config, preset
    from lakelab.mlp.runs import run_lake

    config = preset(args.preset)
    if args.config:
        config = load_config(args.config, base=config)
    changes = {
        k: v
        for k, v in (
            ("methods", tuple(args.methods) if args.methods else None),
            ("seeds", args.seeds),
            ("steps", args.steps),
            ("chosen", args.chosen),
            ("negatives", args.negatives),
        )
        if v is not None
    }
    config = config_from_dict(changes, base=config)
    with progress_bar("fine-tuning", "step", quiet=args.quiet) as progress:
        paths = run_lake(config, args.out, progress=progress, workers=args.workers)
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _lm(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from lakelab.lm.config import preset
    from lakelab.lm.runs import run_lm

    config = preset(args.preset)
    changes = {
        k: v
        for k, v in (
            ("methods", tuple(args.methods) if args.methods else None),
            ("seeds", args.seeds),
            ("negatives", args.negatives),
        )
        if v is not None
    }
    config = config.replace(**changes)
    with progress_bar("training", "step", quiet=args.quiet) as progress:
        paths = run_lm(config, args.out, progress=progress)
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from lakelab.mlp.config import config_from_dict, preset
    from lakelab.mlp.sweep import SweepSpec, grid_points, load_sweep, parse_grid_option
    from lakelab.mlp.sweep_run import run_sweep

    if args.file and args.grid:
        raise ValueError("give a sweep file or --grid options, not both")
    if args.file:
        spec = load_sweep(args.file)
    elif args.grid:
        changes = {"methods": tuple(args.methods)} if args.methods else {}
        if args.seeds is not None:
            changes["seeds"] = args.seeds
        base = config_from_dict(changes, base=preset(args.preset))
        spec = SweepSpec(base, grid_points(dict(parse_grid_option(g) for g in args.grid)))
    else:
        raise ValueError("give a sweep file (TOML or JSON) or at least one --grid knob=v1,v2")
    with progress_bar("sweep", "cell", quiet=args.quiet) as progress:
        paths = run_sweep(
            spec,
            args.out,
            backend=args.backend,
            workers=args.workers,
            address=args.address,
            retry_failed=args.retry_failed,
            progress=progress,
        )
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lakelab", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    solve = sub.add_parser("solve", help="solve a lake exactly and draw values and policy")
    solve.add_argument(
        "--lake", default="4x4", help="preset (4x4, 8x8, two-paths) or rows joined by '/'"
    )
    solve.add_argument("--slippery", action="store_true", help="Gymnasium's is_slippery")
    solve.add_argument(
        "--success-rate",
        type=float,
        default=1 / 3,
        help="slippery: probability of the intended move",
    )
    solve.add_argument(
        "--gamma", type=float, default=None, help="discount (default 1.0; 0.95 with --tau)"
    )
    solve.add_argument(
        "--tau",
        type=float,
        default=None,
        help="temperature of soft value iteration (default: hard optimum)",
    )
    solve.add_argument("--out", default="results", help="directory for the picture")
    solve.set_defaults(func=_solve)

    lake = sub.add_parser("lake", help="the IFT paper's Frozen Lake experiment (section 5.3)")
    lake.add_argument("--preset", default="paper", help="paper (default) or quick")
    lake.add_argument("--config", help="JSON file of LakeConfig fields (over the preset)")
    lake.add_argument("--methods", nargs="+", help="objectives to run (default: all)")
    lake.add_argument("--seeds", type=int, help="number of seeds")
    lake.add_argument("--steps", type=int, help="fine-tuning steps")
    lake.add_argument("--chosen", help="demos or single")
    lake.add_argument("--negatives", help="offline or online")
    lake.add_argument("--out", default="results/lake", help="run directory (resumable)")
    lake.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="methods trained at once, one process each (default: the machine's cores); "
        "the numbers do not depend on it",
    )
    lake.add_argument("--quiet", action="store_true", help="no progress bar")
    lake.set_defaults(func=_lake)

    sweep = sub.add_parser("sweep", help="a grid of Frozen Lake protocols (resumable)")
    sweep.add_argument("file", nargs="?", help="sweep file, TOML or JSON (see lakelab.mlp.sweep)")
    sweep.add_argument("--grid", action="append", help="knob=v1,v2 (repeatable), instead of a file")
    sweep.add_argument("--preset", default="quick", help="base preset with --grid")
    sweep.add_argument("--methods", nargs="+", help="objectives, with --grid (default: all)")
    sweep.add_argument("--seeds", type=int, help="seeds per cell, with --grid")
    sweep.add_argument("--backend", default="local", help="local (default) or ray")
    sweep.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel cells")
    sweep.add_argument("--address", help="ray: address of an existing cluster")
    sweep.add_argument("--retry-failed", action="store_true", help="rerun cells that raised")
    sweep.add_argument("--out", default="results/sweep", help="sweep directory (resumable)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(func=_sweep)

    lm = sub.add_parser("lm", help="the same objectives on a tiny transformer planning on lakes")
    lm.add_argument("--preset", default="default", help="default or quick")
    lm.add_argument("--methods", nargs="+", help="objectives to run (default: all)")
    lm.add_argument("--seeds", type=int, help="number of seeds")
    lm.add_argument("--negatives", help="offline or online")
    lm.add_argument("--out", default="results/lm", help="run directory (resumable)")
    lm.add_argument("--quiet", action="store_true", help="no progress bar")
    lm.set_defaults(func=_lm)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "gamma", 0) is None:
        args.gamma = 1.0 if args.tau is None else 0.95
    try:
        return args.func(args)
    except ValueError as err:
        print(f"lakelab {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
