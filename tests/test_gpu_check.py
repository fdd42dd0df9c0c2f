"""bench.gpu_check: the bundle installer, the missing-bundle error, a timed-out step's process group, the time
budget, the figures parsed from partial outputs (fast), and the whole dry run end to end (slow: real Ray, about
two minutes on 2 cores).

    pytest tests/test_gpu_check.py -m "not slow"     # seconds
    pytest tests/test_gpu_check.py -m slow
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from bench import gpu_check
from bench.gpu_check import (BUNDLE_COMMAND, BundleError, Clock, child_env, ensure_packages, pytest_figures,
                             run_step, search_figures, throughput_figures)

REPO = Path(__file__).resolve().parents[1]
FAKE = "segtune_fake_dep"  # a module no environment has


def make_bundle(tmp_path: Path) -> Path:
    """A tar.xz laid out like bundle.sh's site.tar.xz (packages at the top level), holding one fake module."""
    src = tmp_path / "src" / FAKE
    src.mkdir(parents=True)
    (src / "__init__.py").write_text('__version__ = "4.5.6"\n')
    bundle = tmp_path / "bundle" / "site.tar.xz"
    bundle.parent.mkdir()
    with tarfile.open(bundle, "w:xz") as tar:
        tar.add(src, arcname=FAKE)
    return bundle


