"""Sweeps over the Frozen Lake protocol: where does the IFT paper's ordering hold?

A sweep file (TOML or JSON) names a base protocol and a grid of knobs:

    preset = "quick"                   # the base LakeConfig (default "paper")
    [base]                             # fields over the preset, for every point
    methods = ["sft", "ift", "dpo", "orpo"]
    seeds = 5
    [grid]                             # every combination of these values
    tau = [0.02, 0.05]
    negatives = ["offline", "online"]
    "ift.lam" = [0.1, 0.3]             # an objective's hyper-parameter: "objective.name"

or, instead of ``[grid]``, an explicit list ``points = [{tau = 0.02}, {lr = 0.03}]``.

Every (grid point, objective) pair is one *cell*: all seeds of that objective, trained as
one batched computation (``joint.train_method``). A cell's result is one file,
``out/cells/<cell id>.json``, written atomically as soon as the cell finishes; its id is a
hash of the point's full protocol and the objective, so rerunning a sweep (after Ctrl-C, a
killed process or a crashed worker) skips exactly the finished cells, never trusts a
half-written one, and a grid that grows reuses every cell it already had. A cell that raises
is recorded with its error (``status = "error"``) and the sweep goes on; ``retry_failed``
runs those again.

This module says what a sweep is (the spec, its cells and their files); running it is
``lakelab.mlp.sweep_run``, its tables and figure ``lakelab.mlp.sweep_report``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from lakelab.mlp.config import LakeConfig, config_from_dict, preset
from lakelab.mlp.runs import SUMMARY_METRICS
from lakelab.registry import OBJECTIVES

FIELDS = tuple(f.name for f in fields(LakeConfig))
FINAL_KEYS = SUMMARY_METRICS
"""The final metrics of a cell's seeds, as in a run's summary.csv."""
KEPT_LOG_KEYS = ("batch/rewards/margins", "online_fallback")
"""Logged values kept from a cell's last row besides the final metrics."""


@dataclass(frozen=True)
class Cell:
    """One objective at grid point number ``index``; ``point`` holds its knob values."""

    index: int
    point: dict[str, Any]
    config: LakeConfig
    method: str

    @property
    def id(self) -> str:
        protocol = self.config.fingerprint(exclude=("methods",))
        return hashlib.sha256(f"{protocol}|{self.method}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SweepSpec:
    """A base protocol and the grid points around it (validated on construction)."""

    base: LakeConfig
    points: tuple[dict[str, Any], ...]

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a sweep needs at least one grid point")
        for point in self.points:
            apply_knobs(self.base, point)  # raises ValueError naming the bad knob or value

    def cells(self) -> list[Cell]:
        """Point-major: the objectives of one point are neighbours (they share a set-up)."""
        out = []
        for i, point in enumerate(self.points):
            config = apply_knobs(self.base, point)
            out += [Cell(i, point, config, m) for m in config.methods]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base.to_dict(), "points": list(self.points)}


def grid_points(grid: dict[str, list]) -> tuple[dict[str, Any], ...]:
    """Every combination of the grid's values, the first knob varying slowest."""
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"grid must be a non-empty table of knob = [values], got {grid!r}")
    for knob, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"grid knob {knob!r} needs a non-empty list of values, got {values!r}")
    keys = list(grid)
    return tuple(dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values()))


def apply_knobs(base: LakeConfig, point: dict[str, Any]) -> LakeConfig:
    """``base`` with the point's knobs: config fields, or ``"objective.name"`` for an
    objective's hyper-parameter. Raises ``ValueError`` naming the knob and the point."""
    if not isinstance(point, dict) or not point:
        raise ValueError(f"a grid point must be a non-empty table of knobs, got {point!r}")
    changes: dict[str, Any] = {}
    hparams = {m: dict(h) for m, h in base.hparams.items()}
    for knob, value in point.items():
        if "." in knob:
            objective, name = knob.split(".", 1)
            if objective not in OBJECTIVES:
                raise ValueError(
                    f"grid knob {knob!r}: unknown objective {objective!r}; objectives are "
                    f"{sorted(OBJECTIVES)}"
                )
            hparams.setdefault(objective, {})[name] = value
        elif knob in FIELDS and knob != "hparams":
            changes[knob] = tuple(value) if knob == "methods" else value
        else:
            raise ValueError(
                f"unknown grid knob {knob!r}; knobs are LakeConfig fields "
                f"{sorted(set(FIELDS) - {'hparams'})} or 'objective.hyperparameter' "
                "(e.g. 'ift.lam', 'dpo.beta')"
            )
    try:
        return config_from_dict({**changes, "hparams": hparams}, base=base)
    except (ValueError, TypeError) as err:
        raise ValueError(f"grid point {point}: {err}") from None


def load_sweep(path: str | Path) -> SweepSpec:
    """A :class:`SweepSpec` from a ``.toml`` or ``.json`` file (format in the module doc)."""
    path = Path(path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except FileNotFoundError:
        raise ValueError(f"sweep file {path} does not exist") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise ValueError(f"sweep file {path} is not valid {kind}: {err}") from None
    return sweep_from_dict(data)


def sweep_from_dict(data: dict[str, Any]) -> SweepSpec:
    known = {"preset", "base", "grid", "points"}
    if not isinstance(data, dict) or set(data) - known:
        extra = sorted(set(data) - known) if isinstance(data, dict) else data
        raise ValueError(f"unknown sweep keys {extra}; a sweep has {sorted(known)}")
    base = config_from_dict(data.get("base", {}), base=preset(data.get("preset", "paper")))
    if ("grid" in data) == ("points" in data):
        raise ValueError("a sweep needs exactly one of 'grid' (a table) or 'points' (a list)")
    if "grid" in data:
        points = grid_points(data["grid"])
    else:
        if not isinstance(data["points"], list):
            raise ValueError(f"points must be a list of tables, got {data['points']!r}")
        points = tuple(data["points"])
    return SweepSpec(base, points)


def parse_grid_option(text: str) -> tuple[str, list]:
    """``"knob=v1,v2"`` (CLI ``--grid``) to ``(knob, [v1, v2])``, values parsed as JSON
    when they are numbers, booleans or quoted, else kept as strings."""
    knob, sep, values = text.partition("=")
    if not sep or not knob or not values:
        raise ValueError(f"--grid takes knob=value1,value2,..., got {text!r}")

    def parse(v: str) -> Any:
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v

    return knob.strip(), [parse(v.strip()) for v in values.split(",")]


def cell_file(out: Path, cell: Cell) -> Path:
    return out / "cells" / f"{cell.id}.json"


def load_cell(out: Path, cell: Cell) -> dict[str, Any] | None:
    """The finished result of ``cell`` in ``out``, or None (missing, partial or foreign)."""
    try:
        data = json.loads(cell_file(out, cell).read_text())
    except (OSError, ValueError):
        return None
    ok = (
        isinstance(data, dict)
        and data.get("id") == cell.id
        and data.get("method") == cell.method
        and (
            data.get("status") == "error"
            or (data.get("status") == "ok" and len(data.get("rows", [])) == cell.config.seeds)
        )
    )
    return data if ok else None
