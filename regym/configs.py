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
command's loader to apply over the file (flags win); ``load_file_and_flags`` is that loader for a
command with no preset.

Flags are never abbreviated (``--max-step`` is an error, not ``--max-steps``). A field renamed to
follow TRL keeps its old flag and YAML key as an alias (``renamed={"group_size": "num_generations"}``):
hidden from ``--help``, it still works and warns once (``rename_fields``). A user mistake found after
parsing (a missing checkpoint, an existing output folder) is a ``UsageError``: commands report it as
``prog: error: ...``, one line, exit 2, before any long work starts.

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


class UsageError(ValueError):
    """A mistake in what the user asked for (a flag's value, a missing file, an existing output); its
    message names the fix. Commands end on it with one ``prog: error:`` line and exit status 2."""


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


class _OneLineErrors(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``prog: error: ...``), not the usage block and then the error:
    a command with sixty flags would bury the one line that matters."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (`{self.prog} --help` lists the flags)\n")


def build_parser(cls: type, *, prog: str, description: str | None = None,
                 aliases: Mapping[str, str | Sequence[str]] | None = None,
                 choices: Mapping[str, Sequence[Any]] | None = None, config_file: bool = False,
                 required: bool = True, legacy: Mapping[str, Any] | None = None) -> argparse.ArgumentParser:
    """An ``argparse`` parser with one flag per field of ``cls``; parsed values hold only the flags given.

    ``aliases`` adds flag spellings to a field (``{"reset_fraction": "--reset-frac"}``); ``choices``
    restricts a field typed ``str`` to a tuple held elsewhere (``{"preset": sorted(PRESETS)}``);
    ``config_file`` adds ``--config FILE.yaml``; ``required=False`` makes every flag optional (for
    fields a YAML file may set instead). ``legacy`` adds hidden flags for old field names, as
    ``{old name: its type}``: their values come back under the old name, for ``rename_fields``.
    Flags are never abbreviated (``allow_abbrev=False``).
    """
    parser = _OneLineErrors(prog=prog, description=description or cls.__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            argument_default=argparse.SUPPRESS, allow_abbrev=False)
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
    for name, hint in (legacy or {}).items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, help=argparse.SUPPRESS,
                            **_argument_options(hint, name))
    return parser


def parse(cls: type[T], argv: Sequence[str] | None = None, *, prog: str, description: str | None = None,
          aliases: Mapping[str, str | Sequence[str]] | None = None,
          choices: Mapping[str, Sequence[Any]] | None = None, renamed: Mapping[str, str] | None = None) -> T:
    """``cls`` built from the command line (``sys.argv[1:]`` when ``argv`` is None); defaults are the class's.

    ``renamed`` ({old field: new field}) keeps old flags working, with a warning (``rename_fields``)."""
    parser = build_parser(cls, prog=prog, description=description, aliases=aliases, choices=choices,
                          legacy=_legacy_hints(cls, renamed))
    given = _given(cls, parser, argv)
    try:
        return cls(**rename_fields(given, renamed or {}, prog=prog, flags=True))
    except ValueError as error:
        parser.error(one_line(error))


def parse_overrides(cls: type, argv: Sequence[str] | None = None, *, prog: str, description: str | None = None,
                    aliases: Mapping[str, str | Sequence[str]] | None = None,
                    choices: Mapping[str, Sequence[Any]] | None = None,
                    legacy: Mapping[str, Any] | None = None) -> tuple[str | None, dict[str, Any]]:
    """``(--config file or None, {field: value} of the flags given})``, for a loader that applies presets
    and the file first (defaults < preset < file < flags). Flags of ``legacy`` names ({old name: type})
    come back under their old names, for the loader to translate (``rename_fields``)."""
    parser = build_parser(cls, prog=prog, description=description, aliases=aliases, choices=choices,
                          config_file=True, required=False, legacy=legacy)
    given = _given(cls, parser, argv)
    return given.pop("config", None), given


