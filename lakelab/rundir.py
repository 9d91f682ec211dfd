"""Run directories, the same layout for both tracks: atomic, resumable, self-describing.

    out/config.json           the protocol (the track's config as JSON)
    out/cells/M-seedS.json    one finished (method, seed) cell: {"protocol", "method", "seed",
                              "rows": the logged rows, ...track-specific fields}

A cell counts as finished only if it parses, belongs to the same protocol (the config's
fingerprint: everything but methods and seeds) and has every logged row, so re-running into
the same directory computes only what is missing, and a truncated or corrupted file is
recomputed, never trusted. Every file is written atomically (``lakelab.files``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lakelab.files import atomic_write_json

__all__ = ["cell_path", "check_protocol", "n_logs", "read_cell", "write_cell"]


def cell_path(out: Path, method: str, seed: int) -> Path:
    return Path(out) / "cells" / f"{method}-seed{seed}.json"


def n_logs(steps: int, every: int) -> int:
    """Rows of a curve logged at every multiple of ``every`` and at the last step."""
    return len(range(0, steps + 1, every)) + (steps % every != 0)


def read_cell(path: Path, protocol: str, method: str, seed: int, rows: int) -> dict | None:
    """A finished cell file, or None: missing, unreadable, another protocol, method or seed,
    or not all ``rows`` logged (a partial file)."""
    try:
        cell = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    ok = (
        isinstance(cell, dict)
        and cell.get("protocol") == protocol
        and cell.get("method") == method
        and cell.get("seed") == seed
        and isinstance(cell.get("rows"), list)
        and len(cell["rows"]) == rows
    )
    return cell if ok else None


def write_cell(
    out: Path, protocol: str, method: str, seed: int, rows: list[dict], **fields: Any
) -> Path:
    """Write one finished cell atomically (one compact line: cells are read by machines)."""
    cell = {"protocol": protocol, "method": method, "seed": seed, "rows": rows, **fields}
    return atomic_write_json(cell_path(out, method, seed), cell, indent=None)


def check_protocol(out: Path, config: Any) -> None:
    """Refuse to resume ``out`` if its config.json is of another protocol than ``config`` (a
    track's config, ``lakelab.configs.TrackConfig``; the old one is read through the same
    class, so fields added since take their defaults). An absent or unreadable config.json is
    no objection: it is rewritten, and the cells are checked one by one."""
    try:
        old = type(config).from_dict(json.loads((Path(out) / "config.json").read_text()))
    except (OSError, ValueError, TypeError):
        return
    if old.fingerprint() != config.fingerprint():
        raise ValueError(
            f"{out} holds a run of a different protocol (only methods and seeds may change "
            "when resuming); choose another --out"
        )
