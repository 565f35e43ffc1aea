"""What a stranger may choose about an env: each family declares the constructor options that are safe.

An env server (``regym serve-env``) makes envs for clients it does not trust. Its operator fixes
every option at start; a client may add only the options its family lists in ``client_options``
(``TextEnv``'s episode knobs plus the family's own: task pool, level, reward shape), each checked
against its ``ClientOption`` (type, bounds, choices). Anything else is refused by name: paths
(datasets, caches), URLs, executables and backends are the operator's alone, because each of them
reads, writes or reaches something on the server's host.

Declaring an option here is a promise that no value in its bounds can make the env touch the
host beyond its own game: add one only if that is true.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_LIST_ITEMS = 64
MAX_STRING_CHARS = 128


@dataclass(frozen=True)
class ClientOption:
    """One constructor option a remote client may set, and what values it may take."""

    kind: type
    """``int``, ``float``, ``bool``, ``str`` or ``list`` (a list of strings, or one string)."""
    low: float | None = None
    """Smallest value (numbers)."""
    high: float | None = None
    """Largest value (numbers)."""
    choices: tuple[str, ...] | None = None
    """The allowed strings (``str``, and each item of a ``list``); None: any short string."""
    nullable: bool = False
    """Whether ``None`` (the env's own default) is accepted."""

    def check(self, name: str, value: Any) -> Any:
        """``value`` if it is one this option takes; else ``TypeError``/``ValueError`` naming ``name``."""
        if value is None:
            if self.nullable:
                return None
            raise TypeError(f"env option {name} may not be null")
        if self.kind is bool:
            if not isinstance(value, bool):
                raise TypeError(f"env option {name} must be true or false, not {value!r:.80}")
            return value
        if self.kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, int if self.kind is int else (int, float)):
                raise TypeError(f"env option {name} must be {'an integer' if self.kind is int else 'a number'}, "
                                f"not {value!r:.80}")
            if not math.isfinite(value) or (self.low is not None and value < self.low) or \
                    (self.high is not None and value > self.high):
                raise ValueError(f"env option {name} must be in [{_shown(self.low)}, {_shown(self.high)}], "
                                 f"not {value!r:.80}")
            return value
        if self.kind is str:
            return self._string(name, value)
        if self.kind is list:
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not items or len(items) > MAX_LIST_ITEMS:
                raise TypeError(f"env option {name} must be a list of 1 to {MAX_LIST_ITEMS} names, not {value!r:.80}")
            return [self._string(name, item) for item in items] if not isinstance(value, str) else \
                self._string(name, value)
        raise AssertionError(f"ClientOption kind {self.kind!r} is not supported")  # pragma: no cover

    def _string(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or len(value) > MAX_STRING_CHARS:
            raise TypeError(f"env option {name} takes names of at most {MAX_STRING_CHARS} characters, "
                            f"not {value!r:.80}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"env option {name} must be one of {list(self.choices)}, not {value!r:.80}")
        return value

    def describe(self) -> str:
        """One line for docs and errors: ``int in [1, 1000]``, ``one of ['eval', 'train']``."""
        if self.choices is not None:
            shown = f"{'list of ' if self.kind is list else ''}one of {list(self.choices)}"
        elif self.kind in (int, float):
            shown = f"{self.kind.__name__} in [{_shown(self.low)}, {_shown(self.high)}]"
        else:
            shown = {list: "list of names", str: "name"}.get(self.kind, self.kind.__name__)
        return shown + (" or null" if self.nullable else "")


def _shown(bound: float | None) -> str:
    return "any" if bound is None else f"{bound:g}" if isinstance(bound, float) else str(bound)


def checked_client_options(env_class: type, requested: Mapping[str, Any]) -> dict[str, Any]:
    """``requested`` constructor options, each checked against ``env_class.client_options``.

    An option the family does not declare raises ``ValueError`` naming it and listing those it declares."""
    declared: Mapping[str, ClientOption] = getattr(env_class, "client_options", {})
    unknown = sorted(set(requested) - set(declared))
    if unknown:
        allowed = ", ".join(sorted(declared)) or "none"
        raise ValueError(f"env option(s) {unknown} may not be set by a client of {env_class.__name__} "
                         f"(a client may set: {allowed}; the server's operator fixes the rest)")
    return {name: declared[name].check(name, value) for name, value in requested.items()}