@pytest.fixture
def restore_paths(monkeypatch):
    """Undo what an install does to this process: sys.path and PYTHONPATH."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))


# ---------------------------------------------------------------------------------------------------------------
# Step 0: packages
# ---------------------------------------------------------------------------------------------------------------
def test_bundle_install_makes_a_missing_module_importable_in_subprocesses(tmp_path, restore_paths):
    bundle, site = make_bundle(tmp_path), tmp_path / "scratch" / "site"
    info = ensure_packages((FAKE,), bundle, site)
    assert info["installed"] and info["site"] == str(site) and info["bundle"] == str(bundle)
    assert "ModuleNotFoundError" in info["missing_before"][FAKE]
    assert info["versions"] == {FAKE: "4.5.6"} and "still_missing" not in info
    assert sys.path[0] == str(site)
    # a process started afterwards, from elsewhere, with nothing but the inherited environment
    proc = subprocess.run([sys.executable, "-c", f"import {FAKE}; print({FAKE}.__file__)"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).is_relative_to(site)


def test_no_install_when_the_modules_import_already(tmp_path):
    info = ensure_packages(("json",), tmp_path / "absent" / "site.tar.xz", tmp_path / "site")
    assert info["installed"] is False and "json" in info["versions"]
    assert not (tmp_path / "site").exists()


def test_missing_bundle_names_the_file_and_the_command(tmp_path):
    bundle = tmp_path / ".offline-bundle" / "site.tar.xz"
    with pytest.raises(BundleError) as err:
        ensure_packages((FAKE,), bundle, tmp_path / "site")
    msg = str(err.value)
    assert str(bundle) in msg and BUNDLE_COMMAND in msg and FAKE in msg and "--bundle" in msg


def test_main_without_the_bundle_exits_2_and_still_writes_a_summary(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "REQUIRED", (FAKE,))
    monkeypatch.setattr(gpu_check, "REPORTED", ())
    out = tmp_path / "out"
    rc = gpu_check.main(["--out", str(out), "--bundle", str(tmp_path / "none.tar.xz"), "--scratch",
                         str(tmp_path / "scratch")])
    assert rc == 2
    assert f"error: {tmp_path / 'none.tar.xz'}: not found" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is False and BUNDLE_COMMAND in summary["error"] and summary["steps"] == {}


def test_the_gpu_check_refuses_a_machine_without_cuda(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU, also where this test runs on one
    out = tmp_path / "out"
    assert gpu_check.main(["--out", str(out), "--scratch", str(tmp_path / "scratch")]) == 2
    assert "sees no CUDA device" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert "--dry-run" in summary["error"] and summary["environment"]["gpu_count"] == 0 and summary["steps"] == {}


# ---------------------------------------------------------------------------------------------------------------
# Running steps
# ---------------------------------------------------------------------------------------------------------------
def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for init to reap it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_timed_out_step_is_killed_with_everything_it_started(tmp_path):
    # A step that ignores SIGINT and leaves a grandchild that ignores it too (like a Ray worker): both must go.
    # The shell forks the grandchild and writes its pid within milliseconds of starting (no interpreter start-up
    # racing the timeout); the ignored SIGINT is inherited by the grandchild at the fork.
    pid_file = tmp_path / "grandchild.pid"
    step = ["sh", "-c", f"trap '' INT; sleep 100000 & echo $! > {pid_file}; wait"]
    log = tmp_path / "step.log"
    rec = run_step("stubborn", step, log, timeout_s=5, env=child_env(None), grace_s=1)
    assert rec["timed_out"] is True and rec["returncode"] == -9  # SIGINT ignored, so SIGKILL
    assert rec["log"] == "step.log" and log.read_text().startswith("$ ")
    assert pid_file.is_file() and pid_file.read_text().strip(), "the step did not start its grandchild"
    assert not alive(int(pid_file.read_text()))


def test_no_time_left_skips_the_step(tmp_path):
    rec = run_step("late", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "late.log", 0, child_env(None))
    assert rec["skipped"] and rec["returncode"] is None and rec["timed_out"] is True


def test_a_step_budget_is_cut_so_the_later_steps_keep_theirs(monkeypatch):
    import bench.gpu_check

    now = [1000.0]  # a clock the test moves (seconds), instead of the real one
    monkeypatch.setattr(bench.gpu_check.time, "monotonic", lambda: now[0])
    clock = Clock(100, {"a": 50, "b": 30, "c": 40})
    assert clock.timeout("a") == 30  # 100 s in all, 70 s promised to b and c
    now[0] += 20  # a took 20 s: b and c keep their budgets
    assert clock.timeout("b") == 30 and clock.timeout("c") == 40
    now[0] += 45  # 65 s spent: 35 s left, 40 promised to c, so b gets none
    assert clock.timeout("b") == 0.0 and clock.timeout("c") == 35
    assert Clock(10, {"a": 50, "b": 30}).timeout("a") == 0.0


# ---------------------------------------------------------------------------------------------------------------
# Figures from each step's output, including a step stopped part-way
# ---------------------------------------------------------------------------------------------------------------
def test_pytest_figures_from_junit_xml(tmp_path):
    xml = tmp_path / "pytest.xml"
    xml.write_text("""<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0"
        failures="1" skipped="1" tests="3"><testcase classname="tests.test_gpu" name="test_a[fcn]"/>
        <testcase classname="tests.test_gpu" name="test_a[unet]"><failure message="boom"/></testcase>
        <testcase classname="tests.test_gpu" name="test_b"><skipped message="needs CUDA"/></testcase>
        </testsuite></testsuites>""")
    f = pytest_figures(xml)
    assert (f["tests"], f["passed"], f["failed"], f["errors"], f["skipped"]) == (3, 1, 1, 0, 1)
    assert f["cases"] == {"tests.test_gpu::test_a[fcn]": "passed", "tests.test_gpu::test_a[unet]": "failed",
                          "tests.test_gpu::test_b": "skipped"}
    assert "not written" in pytest_figures(tmp_path / "absent.xml")["error"]


def test_throughput_figures_keep_the_rows_of_an_unfinished_run(tmp_path):
    report = tmp_path / "throughput.json"
    report.write_text(json.dumps({"device": "NVIDIA H200", "data": "synthetic", "image_size": 224, "complete": False,
                                  "rows": [
        {"arch": "fcn", "batch": 16, "loop": "cached data, fp32", "images_per_s": 900.0, "compile_seconds": 0.0},
        {"arch": "fcn", "batch": 16, "loop": "+ CUDA graphs (compile reduce-overhead)", "images_per_s": 2500.0,
         "compile_seconds": 21.5},
        {"arch": "fcn", "batch": 64, "loop": "+ CUDA graphs (compile reduce-overhead)", "images_per_s": None,
         "error": "BackendCompilerFailed: ..."}]}))
    f = throughput_figures(report)
    assert f["complete"] is False and f["device"] == "NVIDIA H200"
    assert f["images_per_s"] == {"fcn": {
        "16": {"cached data, fp32": 900.0, "+ CUDA graphs (compile reduce-overhead)": 2500.0},
        "64": {"+ CUDA graphs (compile reduce-overhead)": None}}}
    assert f["compile_seconds"] == {"fcn": {"16": 21.5}}
    assert f["errors"] == ["fcn b64 + CUDA graphs (compile reduce-overhead): BackendCompilerFailed: ..."]
    assert "not written" in throughput_figures(tmp_path / "absent.json")["error"]


def test_search_figures_list_trials_a_timed_out_run_never_started(tmp_path):
    board = tmp_path / "leaderboard.parquet"
    pd.DataFrame({"name": ["baseline", "5b"], "arch": ["fcn", "resnet34_fcn"], "status": ["completed", "failed"],
                  "epochs_run": pd.array([10, 0], dtype="Int64"), "best_val_miou": [0.051, float("nan")],
                  "wall_seconds": [12.5, 0.4], "error": [None, "PretrainedWeightsError: " + "x" * 900]}
                 ).to_parquet(board)
    f = search_figures(board, ["baseline", "4a", "5b"])
    assert f["status_counts"] == {"completed": 1, "not run": 1, "failed": 1}
    base, a, b = f["trials"]
    assert base == {"name": "baseline", "arch": "fcn", "status": "completed", "epochs_run": 10,
                    "best_val_miou": 0.051, "wall_seconds": 12.5, "error": None}
    assert a == {"name": "4a", "status": "not run"}
    assert b["best_val_miou"] is None and len(b["error"]) == 500
    json.dumps(f)  # plain JSON, no numpy or pandas scalars
    assert search_figures(tmp_path / "absent.parquet", ["baseline"])["trials"] == [
        {"name": "baseline", "status": "not run"}]


# ---------------------------------------------------------------------------------------------------------------
# The dry run, end to end
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_dry_run_runs_every_step_and_writes_the_summary(tmp_path):
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    cmd = [sys.executable, "-m", "bench.gpu_check", "--dry-run", "--out", str(out), "--scratch", str(scratch)]
    # two threads, as on a user's CPU (the suite's own one-thread setting would skip bench.throughput's one-thread
    # comparison row, which no other test runs)
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=800, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["mode"] == "dry-run" and s["ok"] is True and s["finished_at"]
    assert s["packages"]["installed"] is False  # the packages import here: no bundle needed
    env = s["environment"]
    assert env["torch"] and env["python"] and env["cuda_available"] is False and "git_commit" in env
    assert list(s["steps"]) == ["pytest_gpu", "throughput", "search"]
    for name, step in s["steps"].items():
        assert step["returncode"] == 0 and step["timed_out"] is False and step["seconds"] > 0, name
        assert (out / step["log"]).is_file(), name
    pt = s["steps"]["pytest_gpu"]["figures"]
    assert pt["tests"] > 0 and pt["skipped"] == pt["tests"]  # no CUDA here: every GPU test reports its skip
    tp = s["steps"]["throughput"]["figures"]
    assert tp["complete"] is True and tp["errors"] == []
    assert set(tp["images_per_s"]) == set(gpu_check.DRY_RUN.archs)
    for by_batch in tp["images_per_s"].values():
        assert set(by_batch) == {str(b) for b in gpu_check.DRY_RUN.batch_sizes}
        for loops in by_batch.values():
            assert "reference, 0 workers" in loops and "cached data, fp32" in loops
            assert any(name.endswith(", 1 thread") for name in loops), loops  # what one CPU trial gets
            assert all(v > 0 for v in loops.values())
    se = s["steps"]["search"]["figures"]
    assert se["wall_seconds"] > 0 and se["leaderboard"] == "leaderboard.parquet"
    trials = {t["name"]: t for t in se["trials"]}
    assert list(trials) == ["baseline", "4a", "4b", "4c", "5a", "5b", "5b-scratch", "5c"]
    from seg.models.resnet_fcn import hub_weights_path

    for name, t in trials.items():
        if name == "5b":  # needs ImageNet weights (offline here: SEGTUNE_OFFLINE): failed unless already cached
            assert t["status"] == ("completed" if hub_weights_path().is_file() else "failed"), t
        else:
            assert t["status"] == "completed" and 0 <= t["best_val_miou"] <= 1 and t["epochs_run"] == 1, t
            assert 0 <= t["best_val_miou_paper"] <= 1 and 0 <= t["test_miou_paper"] <= 1, t
    assert (out / "paper_gpu_check.yaml").is_file() and len(pd.read_parquet(out / "leaderboard.parquet")) == 8
    # what the device tool brings back: at most 8 files, under 16 MiB each, no folders
    files = list(out.rglob("*"))
    assert all(f.is_file() for f in files) and len(files) <= 7, files  # one left for a console log
    assert all(f.stat().st_size < 16 * 2**20 for f in files)
    assert (scratch / "experiments").is_dir() and not list(out.glob("gpu-check-paper-*"))
