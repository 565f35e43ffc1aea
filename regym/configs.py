"""From a config dataclass to a command line: the one way every regym command gets its flags.

A command is a ``@dataclass`` whose fields each carry a docstring, the string literal on the line
under the field, as CleanRL's ``Args`` (``regym.rl.config.RLConfig`` is one).
``parse(Args, argv, prog="fuse")`` builds an ``argparse`` parser from the class: one flag per
field (``out_dir`` → ``--out-dir``), the field's docstring and default in ``--help``, a ``# Heading``
comment above a field opening a group of flags. Types: ``bool`` → ``--flag/--no-flag``; ``int``,
``float``, ``str``; ``X | None``; ``Literal[...]`` → choices; ``list[X]`` and ``tuple[X, ...]`` →
several values; ``dict`` → one JSON object. A field without a default is a required flag.

Defaults are written once, in the dataclass: argparse sees none of them, so only the flags given
reach the class and it fills in the rest. A ``ValueError`` from the class (its ``__post_init__``
checks) ends like argparse's own errors: ``prog: error: ...`` on stderr, exit 2.

Commands whose defaults come from a preset or a YAML file call ``parse_overrides`` instead: it adds
``--config FILE.yaml`` and returns the file and the fields given on the command line, for the
command's loader to apply over the file (flags win).

This module imports nothing from regym: every layer may use it.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import sys
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar

T = TypeVar("T")


def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring (the string literal under it), read from the source of ``cls`` and its bases."""
    return {name: doc for klass in reversed(cls.__mro__) if dataclasses.is_dataclass(klass)
            for name, (doc, _) in _read_fields(klass).items() if doc}


def field_sections(cls: type) -> dict[str, str]:
    """The ``# Heading`` comment right above a field, for the fields that start a section."""
    return {name: section for klass in reversed(cls.__mro__) if dataclasses.is_dataclass(klass)
            for name, (_, section) in _read_fields(klass).items() if section}


def _read_fields(klass: type) -> dict[str, tuple[str, str]]:
    """``{field: (docstring, heading)}`` of the fields written in ``klass``'s own body."""
    source = textwrap.dedent(inspect.getsource(klass))
    lines = source.splitlines()
    body = ast.parse(source).body[0].body
    found = {}
    for node, following in zip(body, body[1:] + [None], strict=True):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        doc = ""
        if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant) \
                and isinstance(following.value.value, str):
            doc = " ".join(following.value.value.split())
        above = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
        found[node.target.id] = (doc, above.lstrip("# ") if above.startswith("#") else "")
    return found


def build_parser(cls: type, *, prog: str, description: str | None = None,
                 aliases: Mapping[str, str | Sequence[str]] | None = None,
                 choices: Mapping[str, Sequence[Any]] | None = None, config_file: bool = False,
                 required: bool = True) -> argparse.ArgumentParser:
    """An ``argparse`` parser with one flag per field of ``cls``; parsed values hold only the flags given.

    ``aliases`` adds flag spellings to a field (``{"reset_fraction": "--reset-frac"}``); ``choices``
    restricts a field typed ``str`` to a tuple held elsewhere (``{"preset": sorted(PRESETS)}``);
    ``config_file`` adds ``--config FILE.yaml``; ``required=False`` makes every flag optional (for
    fields a YAML file may set instead).
    """
    parser = argparse.ArgumentParser(prog=prog, description=description or cls.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     argument_default=argparse.SUPPRESS)
    if config_file:
        parser.add_argument("--config", metavar="FILE.yaml",
                            help="YAML file of config fields; flags given here win over it")
    docs, sections = field_docs(cls), field_sections(cls)
    hints = typing.get_type_hints(cls)
    group: Any = parser
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        if field.name in sections:
            group = parser.add_argument_group(sections[field.name])
        default = _default(field)
        options = _argument_options(hints[field.name], field.name)
        if choices and field.name in choices:
            options["choices"] = tuple(choices[field.name])
            options.pop("metavar", None)  # argparse then shows the choices
        extra = (aliases or {}).get(field.name, ())
        flags = ["--" + field.name.replace("_", "-"), *([extra] if isinstance(extra, str) else extra)]
        shown = "required" if default is dataclasses.MISSING else f"default: {_show(default)}"
        help_text = f"{docs.get(field.name, '')} ({shown})".strip().replace("%", "%%")
        group.add_argument(*flags, dest=field.name, help=help_text,
                           required=required and default is dataclasses.MISSING, **options)
    return parser


def parse(cls: type[T], argv: Sequence[str] | None = None, *, prog: str, description: str | None = None,
          aliases: Mapping[str, str | Sequence[str]] | None = None,
          choices: Mapping[str, Sequence[Any]] | None = None) -> T:
    """``cls`` built from the command line (``sys.argv[1:]`` when ``argv`` is None); defaults are the class's."""
    parser = build_parser(cls, prog=prog, description=description, aliases=aliases, choices=choices)
    given = _given(cls, parser, argv)
    try:
        return cls(**given)
    except ValueError as error:
        parser.error(one_line(error))


def parse_overrides(cls: type, argv: Sequence[str] | None = None, *, prog: str, description: str | None = None,
                    aliases: Mapping[str, str | Sequence[str]] | None = None,
                    choices: Mapping[str, Sequence[Any]] | None = None) -> tuple[str | None, dict[str, Any]]:
    """``(--config file or None, {field: value} of the flags given})``, for a loader that applies presets
    and the file first (defaults < preset < file < flags)."""
    parser = build_parser(cls, prog=prog, description=description, aliases=aliases, choices=choices,
                          config_file=True, required=False)
    given = _given(cls, parser, argv)
    return given.pop("config", None), given


def one_line(error: BaseException | str) -> str:
    """An error's message on one line, for ``prog: error: ...``."""
    return " ".join(str(error).split()) or type(error).__name__


def report_error(prog: str, error: BaseException | str) -> None:
    """Print ``prog: error: message`` (one line) on stderr, as argparse does for a bad flag."""
    print(f"{prog}: error: {one_line(error)}", file=sys.stderr)


# --- field types ----------------------------------------------------------------------------------


def _given(cls: type, parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> dict[str, Any]:
    """The flags given, as ``{field: value}``; a field argparse filled as a list but typed tuple gets a tuple."""
    values = vars(parser.parse_args(argv))
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        if isinstance(value, list) and typing.get_origin(_strip_optional(hints.get(name))) is tuple:
            values[name] = tuple(value)
    return values


def _argument_options(hint: Any, name: str) -> dict[str, Any]:
    """``add_argument`` keywords for a field of type ``hint``."""
    hint = _strip_optional(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin in (list, tuple) or hint in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis and len(set(args)) > 1:
            raise TypeError(f"field {name!r}: a tuple of mixed types has no flag form")
        fixed = origin is tuple and args and args[-1] is not Ellipsis
        return {"nargs": len(args) if fixed else "*", **_scalar_options(args[0] if args else str, name)}
    if origin is dict or hint is dict:
        return {"type": _json_object, "metavar": "JSON"}
    return _scalar_options(hint, name)


def _scalar_options(hint: Any, name: str) -> dict[str, Any]:
    if typing.get_origin(hint) is Literal:
        values = typing.get_args(hint)
        return {"type": type(values[0]), "choices": values}
    if hint in (int, float, str):
        return {"type": hint, "metavar": hint.__name__.upper()}
    raise TypeError(f"field {name!r}: no flag form for type {hint!r}")


def _strip_optional(hint: Any) -> Any:
    """``X`` of ``X | None``; anything else unchanged."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return hint


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object: {text!r}")
    return value


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return json.dumps(value)
    return repr(value)
