"""The ``lakelab`` command line: solve a lake, run the two tracks' experiments, sweep.

    lakelab solve   solve a lake exactly, draw its values and policy
    lakelab lake    the Frozen Lake experiment (an MLP policy); a resumable run directory
    lakelab sweep   a grid of lake protocols, from a TOML/JSON file or --grid knob=v1,v2
    lakelab lm      the same objectives on a tiny transformer planning on lakes
    lakelab verify  check an objective implementation against lakelab's (exit 1 if it fails)

``lake`` and ``lm`` build their config in three layers: ``--preset``, then ``--config
FILE.json`` (a JSON object of fields), then one flag per field of ``LakeConfig`` / ``LMConfig``
(``--n-demos 8``, ``--slippery``, ``--methods sft dpo``, ``--hparams '{"dpo": {"beta": 0.5}}'``).
Those flags are generated from the dataclass (:mod:`lakelab.cli_config`), so none is listed
here: ``lakelab lake --help`` (or ``lakelab lm --help``) lists every field with its docstring,
its default and what each preset changes.

Every sub-command validates its arguments through the same functions the library uses, so a
bad map or value exits with lakelab's ``ValueError`` message and status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from lakelab.cli_config import add_field_flags, field_changes, preset_note

if TYPE_CHECKING:
    from lakelab.lm.config import LMConfig
    from lakelab.mlp.config import LakeConfig

Progress = Callable[[int, int], None]
FIELD_COMMANDS = ("lake", "lm", "lm-lr")
CONFIG_LAYERS = """{what}, in a resumable run directory.
The config is --preset, then the fields of --config FILE.json, then the field flags."""


@contextmanager
def progress_bar(
    desc: str, unit: str, *, quiet: bool, stream: TextIO | None = None
) -> Iterator[Progress]:
    """A ``progress(done, total)`` callback writing to ``stream`` (default ``sys.stderr``).

    On a terminal it draws a tqdm bar. Anywhere else (a log file, a pipe, a CI job) a redrawn
    bar would leave one line per refresh, so it prints a plain line instead, at the first call
    and each time progress enters a new tenth of the total: at most 11 lines per bar, e.g.
    ``fine-tuning: 150/300 steps (50%, 12 s)``. ``quiet`` writes nothing.
    """
    stream = sys.stderr if stream is None else stream
    if quiet:
        yield lambda done, total: None
    elif stream.isatty():
        with _tqdm_bar(desc, unit, stream) as progress:
            yield progress
    else:
        yield _tenth_lines(desc, unit, stream)


@contextmanager
def _tqdm_bar(desc: str, unit: str, stream: TextIO) -> Iterator[Progress]:
    """A tqdm bar, created at the first call (when the total is known), closed at the end."""
    from tqdm import tqdm

    bars: list = []

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit=unit, desc=desc, file=stream))
        bars[0].n = done
        bars[0].refresh()

    try:
        yield progress
    finally:
        for bar in bars:
            bar.close()


def _tenth_lines(desc: str, unit: str, stream: TextIO) -> Progress:
    """A ``progress(done, total)`` printing a line when ``done`` enters a new tenth of ``total``."""
    start, last_tenth = time.monotonic(), [-1]

    def progress(done: int, total: int) -> None:
        tenth = 10 * done // total if total else 10
        if tenth > last_tenth[0]:
            last_tenth[0] = tenth
            share = 100 * done // total if total else 100
            elapsed = time.monotonic() - start
            print(f"{desc}: {done}/{total} {unit}s ({share}%, {elapsed:.0f} s)", file=stream)
            stream.flush()

    return progress


def _solve(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from lakelab.files import atomic_save_figure
    from lakelab.lakes import make_lake
    from lakelab.plotting import solution_figure
    from lakelab.solver import soft_value_iteration, success_probability, value_iteration

    lake = make_lake(args.lake, slippery=args.slippery, success_rate=args.success_rate)
    gamma = args.gamma if args.gamma is not None else 1.0 if args.tau is None else 0.95
    if args.tau is None:
        sol = value_iteration(lake, gamma=gamma)
        kind = f"optimal (value iteration, gamma={gamma:g})"
    else:
        sol = soft_value_iteration(lake, tau=args.tau, gamma=gamma)
        kind = f"soft-optimal (tau={args.tau:g}, gamma={gamma:g})"
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


def lake_config(args: argparse.Namespace) -> LakeConfig:
    """The config ``lakelab lake`` runs (``track_config``). Runs nothing."""
    from lakelab.mlp.config import PRESETS, LakeConfig

    return track_config(args, LakeConfig, PRESETS)


def lm_config(args: argparse.Namespace) -> LMConfig:
    """The config ``lakelab lm`` runs (``track_config``). Runs nothing."""
    from lakelab.lm.config import PRESETS, LMConfig

    return track_config(args, LMConfig, PRESETS)


def track_config(args: argparse.Namespace, cls: type, presets: dict) -> Any:
    """The preset ``--preset``, then the ``--config`` file's fields, then the field flags
    given, validated by the config class (``lakelab.configs.TrackConfig``)."""
    from lakelab.configs import choose_preset

    config = choose_preset(presets, args.preset)
    if args.config:
        config = cls.load(args.config, base=config)
    return cls.from_dict(field_changes(args, cls), base=config)


def _lake(args: argparse.Namespace) -> int:
    config = lake_config(args)
    import matplotlib

    matplotlib.use("Agg")
    from lakelab.mlp.runs import run_lake

    with progress_bar("fine-tuning", "step", quiet=args.quiet) as progress:
        paths = run_lake(config, args.out, progress=progress, workers=args.workers)
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    import pandas as pd

    from lakelab.mlp.alarms import alarms, format_alarms

    metrics = pd.read_csv(paths["metrics"])
    print(format_alarms(alarms(metrics, batch_size=config.batch_size), metrics))
    return 0


def _lm_lr(args: argparse.Namespace) -> int:
    config = lm_config(args)
    import matplotlib

    matplotlib.use("Agg")
    from lakelab.lm.lr_grid import GRID, lr_grid

    with progress_bar("learning-rate grid", "step", quiet=args.quiet) as progress:
        table, chosen = lr_grid(config, args.out, grid=args.grid or GRID, seeds=args.grid_seeds,
                                first_seed=args.grid_first_seed, workers=args.workers,
                                stack=args.stack, progress=progress)  # fmt: skip
    shown = table.pivot(index="method", columns="lr", values="success_mean")
    print("validation success at the end of alignment (mean over seeds):")
    print(shown.loc[list(chosen)].to_string(float_format=lambda x: f"{x:.3f}"))
    print("chosen (align_lrs):", {m: float(f"{lr:g}") for m, lr in chosen.items()})
    print(f"wrote {args.out}/grid.csv, {args.out}/chosen.json")
    return 0


def _replay(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from lakelab.mlp.replay_plot import load_run

    run = load_run(args.run, args.seed, args.methods)
    for method, message in run.missing.items():
        print(f"no replay for {method}: {message}", file=sys.stderr)
    steps = next(iter(run.replays.values())).steps.tolist()
    if args.gif:
        Path(args.gif).write_bytes(run.gif(ms_per_frame=args.ms_per_frame))
        print(f"wrote {args.gif}: {len(steps)} frames, steps {steps[0]} to {steps[-1]}")
    if args.png or not args.gif:
        step = steps[-1] if args.step is None else args.step
        png = args.png or str(Path(args.run) / f"replay-seed{args.seed}-step{step}.png")
        run.figure(step, dpi=args.dpi).savefig(png)
        print(f"wrote {png}")
    return 0


def _lm(args: argparse.Namespace) -> int:
    config = lm_config(args)
    import matplotlib

    matplotlib.use("Agg")
    from lakelab.lm.runs import run_lm

    with progress_bar("training", "step", quiet=args.quiet) as progress:
        paths = run_lm(config, args.out, progress=progress, workers=args.workers,
                       stack=args.stack)  # fmt: skip
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


def build_parser(field_flags: Collection[str] = FIELD_COMMANDS) -> argparse.ArgumentParser:
    """The ``lakelab`` parser. The sub-commands in ``field_flags`` get one flag per config
    field; building them imports that track's config (and torch: ``docs/benchmarks.md``), so
    ``main`` asks only for the sub-command it runs and ``lakelab solve`` stays quick."""
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

    lake = sub.add_parser(
        "lake",
        help="the IFT paper's Frozen Lake experiment (section 5.3)",
        description=CONFIG_LAYERS.format(what="The IFT paper's Frozen Lake experiment (5.3)"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # generated flags: an abbreviation would change meaning with a field
    )
    lake.add_argument(
        "--preset",
        default="paper",
        help="paper (default), quick, all (every built-in objective) or rl (the RL methods)",
    )
    lake.add_argument("--config", help="JSON file of LakeConfig fields (over the preset)")
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

    _lm_parser(
        sub,
        "lm",
        "the same objectives on a tiny transformer planning on lakes",
        "The objectives on a tiny transformer",
        "results/lm",
    ).set_defaults(func=_lm)
    lm_lr = _lm_parser(
        sub, "lm-lr", "choose each objective's LM learning rate from a grid, on validation lakes",
        "A learning rate per objective (lakelab.lm.lr_grid)", "results/lm-lr",
    )  # fmt: skip
    lm_lr.add_argument("--grid", type=float, nargs="+",
                       help="learning rates tried (default: lakelab.lm.lr_grid.GRID)")  # fmt: skip
    lm_lr.add_argument("--grid-seeds", type=int, default=3, help="seeds per rate")
    lm_lr.add_argument("--grid-first-seed", type=int, default=100,
                       help="the grid's own seeds start here (not the table's)")  # fmt: skip
    lm_lr.set_defaults(func=_lm_lr)

    replay = sub.add_parser(
        "replay",
        help="draw a lake run's replay: one step as a PNG, or every logged step as a GIF",
    )
    replay.add_argument("run", help="a run directory of lakelab lake")
    replay.add_argument("--seed", type=int, default=0)
    replay.add_argument("--methods", nargs="+", help="default: every method of the run")
    replay.add_argument("--step", type=int, help="the logged step of --png (default: the last)")
    replay.add_argument("--png", help="write that step's frame here")
    replay.add_argument("--gif", help="write the whole replay here, one frame per logged step")
    replay.add_argument("--ms-per-frame", type=int, default=400, help="GIF frame duration")
    replay.add_argument("--dpi", type=int, default=100, help="resolution of --png")
    replay.set_defaults(func=_replay)

    verify = sub.add_parser(
        "verify", help="check your objective MODULE:FUNCTION against one of lakelab's"
    )
    verify.add_argument("target", help="MODULE:FUNCTION, e.g. mylib.losses:dpo_loss")
    verify.add_argument("--like", required=True, help="the lakelab objective it implements")
    verify.add_argument(
        "--hparam", action="append", default=[], help="KEY=VALUE (repeatable), e.g. beta=0.5"
    )
    verify.add_argument(
        "--inputs",
        default="sequences",
        help="sequences (TRL's signature, per-sequence log-probs), tokens (a SequenceLogps) "
        "or logits (a lakelab.verify.SequenceLogits: logits and labels, -100 ignored)",
    )
    verify.add_argument("--json", help="also write the report to this JSON file")
    verify.add_argument(
        "--lake",
        action="store_true",
        help="also train it beside the reference on Frozen Lake and show the exact metrics",
    )
    verify.add_argument(
        "--lake-preset", default="quick", help="the lake experiment's preset (quick or paper)"
    )
    verify.add_argument(
        "--out", default="results/verify", help="run directory of --lake (table and figure)"
    )
    verify.set_defaults(func=_verify)

    for command in field_flags:
        if command in FIELD_COMMANDS:
            _add_config_fields(sub.choices[command], command)
    return parser


def _verify(args: argparse.Namespace) -> int:
    import importlib
    import json

    from lakelab.files import atomic_write_json
    from lakelab.verify import verify

    module_name, sep, attr = args.target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"the target must be MODULE:FUNCTION, got {args.target!r}")
    sys.path.insert(0, os.getcwd())  # a module of the current directory, as python -m finds it
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot load {args.target!r}: {err}") from None
    hparams = {}
    for item in args.hparam:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--hparam takes KEY=VALUE, got {item!r}")
        try:
            hparams[key] = json.loads(value)
        except json.JSONDecodeError:
            hparams[key] = value  # a string, e.g. variant=hinge
    if args.lake:
        from lakelab.mlp.config import preset

        config = preset(args.lake_preset)  # a bad preset is refused before anything runs
    report = verify(fn, like=args.like, hparams=hparams, inputs=args.inputs)
    print(report)
    if args.json:
        atomic_write_json(args.json, report.to_dict())
    if args.lake:
        import matplotlib

        matplotlib.use("Agg")
        from lakelab.mlp.verify import on_the_lake

        print(f"\non the lake: preset {args.lake_preset!r}, {config.seeds} seeds")
        with progress_bar("fine-tuning", "step", quiet=not sys.stderr.isatty()) as progress:
            paths, table = on_the_lake(
                fn, args.like, hparams, args.inputs, config, args.out, progress=progress
            )
        print(table)
        print(f"wrote {paths['summary']}, {paths['figure']}")
    return 0 if report.ok else 1


def _add_config_fields(parser: argparse.ArgumentParser, command: str) -> None:
    """A group of flags, one per field of the command's config, and the presets as epilog."""
    if command == "lake":  # else lm and lm-lr
        from lakelab.mlp.config import PRESETS, LakeConfig

        cls, presets = LakeConfig, PRESETS
    else:
        from lakelab.lm.config import PRESETS, LMConfig

        cls, presets = LMConfig, PRESETS
    group = parser.add_argument_group(
        f"{cls.__name__} fields",
        f"one flag per field, over the preset and --config; defaults shown are {cls.__name__}'s",
    )
    add_field_flags(group, cls)
    parser.epilog = f"What the presets change:\n{preset_note(presets)}"


def _lm_parser(sub, name: str, help_text: str, what: str, out: str) -> argparse.ArgumentParser:
    """A sub-command over an LMConfig: --preset, --config, --out, --quiet, --workers (the
    field flags are added by ``_add_config_fields``)."""
    parser = sub.add_parser(
        name,
        help=help_text,
        description=CONFIG_LAYERS.format(what=what),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--preset", default="default", help="default or quick")
    parser.add_argument("--config", help="JSON file of LMConfig fields (over the preset)")
    parser.add_argument("--out", default=out, help="run directory (resumable)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes the seeds are split over (default: the machine's cores); the numbers "
        "do not depend on it",
    )
    parser.add_argument(
        "--stack",
        type=int,
        help="seeds a process trains together, as one stacked computation (1: one after "
        "another); the numbers do not depend on it (default: all of a process's seeds)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(field_flags=argv[:1]).parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        print(f"lakelab {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
