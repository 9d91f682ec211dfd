"""Command-line flags generated from a config dataclass: one per field, helped by its docstring.

``lakelab lake`` and ``lakelab lm`` call :func:`add_field_flags` with ``LakeConfig`` and
``LMConfig``, so a new field is a new flag with no CLI code to write. A field's help is its
attribute docstring (the string literal right under ``name: type = default``) and its default.

Command-line forms, from the field's type (``typing.get_type_hints``, so string annotations
are resolved):

- ``bool``: ``--flag`` / ``--no-flag``
- ``int``, ``float``, ``str``: one value
- ``tuple[str, ...]``: one or more values; ``tuple[float, float, float]``: exactly three
- ``dict``: a JSON object, e.g. ``--hparams '{"dpo": {"beta": 0.5}}'``

Flags are absent from the parsed namespace unless given (``argparse.SUPPRESS``), so
:func:`field_changes` returns only what the user typed, to apply over a preset or a file.
Argparse rejects what it can parse (a word for an int, a wrong count); everything else is left
to the dataclass's own validation, whose ``ValueError`` names the field.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import json
import shlex
import textwrap
import typing
from typing import Any

SCALARS = (int, float, str)


def flag_name(field_name: str) -> str:
    """``n_demos`` -> ``--n-demos``."""
    return "--" + field_name.replace("_", "-")


def field_docs(cls: type) -> dict[str, str]:
    """Each field's attribute docstring, by field name, read from the class's source: the
    string expression statement right after an annotated assignment."""
    class_def = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
    body = class_def.body
    docs = {}
    for stmt, after in itertools.pairwise(body):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[stmt.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _flag_options(name: str, hint: Any) -> dict[str, Any]:
    """The ``add_argument`` options reading a field of type ``hint``; ``TypeError`` for a type
    with no command-line form (so a new field of such a type fails loudly, at start-up)."""
    origin, params = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if hint in SCALARS:
        return {"type": hint, "metavar": hint.__name__.upper()}
    if origin is tuple and params and params[0] in SCALARS:
        metavar = params[0].__name__.upper()
        if len(params) == 2 and params[1] is Ellipsis:
            return {"type": params[0], "nargs": "+", "metavar": metavar}
        if all(p is params[0] for p in params):
            return {"type": params[0], "nargs": len(params), "metavar": metavar}
    if hint is dict or origin is dict:
        # kept a string here and decoded by field_changes: bad JSON is then a ValueError
        # naming the flag, reported like every other bad value
        return {"metavar": "JSON"}
    raise TypeError(f"field {name!r}: no command-line form for type {hint!r}")


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def show_value(value: Any) -> str:
    """A field value as it is typed on the command line: ``sft dpo``, ``0.333333``,
    ``'{"dpo": {"beta": 0.5}}'``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | list):
        return " ".join(show_value(v) for v in value)
    if isinstance(value, dict):
        return shlex.quote(json.dumps(value))
    return shlex.quote(str(value))


def as_flags(name: str, value: Any) -> str:
    """The flag setting field ``name`` to ``value``: ``--seeds 3``, ``--no-slippery``."""
    if isinstance(value, bool):
        return flag_name(name) if value else "--no-" + flag_name(name)[2:]
    return f"{flag_name(name)} {show_value(value)}"


def add_field_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type) -> None:
    """One flag per field of dataclass ``cls``, helped by the field's docstring and default.
    Unset flags stay out of the namespace (see :func:`field_changes`)."""
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    for f in dataclasses.fields(cls):
        default = _field_default(f)
        shown = "" if default is dataclasses.MISSING else f"(default: {show_value(default)})"
        help_text = f"{docs.get(f.name, '')} {shown}".strip().replace("%", "%%")
        parser.add_argument(
            flag_name(f.name),
            dest=f.name,
            default=argparse.SUPPRESS,
            help=help_text,
            **_flag_options(f.name, hints[f.name]),
        )


def _json_object(flag: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f'{flag} must be a JSON object, e.g. \'{{"dpo": {{"beta": 0.5}}}}\'; '
            f"{text!r} is not valid JSON: {err}"
        ) from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, got {type(value).__name__}: {text!r}")
    return value


def field_changes(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` given as flags, converted to the field's type (lists to tuples,
    JSON text to a dict); flags not given are absent."""
    hints = typing.get_type_hints(cls)
    changes = {}
    for f in dataclasses.fields(cls):
        if not hasattr(args, f.name):
            continue
        value, origin = getattr(args, f.name), typing.get_origin(hints[f.name]) or hints[f.name]
        if origin is tuple:
            value = tuple(value)
        elif origin is dict:
            value = _json_object(flag_name(f.name), value)
        changes[f.name] = value
    return changes


def preset_note(presets: dict[str, Any], width: int = 78) -> str:
    """What each preset changes from the dataclass's defaults, as flags, one wrapped paragraph
    per preset (never breaking a flag at its hyphens): the defaults in the help are the
    dataclass's, and this says which ones each preset replaces."""
    lines = []
    for name, config in presets.items():
        plain = type(config)()
        changed = [
            as_flags(f.name, getattr(config, f.name))
            for f in dataclasses.fields(config)
            if getattr(config, f.name) != getattr(plain, f.name)
        ]
        text = f"--preset {name}: {' '.join(changed) or 'the defaults'}"
        lines.append(textwrap.fill(text, width, subsequent_indent="    ", break_on_hyphens=False))
    return "\n".join(lines)
