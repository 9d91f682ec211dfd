"""What ``verify`` returns: one ``Check`` per check, gathered in a ``Report``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Check:
    """One named check: passed or not, what was measured and, if it failed, the likely bug."""

    name: str
    ok: bool
    measured: str
    bug: str = ""


@dataclass
class Report:
    """The verdicts of ``verify``: ``ok`` when every check passed."""

    like: str
    hparams: dict[str, Any]
    inputs: str = "sequences"
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> dict[str, str]:
        """The failed checks by name, each with its likely bug."""
        return {c.name: c.bug for c in self.checks if not c.ok}

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}

    def __str__(self) -> str:
        lines = [
            f"lakelab verify: like {self.like!r}, inputs {self.inputs!r}, hparams {self.hparams}"
        ]
        for c in self.checks:
            lines.append(f"  {'PASS' if c.ok else 'FAIL'}  {c.name}: {c.measured}")
            if not c.ok and c.bug:
                lines.append(f"        likely bug: {c.bug}")
        passed = sum(c.ok for c in self.checks)
        lines.append(f"{passed} passed, {len(self.checks) - passed} failed")
        return "\n".join(lines)
