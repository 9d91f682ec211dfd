"""What the configs of both tracks share: methods and their hyper-parameters, seeds, and the
round trips through dicts, JSON files and fingerprints.

``LakeConfig`` (``lakelab.mlp.config``) and ``LMConfig`` (``lakelab.lm.config``) are frozen
dataclasses with the fields ``methods``, ``hparams``, ``seeds`` and ``first_seed``; this mixin
gives them the same validation of those fields and the same helpers, so a run directory, the
CLI and the app treat both alike. A bad value raises ``ValueError`` naming it.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, Self

from lakelab.registry import get_objective, resolve_hparams
from lakelab.rl_methods import RL_METHODS, is_rl_method, resolve_rl_hparams
from lakelab.validate import check_nonneg_int, check_positive_int

__all__ = ["TrackConfig", "choose_preset"]

METHODS = ("sft", "ift", "dpo", "ipo", "orpo", "asft", "simpo")
"""Both tracks' default methods: the seven objectives of the IFT paper's comparison and its
follow-ups. The lake's preset ``all`` runs every built-in objective."""


class TrackConfig:
    """Mixin for a track's frozen dataclass config (see the module docstring)."""

    methods: tuple[str, ...]
    hparams: dict[str, dict[str, Any]]
    seeds: int
    first_seed: int

    def check_ints(self, positive: tuple[str, ...], nonneg: tuple[str, ...] = ()) -> None:
        """The named fields are integers >= 1 (``positive``) or >= 0 (``nonneg``), stored as
        Python ints (a numpy integer would not survive ``to_dict``'s JSON)."""
        for names, check in ((positive, check_positive_int), (nonneg, check_nonneg_int)):
            for name in names:
                object.__setattr__(self, name, check(name, getattr(self, name)))

    def check_methods(self) -> None:
        """``methods``: a non-empty list of distinct registered objectives (stored as a tuple);
        ``hparams``: {method: {name: value}} for methods among them, each value in range."""
        if isinstance(self.methods, str) or not self.methods:
            raise ValueError(f"methods must be a non-empty list of names, got {self.methods!r}")
        object.__setattr__(self, "methods", tuple(self.methods))
        for m in self.methods:
            if not is_rl_method(m):
                try:
                    get_objective(m)
                except ValueError as err:
                    raise ValueError(f"{err}; or an RL method: {sorted(RL_METHODS)}") from None
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods has duplicates: {list(self.methods)}")
        if not isinstance(self.hparams, dict):
            raise ValueError(f"hparams must be a dict of dicts, got {self.hparams!r}")
        for m, overrides in self.hparams.items():
            if m not in self.methods:
                raise ValueError(
                    f"hparams given for {m!r}, which is not among methods {list(self.methods)}"
                )
            if not isinstance(overrides, dict):
                raise ValueError(f"hparams[{m!r}] must be a dict of values, got {overrides!r}")
            (resolve_rl_hparams if is_rl_method(m) else resolve_hparams)(m, overrides)

    @property
    def seed_list(self) -> list[int]:
        """Seeds first_seed .. first_seed + seeds - 1."""
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def method_hparams(self, method: str) -> dict[str, Any]:
        """Every hyper-parameter of ``method``: the registry's defaults, then ``hparams``."""
        if is_rl_method(method):
            return resolve_rl_hparams(method, self.hparams.get(method))
        return resolve_hparams(method, self.hparams.get(method))

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON values (tuples as lists)."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def fingerprint(self, *, exclude: tuple[str, ...] = ("methods", "seeds")) -> str:
        """What a finished (method, seed) cell depends on, as canonical JSON: a run directory
        can be resumed with more methods or seeds, but not with another protocol."""
        d = {k: v for k, v in self.to_dict().items() if k not in exclude}
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any], base: Self | None = None) -> Self:
        """A config from a dict (e.g. JSON): unknown keys rejected, missing ones from ``base``
        (default: the dataclass's defaults), lists where the field is a tuple accepted."""
        if not isinstance(d, dict):
            raise ValueError(f"a config must be a JSON object of fields, got {type(d).__name__}")
        hints = typing.get_type_hints(cls)
        names = sorted(f.name for f in dataclasses.fields(cls))
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"unknown config fields {unknown}; known fields are {names}")
        d = {
            k: tuple(v) if typing.get_origin(hints[k]) is tuple and isinstance(v, list) else v
            for k, v in d.items()
        }
        return dataclasses.replace(base or cls(), **d)

    @classmethod
    def load(cls, path: str | Path, base: Self | None = None) -> Self:
        """A config from a JSON file of fields over ``base``."""
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"config file {path} is not valid JSON: {err}") from None
        except OSError as err:
            raise ValueError(f"cannot read config file {path}: {err.strerror}") from None
        return cls.from_dict(data, base)


def choose_preset(presets: dict[str, Any], name: str) -> Any:
    """``presets[name]``; ValueError listing the presets otherwise."""
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; presets are {sorted(presets)}")
    return presets[name]