def load_file_and_flags(cls: type[T], config_file: str | None, overrides: Mapping[str, Any], *, prog: str,
                        renamed: Mapping[str, str] | None = None, ignore: Sequence[str] = ()) -> T:
    """``cls`` from a YAML (or JSON) file of fields with the flags given over it (defaults < file < flags).

    A missing or malformed file, an unknown key or a value the class refuses is a ``UsageError``.
    A run's saved ``config.json`` is such a file, so ``--config RUN/config.json`` repeats a run; the keys
    of ``ignore`` are what such a file records besides the fields (rl-eval's ``identity``).
    """
    import yaml

    from_file: dict[str, Any] = {}
    if config_file is not None:
        try:
            loaded = yaml.safe_load(open(config_file, encoding="utf-8").read())
        except OSError as error:
            raise UsageError(f"--config {config_file}: {error.strerror or error}") from None
        except yaml.YAMLError as error:
            raise UsageError(f"--config {config_file} is not valid YAML: {one_line(error)}") from None
        if not isinstance(loaded, dict | None):
            raise UsageError(f"--config {config_file}: a config file must be a mapping of field: value")
        from_file = {key: value for key, value in rename_fields(loaded or {}, renamed or {}, prog=prog).items()
                     if key not in ignore}
    known = {field.name for field in dataclasses.fields(cls) if field.init}
    unknown = sorted(set(from_file) - known)
    if unknown:
        raise UsageError(f"--config {config_file}: unknown config fields {unknown} (`{prog} --help` lists them)")
    try:
        return cls(**{**from_file, **rename_fields(dict(overrides), renamed or {}, prog=prog, flags=True)})
    except (TypeError, ValueError) as error:
        raise UsageError(one_line(error)) from None


_WARNED: set[tuple[str, str]] = set()


def rename_fields(values: Mapping[str, Any], renamed: Mapping[str, str], *, prog: str,
                  flags: bool = False) -> dict[str, Any]:
    """``values`` with each old field name of ``renamed`` ({old: new}) moved to its new name.

    Each old name warns once per process on stderr (``prog: warning: ...``). Giving an old name and
    its new one together is a ``UsageError``: which one was meant is not ours to guess.
    """
    out = dict(values)
    for old, new in renamed.items():
        if old not in out:
            continue
        spell = (lambda name: "--" + name.replace("_", "-")) if flags else (lambda name: name)
        if new in out:
            raise UsageError(f"{spell(old)} is the old name of {spell(new)}: give only {spell(new)}")
        out[new] = out.pop(old)
        if (prog, old) not in _WARNED:
            _WARNED.add((prog, old))
            print(f"{prog}: warning: {spell(old)} is now {spell(new)} (the old name still works, for now)",
                  file=sys.stderr)
    return out


def describe_config(config: Any, *, sources: Mapping[str, str] | None = None,
                    always: Sequence[str] = (), skip: Sequence[str] = ()) -> str:
    """A config in one compact line: the fields set by anything but the class default (and those of
    ``always``), as ``name=value``; with ``sources`` (where each value came from), ``name=value [source]``
    where it is not a flag. The full config belongs in the run's folder, not on the terminal."""
    parts = []
    for field in dataclasses.fields(config):
        value, default = getattr(config, field.name), _default(field)
        source = (sources or {}).get(field.name)
        chosen = value != default or source not in (None, "default")
        if field.name in skip or (field.name not in always and not chosen):
            continue
        shown = json.dumps(value) if isinstance(value, dict | list | tuple) else str(value)
        parts.append(f"{field.name}={shown}" + (f" [{source}]" if source and source not in ("flag", "default")
                                                  else ""))
    return " ".join(parts) or "all defaults"


def _legacy_hints(cls: type, renamed: Mapping[str, str] | None) -> dict[str, Any]:
    """{old name: the new field's type}, for the hidden flags of renamed fields."""
    hints = typing.get_type_hints(cls)
    return {old: hints[new] for old, new in (renamed or {}).items()}


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
