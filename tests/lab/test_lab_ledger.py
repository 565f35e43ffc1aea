"""The lab's ledger: finished jobs are recorded, read back instead of rerun, and never mixed across designs."""

import json
import subprocess

import pytest

from regym.lab import arms
from regym.lab.arms import OUTCOMES, episode_outcomes, run_jobs
from regym.lab.ledger import Ledger, LedgerMismatch, checkpoint_digest, commit_file


def test_a_recorded_job_is_read_back_on_another_machine_with_its_small_files(tmp_path):
    first_out, results = tmp_path / "machine1" / "lab", tmp_path / "results"
    run = first_out / "rl" / "seed0"
    run.mkdir(parents=True)
    (run / "summary.json").write_text('{"steps": 4}')
    ledger = Ledger(results, first_out)
    settings = {"kind": "rl", "rl": {"output_dir": str(run), "model": str(first_out / "sft" / "epoch-2")}}
    ledger.record("rl/over/seed0", settings, {"steps": 4}, [run / "summary.json"], seconds=12.3)

    second_out = tmp_path / "machine2" / "elsewhere"
    moved = {"kind": "rl", "rl": {"output_dir": str(second_out / "rl" / "seed0"),
                                  "model": str(second_out / "sft" / "epoch-2")}}
    assert Ledger(results, second_out).lookup("rl/over/seed0", moved) == {"steps": 4}
    assert json.loads((second_out / "rl" / "seed0" / "summary.json").read_text()) == {"steps": 4}
    assert Ledger(results, second_out).lookup("rl/over/seed1", moved) is None


def test_a_job_recorded_with_other_settings_stops_the_run_naming_what_differs(tmp_path):
    ledger = Ledger(tmp_path / "results", tmp_path / "lab")
    ledger.record("pre/over", {"eval_episodes": 1000, "lr": 1e-5}, {"x": 1})
    with pytest.raises(LedgerMismatch, match="eval_episodes"):
        ledger.lookup("pre/over", {"eval_episodes": 500, "lr": 1e-5})


def test_a_job_recorded_on_other_cpu_numerics_is_not_reused(tmp_path):
    # Results built on AVX-512 kernels are not the bits a pinned AVX2 rebuild gives: never mixed.
    Ledger(tmp_path / "results", tmp_path / "lab", stamp={"numerics": "native-avx512"}).record("sft", {"lr": 1e-5}, {})
    pinned = Ledger(tmp_path / "results", tmp_path / "lab", stamp={"numerics": "pinned-avx2"})
    with pytest.raises(LedgerMismatch, match="numerics"):
        pinned.lookup("sft", {"lr": 1e-5})
    assert Ledger(tmp_path / "results", tmp_path / "lab", stamp={"numerics": "native-avx512"}).lookup(
        "sft", {"lr": 1e-5}) == {}


def test_run_jobs_runs_only_what_is_missing_and_prepares_once(tmp_path, monkeypatch):
    ran, prepared = [], []
    monkeypatch.setattr(arms, "run_job", lambda job: ran.append(job["key"]) or {"value": job["value"] * 10})
    ledger = Ledger(tmp_path / "results", tmp_path / "lab")
    jobs = [{"kind": "measure", "key": f"measure/{i}", "value": i, "out": str(tmp_path / "lab" / f"{i}.json")}
            for i in range(3)]
    ledger.record("measure/1", arms.job_settings(jobs[1]), {"value": 10})
    results = run_jobs(jobs, 1, ledger=ledger, prepare=lambda: prepared.append(True))
    assert results == [{"value": 0}, {"value": 10}, {"value": 20}]
    assert ran == ["measure/0", "measure/2"] and prepared == [True]
    assert sorted(path.name for path in (tmp_path / "results").iterdir()) == \
        ["measure__0.json", "measure__1.json", "measure__2.json"]
    ran.clear()
    assert run_jobs(jobs, 1, ledger=ledger, prepare=lambda: prepared.append(True)) == results
    assert ran == [] and prepared == [True]  # nothing left to run: no checkpoint is rebuilt


def test_commit_file_commits_that_file_only(tmp_path, tmp_path_factory):
    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("config", "user.email", "lab@example.com")
    git("config", "user.name", "lab")
    (tmp_path / "other.txt").write_text("staged elsewhere")
    git("add", "other.txt")
    (tmp_path / "result.json").write_text("{}")
    assert commit_file(tmp_path / "result.json", "lab results: one job")
    assert git("log", "--name-only", "--format=%s").split() == ["lab", "results:", "one", "job", "result.json"]
    assert "other.txt" in git("diff", "--cached", "--name-only")
    outside = tmp_path_factory.mktemp("not_a_repository") / "result.json"
    outside.write_text("{}")
    assert commit_file(outside, "x") is False


def test_checkpoint_digest_changes_with_one_byte(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
    first = checkpoint_digest(tmp_path)
    assert checkpoint_digest(tmp_path) == first
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 63 + b"\x01")
    assert checkpoint_digest(tmp_path) != first
    with pytest.raises(FileNotFoundError):
        checkpoint_digest(tmp_path / "missing")


def test_episode_outcomes_read_the_compact_file(tmp_path):
    (tmp_path / OUTCOMES).write_text(json.dumps({"in_distribution": "1001", "out_of_distribution": "0"}))
    assert episode_outcomes(tmp_path) == {"in_distribution": [1.0, 0.0, 0.0, 1.0], "out_of_distribution": [0.0]}
