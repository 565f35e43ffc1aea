"""docs/contributing.md, checked: each way of extending regym is a short list of files, and each test here
fails with a message naming the step (and the file) still missing.

The tests walk what is registered today (every env family, reset criterion, advantage estimator and eval
suite), so a new one is checked the moment its first step (the registration) is in.
"""

from __future__ import annotations

import importlib
import math
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def documented(name: str, page: str) -> bool:
    """The page names it as code: `name` or "name"."""
    text = (DOCS / page).read_text(encoding="utf-8")
    return f"`{name}`" in text or f'"{name}"' in text


# --- an env family: regym/envs/<family>/env.py, its __init__.py, one line in ENTRY_POINTS, docs/<family>.md ---
def env_families() -> list[tuple[str, str]]:
    from regym.envs import ENTRY_POINTS

    return sorted(ENTRY_POINTS.items())


@pytest.mark.parametrize("env_id, entry_point", env_families())
def test_an_env_family_is_a_package_with_its_env_its_docs_and_its_expert(env_id, entry_point):
    from regym.envs.base import TextEnv
    from regym.rl.config import ENV_DEFAULT_FIELDS

    module, _, name = entry_point.partition(":")
    family = module.removeprefix("regym.envs.")
    assert re.fullmatch(r"[a-z_]+", family), \
        f"step 3: {env_id}'s ENTRY_POINTS line must name regym.envs.<family>:<Class>, not {entry_point!r}"
    assert (ROOT / "regym" / "envs" / family / "env.py").is_file(), \
        f"step 1: {env_id} has no regym/envs/{family}/env.py (the TextEnv subclass lives there)"
    registered = getattr(importlib.import_module(module), name, None)
    assert registered is not None, f"step 2: regym/envs/{family}/__init__.py does not export {name}"
    assert registered.__module__ == f"{module}.env", f"step 1: {name} is not defined in regym/envs/{family}/env.py"
    assert issubclass(registered, TextEnv), f"step 1: {name} must subclass regym.envs.base.TextEnv"
    for method in ("_task_id_for", "_begin", "_act"):
        assert getattr(registered, method) is not getattr(TextEnv, method), \
            f"step 1: {name} does not implement TextEnv.{method}"
    assert registered.splits, f"step 1: {name}.splits names no split"
    unknown = set(getattr(registered, "rl_defaults", None) or {}) - set(ENV_DEFAULT_FIELDS)
    assert not unknown, f"step 1: {name}.rl_defaults may set only {ENV_DEFAULT_FIELDS}, not {sorted(unknown)}"
    source = "".join(path.read_text(encoding="utf-8") for path in (ROOT / "regym" / "envs" / family).glob("*.py"))
    assert "expert_action" in source, \
        f"step 1: {name} gives no info['expert_action']: demos, calibration and the tiny pipeline need an expert"
    assert (DOCS / f"{family}.md").is_file(), f"step 4: docs/{family}.md is missing"


# --- a reset criterion: regym/rejuvenation/criteria.py (CRITERIA, select_units), docs/rejuvenation.md ---
UNIT_CRITERIA_EXEMPT = {"shrink_perturb": "not a unit selection (rejuvenation.pipeline)", "none": "fusion alone"}


def criteria() -> tuple[str, ...]:
    from regym.rejuvenation.criteria import CRITERIA

    return CRITERIA


@pytest.fixture(scope="module")
def tiny_pair_and_calibration():
    from regym.models.testing import perturbed_copy, tiny_llama, tiny_tokenizer
    from regym.rejuvenation import encode_calibration

    base = tiny_llama(seed=0)
    calib = encode_calibration(tiny_tokenizer(), [{"prompt": "where is the key", "response": "in the red box"}])
    return base, perturbed_copy(base, 0.1, seed=1), calib


@pytest.mark.parametrize("criterion", criteria())
def test_a_reset_criterion_selects_units_and_is_documented(criterion, tiny_pair_and_calibration):
    import regym.rejuvenation.criteria as module
    from regym.rejuvenation.criteria import NEEDS_CALIBRATION, select_units

    assert f"``{criterion}``" in module.__doc__, \
        f"step 1: regym/rejuvenation/criteria.py's docstring does not describe ``{criterion}`` (what it scores, its source)"
    assert documented(criterion, "rejuvenation.md"), f"step 2: docs/rejuvenation.md does not name `{criterion}`"
    if criterion in UNIT_CRITERIA_EXEMPT:
        return
    base, sft, calib = tiny_pair_and_calibration
    missing = f"step 1: select_units in regym/rejuvenation/criteria.py has no branch for {criterion!r}"
    try:
        plan = select_units(base, sft, calib if criterion in NEEDS_CALIBRATION else None, criterion, fraction=0.05)
    except (TypeError, ValueError) as error:
        pytest.fail(f"{missing} ({type(error).__name__}: {error})")
    assert plan.criterion == criterion, f"{missing}: it returned a {plan.criterion!r} plan"


# --- an advantage estimator: regym/rl/config.py (ESTIMATORS), regym/rl/advantages.py, docs/rl.md ---
def estimators() -> tuple[str, ...]:
    from regym.rl.config import ESTIMATORS

    return ESTIMATORS


@pytest.mark.parametrize("estimator", estimators())
def test_an_advantage_estimator_is_computed_offered_and_documented(estimator):
    from regym.cli.rl_train import CHOICES
    from regym.rl.advantages import group_advantages

    missing = f"step 2: regym/rl/advantages.py's group_advantages does not compute {estimator!r}"
    try:
        advantages = group_advantages([1.0, 0.0, 0.0, 1.0, 3.0, 1.0], 3, estimator)
    except ValueError as error:
        pytest.fail(f"{missing} ({error})")
    assert len(advantages) == 6 and all(math.isfinite(value) for value in advantages), missing
    assert estimator in CHOICES["advantage_estimator"], f"step 1: rl-train --advantage-estimator does not offer {estimator!r}"
    assert documented(estimator, "rl.md"), f"step 3: docs/rl.md does not name `{estimator}`"


# --- an eval suite: regym/eval/suites.py (SUITES), docs/eval.md ---
def suites() -> list[str]:
    from regym.eval.suites import SUITES

    return sorted(SUITES)


@pytest.mark.parametrize("name", suites())
def test_an_eval_suite_resolves_to_registered_envs_and_is_documented(name):
    from regym.envs import resolve_env_id
    from regym.eval.suites import get_suite

    suite = get_suite(name)
    assert suite.name == name and suite.splits, f"step 1: SUITES[{name!r}] in regym/eval/suites.py names no split"
    for env in suite.env_names or ():
        resolve_env_id(env)  # raises naming the known envs
    assert documented(name, "eval.md"), f"step 2: docs/eval.md's suite table does not name `{name}`"
