"""regym's layers point one way: every import, including one inside a function, goes down.

The order is written once, in ``LAYERS`` below and in docs/architecture.md. A module may
import its own package and anything of a lower layer; never a higher layer, and never a
sibling package of the same layer. An import hidden in a function body is an import all
the same (it still ties the lower layer to the upper one), so the whole tree is walked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "regym"

LAYERS: list[tuple[str, ...]] = [
    ("regym.trajectory", "regym.paths", "regym.cache", "regym.seeds", "regym.numerics", "regym.progress", "regym.configs"),
    ("regym.checkpoints",),
    ("regym.models",),
    ("regym.envs", "regym.rejuvenation"),
    ("regym.agents",),
    ("regym.rollout",),
    ("regym.demos",),
    ("regym.eval",),
    ("regym.rl",),
    ("regym.recipes",),
    ("regym.lab",),
    ("regym.cli",),
]
"""Bottom up. ``regym`` itself (the package's ``__init__``) is the public face and may import any layer."""


def owner(module: str) -> tuple[int, str] | None:
    """(layer, package) of a ``regym.*`` module name, by its longest listed prefix."""
    best = None
    for rank, packages in enumerate(LAYERS):
        for package in packages:
            if (module == package or module.startswith(package + ".")) and (best is None or len(package) > len(best[1])):
                best = (rank, package)
    return best


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, absolute module) of every ``regym`` import in the file, at any depth."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from regym import seeds`` imports the module regym.seeds, not the package face.
            found += [(node.lineno, f"{target}.{alias.name}" if owner(f"{target}.{alias.name}") else target)
                      for alias in node.names]
    return [(line, module) for line, module in found if module == "regym" or module.startswith("regym.")]


def upward_imports(root: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        if name == "regym":
            continue
        source = owner(name)
        if source is None:
            problems.append(f"{name}: not in any layer (add it to LAYERS and docs/architecture.md)")
            continue
        for line, module in imported_modules(path, root):
            target = owner(module)
            if target is None:
                problems.append(f"{name}:{line} imports {module}, which is in no layer")
            elif target[1] != source[1] and target[0] >= source[0]:
                problems.append(f"{name}:{line} imports {module} (layer {target[0]} {target[1]}) "
                                f"from layer {source[0]} {source[1]}")
    return problems


KNOWN_UPWARD: dict[str, str] = {}
"""Modules that still import upward, each with where it goes. The list may only shrink:
a module not listed here fails at its first upward import, and a listed module that no
longer imports upward fails until it is struck off."""


def test_every_import_points_down():
    problems = upward_imports()
    offenders = {problem.split(":")[0] for problem in problems}
    new = [problem for problem in problems if problem.split(":")[0] not in KNOWN_UPWARD]
    assert not new, "upward imports:\n" + "\n".join(new)
    assert not set(KNOWN_UPWARD) - offenders, f"now clean, strike off KNOWN_UPWARD: {set(KNOWN_UPWARD) - offenders}"


def test_the_check_sees_an_upward_import_hidden_in_a_function(tmp_path):
    fake = tmp_path / "regym"
    (fake / "envs").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "envs" / "__init__.py").write_text("")
    (fake / "envs" / "game.py").write_text("def play():\n    from regym.rl.train import train\n    return train\n")
    (fake / "envs" / "fine.py").write_text("from regym.paths import cache_dir\nfrom . import game\n")
    problems = upward_imports(fake)
    assert len(problems) == 1 and "regym.envs.game:2 imports regym.rl.train" in problems[0]


@pytest.mark.parametrize("module, expected", [("regym.rl.train", "regym.rl"), ("regym.seeds", "regym.seeds"),
                                              ("regym.envs.alfworld.env", "regym.envs")])
def test_owner(module, expected):
    assert owner(module)[1] == expected
