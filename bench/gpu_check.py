"""One command for a lent GPU machine: install the carried packages, run the GPU checks, write one summary.

    python -m bench.gpu_check --out $OUT         # on the GPU machine: ends inside 8 minutes on one H100/H200
    python -m bench.gpu_check --dry-run          # the same steps on the CPU at toy sizes (CI runs this)

A lent GPU machine has CUDA, Python 3.12 and torch, but no Ray, Optuna, pydantic or Plotly, no network, and about
15 minutes of device time in all, so this has to work the first time:

0. packages: if `import ray, optuna, pydantic, plotly` fails, `.offline-bundle/site.tar.xz` (made by
   `../shared/offline/bundle.sh`, carried with the working tree) is unpacked into the scratch folder and put first
   on sys.path and PYTHONPATH, for this process and every one it starts. This module therefore imports nothing
   beyond the standard library at the top; seg, search and bench are imported after that step.
1. `pytest -m gpu tests/test_gpu.py`: the CUDA smoke tests (they report skips without CUDA);
2. `bench.throughput`: fcn, fcn_dilated, resnet34_fcn, unet at batch 16 and 64, 224 px, on synthetic VOC-sized
   images, the paper-style loop (0 workers) and segtune's levers one at a time up to CUDA graphs
   (`compile: reduce-overhead`);
3. `spaces/paper.yaml` end to end through `search.run`, four trials per GPU (`resources.gpus: 0.25`), on synthetic
   data of VOC's split sizes and image size, epochs scaled to fit; 5b fails for want of ImageNet weights
   (`--allow-missing-weights`).

Each step is a subprocess with its own time budget and log. A step that runs out of time is interrupted (SIGINT,
then SIGKILL to its whole process group, Ray's processes included), recorded as timed out, and the check moves on.
`summary.json` (rewritten after every step) holds each step's command, return code, seconds, log and the figures
parsed from its output. The output folder stays small enough for the device tool to bring back (at most 8 files,
one folder deep); the experiment, the synthetic data and the unpacked packages go to a scratch folder.

The parts live beside it, each importing only the standard library: bench.bundle (step 0), bench.probes (the
machine), bench.launch (a step in its own process group), bench.gpu_summary (summary.json and the printed report).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.bundle import BUNDLE_COMMAND, DEFAULT_BUNDLE, BundleError, ensure_packages
from bench.gpu_summary import finish, new_summary, print_report, write_summary
from bench.launch import REPO, Clock, guarded, run_step, search_run_command
from bench.probes import child_env, probe_environment

PAPER_SPACE = REPO / "spaces" / "paper.yaml"
REQUIRED = ("ray", "optuna", "pydantic", "plotly")  # what a bare torch machine lacks (bundle.sh packs these)
REPORTED = (*REQUIRED, "pytest", "pandas", "pyarrow", "yaml")  # versions recorded in the summary


@dataclass(frozen=True)
class Profile:
    """Sizes and time budgets of one kind of run. Times are seconds of wall clock."""

    name: str
    hide_gpus: bool  # run the children with CUDA_VISIBLE_DEVICES="" (the dry run is a CPU run everywhere)
    time_budget_s: float  # the whole check; each step gets its own budget, cut short if the total runs low
    budgets_s: tuple[tuple[str, float], ...]  # (step, seconds) in the order the steps run
    # bench.throughput
    archs: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    image_size: int  # px, square
    steps: int  # timed batches per measurement
    rounds: int  # interleaved rounds per measurement (the median is reported)
    warmup: int  # batches before timing; covers torch.compile and CUDA-graph capture
    # the paper search
    search_image_size: int  # px
    epochs_scale: float  # times each paper trial's epochs (20/30/50), at least 1
    split_counts: tuple[int, int, int]  # synthetic train/val/test images
    synthetic_size: int  # px of the synthetic source images (VOC's are about 500x375)
    trial_cpus: float
    trial_gpus: float  # 0.25: four trials share a GPU, as spaces/paper.yaml says
    trials_per_gpu: int  # budget.max_concurrent = this x GPUs
    num_cpus: int | None  # search.run --num-cpus (None: all)


# Sized for one H100/H200 without a run to measure them on (none has run this yet). 460 s in all: 8 minutes less
# the 20 s a timed-out last step may take to stop (SIGINT, then SIGKILL). The step budgets add up to 420 s, which
# leaves 40 s for unpacking the bundle and the probes. The throughput step is the largest because of
# torch.compile (tens of seconds per arch and batch); the search's epochs are halved (10/15/25 instead of
# 20/30/50): eight trials (5b fails at once offline; 5b-scratch trains) in two waves of four on one GPU.
GPU = Profile(
    name="gpu", hide_gpus=False, time_budget_s=460,
    budgets_s=(("pytest_gpu", 60), ("throughput", 200), ("search", 160)),
    archs=("fcn", "fcn_dilated", "resnet34_fcn", "unet"), batch_sizes=(16, 64), image_size=224, steps=15, rounds=3,
    warmup=5,
    search_image_size=224, epochs_scale=0.5, split_counts=(209, 213, 210), synthetic_size=400,
    trial_cpus=2, trial_gpus=0.25, trials_per_gpu=4, num_cpus=None,
)
# The same steps on a 2-core CPU in one to two minutes: toy sizes, one epoch per trial, no GPU. Throughput: the
# smallest model (fcn, 5.5M parameters) at two batch sizes. Search: 64 px, the smallest size every paper arch
# takes (fcn and resnet34_fcn need a multiple of 32; fcn_dilated fails below 40).
DRY_RUN = Profile(
    name="dry-run", hide_gpus=True, time_budget_s=900,
    budgets_s=(("pytest_gpu", 180), ("throughput", 300), ("search", 420)),
    archs=("fcn",), batch_sizes=(2, 4), image_size=32, steps=2, rounds=1, warmup=1,
    search_image_size=64, epochs_scale=0.01, split_counts=(16, 8, 8), synthetic_size=64,
    trial_cpus=1, trial_gpus=0.25, trials_per_gpu=4, num_cpus=2,
)




# ---------------------------------------------------------------------------------------------------------------
# main: the table of contents
# ---------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    profile = DRY_RUN if args.dry_run else GPU
    out, scratch = make_folders(args)
    clock = Clock(args.time_budget or profile.time_budget_s, dict(profile.budgets_s))
    summary = new_summary(profile, argv, out, scratch, clock)
    try:
        summary["packages"] = ensure_packages(REQUIRED, Path(args.bundle), scratch / "site", report=REPORTED)
    except BundleError as e:
        return give_up(summary, out, clock, str(e))
    summary["environment"] = probe_environment(profile.hide_gpus)
    if not profile.hide_gpus and not summary["environment"].get("gpu_count"):
        return give_up(summary, out, clock, no_gpu_message(summary["environment"]))
    search_data = start_search_data(profile, scratch)  # generated on the CPU while pytest uses the GPU
    steps = summary["steps"]
    steps["pytest_gpu"] = guarded(run_pytest, profile, out, scratch, clock.timeout("pytest_gpu"))
    write_summary(out, summary)
    summary["search_data"] = wait_for(search_data)  # before the throughput step, so it has the CPU to itself
    steps["throughput"] = guarded(run_throughput, profile, out, scratch, clock.timeout("throughput"))
    write_summary(out, summary)
    steps["search"] = guarded(run_paper_search, profile, out, scratch, clock.timeout("search"),
                              summary["environment"])
    finish(summary, out, clock)
    print_report(summary, out)
    return 0 if summary["ok"] else 1


def give_up(summary: dict[str, Any], out: Path, clock: Clock, message: str) -> int:
    """A setup problem no step can work around: say so, keep it in summary.json, exit 2."""
    summary["error"] = message
    finish(summary, out, clock)
    print(f"error: {message}", file=sys.stderr)
    return 2


def no_gpu_message(environment: dict[str, Any]) -> str:
    probe = f"the torch probe failed: {environment['error']}" if "error" in environment else (
        f"torch {environment.get('torch')} sees no CUDA device")
    return (f"{probe} (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}); the GPU check "
            f"needs one. On a machine without a GPU run `python -m bench.gpu_check --dry-run`")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/gpu_check",
                    help="summary.json, the logs, throughput.json, leaderboard.parquet (on the device: $OUT)")
    ap.add_argument("--dry-run", action="store_true",
                    help="the same steps on the CPU at toy sizes (CI); no bundle needed where the packages import")
    ap.add_argument("--bundle", default=str(DEFAULT_BUNDLE), help=f"the packed packages (made by {BUNDLE_COMMAND})")
    ap.add_argument("--scratch", default=None,
                    help="unpacked packages, synthetic data, the Ray/Tune experiment (default: a new "
                         "/tmp/segtune-gpu-check-*; kept for inspection)")
    ap.add_argument("--time-budget", type=float, default=None,
                    help=f"seconds for the whole check (default {GPU.time_budget_s:g}; dry run "
                         f"{DRY_RUN.time_budget_s:g})")
    return ap.parse_args(argv)


def make_folders(args: argparse.Namespace) -> tuple[Path, Path]:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(args.scratch).resolve() if args.scratch else Path(tempfile.mkdtemp(prefix="segtune-gpu-check-"))
    scratch.mkdir(parents=True, exist_ok=True)
    return out, scratch






# ---------------------------------------------------------------------------------------------------------------
# Step 0: packages from the offline bundle
# ---------------------------------------------------------------------------------------------------------------














# ---------------------------------------------------------------------------------------------------------------
# Provenance: the machine, the versions, the commit
# ---------------------------------------------------------------------------------------------------------------








# ---------------------------------------------------------------------------------------------------------------
# Running one step
# ---------------------------------------------------------------------------------------------------------------






# ---------------------------------------------------------------------------------------------------------------
# Step 1: the CUDA smoke tests
# ---------------------------------------------------------------------------------------------------------------
def run_pytest(profile: Profile, out: Path, scratch: Path, timeout_s: float) -> dict[str, Any]:
    junit = scratch / "pytest.xml"
    junit.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "tests/test_gpu.py", f"--junitxml={junit}"]
    step = run_step("pytest_gpu", cmd, out / "pytest.log", timeout_s, child_env(profile.hide_gpus))
    step["figures"] = pytest_figures(junit)
    return step


def pytest_figures(junit: Path) -> dict[str, Any]:
    """Counts and each test's outcome from pytest's JUnit XML."""
    if not junit.is_file():
        return {"error": f"{junit.name} not written (pytest did not finish)"}
    root = ET.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    cases = {}
    for case in root.iter("testcase"):
        outcome = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
        cases[f"{case.get('classname')}::{case.get('name')}"] = {"failure": "failed"}.get(outcome, outcome)
    return {"tests": counts["tests"], "passed": counts["tests"] - counts["failures"] - counts["errors"]
            - counts["skipped"], "failed": counts["failures"], "errors": counts["errors"],
            "skipped": counts["skipped"], "cases": cases}


# ---------------------------------------------------------------------------------------------------------------
# Step 2: training throughput, lever by lever
# ---------------------------------------------------------------------------------------------------------------
def run_throughput(profile: Profile, out: Path, scratch: Path, timeout_s: float) -> dict[str, Any]:
    report = out / "throughput.json"
    report.unlink(missing_ok=True)
    # --workers 0: the paper's loop as it ran (a DataLoader in the training process); --packing with no values:
    # the search step measures four trials sharing the GPU in earnest
    cmd = [sys.executable, "-m", "bench.throughput", "--archs", *profile.archs,
           "--batch-sizes", *map(str, profile.batch_sizes), "--image-size", str(profile.image_size),
           "--steps", str(profile.steps), "--rounds", str(profile.rounds), "--warmup", str(profile.warmup),
           "--workers", "0", "--packing",
           "--synthetic", str(scratch / "throughput-voc"), "--synthetic-size", str(profile.synthetic_size),
           "--out", str(report)]
    step = run_step("throughput", cmd, out / "throughput.log", timeout_s, child_env(profile.hide_gpus))
    step["figures"] = throughput_figures(report)
    return step


def throughput_figures(report: Path) -> dict[str, Any]:
    """images/s per arch, batch and loop (bench.throughput's row names) from its JSON, which it rewrites after
    every arch and batch, so a timed-out run still gives the rows it finished."""
    if not report.is_file():
        return {"error": f"{report.name} not written (no arch/batch finished)"}
    r = json.loads(report.read_text())
    ips: dict[str, dict[str, dict[str, float | None]]] = {}
    compile_s: dict[str, dict[str, float]] = {}
    for row in r["rows"]:
        ips.setdefault(row["arch"], {}).setdefault(str(row["batch"]), {})[row["loop"]] = row["images_per_s"]
        if row.get("compile_seconds"):
            compile_s.setdefault(row["arch"], {})[str(row["batch"])] = row["compile_seconds"]
    return {"complete": r.get("complete", True), "device": r.get("device"), "data": r.get("data"),
            "image_size": r.get("image_size"), "images_per_s": ips, "compile_seconds": compile_s,
            "errors": [f"{x['arch']} b{x['batch']} {x['loop']}: {x['error']}" for x in r["rows"] if x.get("error")]}


# ---------------------------------------------------------------------------------------------------------------
# Step 3: the paper's trials (the seven, plus 5b-scratch) through search.run
# ---------------------------------------------------------------------------------------------------------------
def search_data_root(scratch: Path) -> Path:
    return scratch / "search-voc"


def start_search_data(profile: Profile, scratch: Path) -> Future:
    """Generate the search's synthetic VOC in a background thread (it takes tens of seconds at VOC's size), with
    the parameters search.run's own preparation asks for, so it finds the set ready."""
    def make() -> dict[str, Any]:
        from seg.data.synthetic import make_synthetic_voc  # needs pydantic: after the packages step

        t0 = time.perf_counter()
        make_synthetic_voc(search_data_root(scratch), counts=profile.split_counts, size=profile.synthetic_size, seed=0)
        return {"root": str(search_data_root(scratch)), "counts": list(profile.split_counts),
                "synthetic_size": profile.synthetic_size, "seconds": time.perf_counter() - t0}

    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(make)
    pool.shutdown(wait=False)
    return future


def wait_for(future: Future) -> dict[str, Any]:
    try:
        return future.result()
    except Exception as e:  # search.run prepares the data itself too; its log will say what is wrong
        return {"error": f"{type(e).__name__}: {e}"}


def run_paper_search(profile: Profile, out: Path, scratch: Path, timeout_s: float,
                     environment: dict[str, Any]) -> dict[str, Any]:
    from bench.derive import derive_space  # needs pydantic: imported after the packages step

    name = f"gpu-check-paper-{dt.datetime.now():%Y%m%d-%H%M%S}"
    results = scratch / "experiments"
    gpus = max(1, int(environment.get("gpu_count") or 0))
    space_file = derive_space(
        PAPER_SPACE, out / "paper_gpu_check.yaml", name=name, by="bench.gpu_check",
        epochs_scale=profile.epochs_scale, image_size=profile.search_image_size,
        data={"dataset": "synthetic", "root": str(search_data_root(scratch))},
        defaults={"synthetic_counts": list(profile.split_counts), "synthetic_size": profile.synthetic_size},
        budget={"max_concurrent": profile.trials_per_gpu * gpus},
        resources={"cpus": profile.trial_cpus, "gpus": profile.trial_gpus}, storage=str(results))
    cmd = search_run_command(space_file, name=name, allow_missing_weights=True, gpus=0 if profile.hide_gpus else None,
                             num_cpus=profile.num_cpus or None)
    step = run_step("search", cmd, out / "search.log", timeout_s, child_env(profile.hide_gpus))
    board = results / name / "leaderboard.parquet"
    if board.is_file():  # the experiment stays in scratch; its leaderboard comes back with the output
        shutil.copy2(board, out / "leaderboard.parquet")
    step["figures"] = {"wall_seconds": step["seconds"], "space": space_file.name, "experiment": str(results / name),
                       **search_figures(board, fixed_trial_names(space_file))}
    return step


def fixed_trial_names(space_file: Path) -> list[str]:
    from search.space import load_space

    return list(load_space(space_file).fixed)


BOARD_COLUMNS = ("arch", "epochs", "status", "epochs_run", "best_val_miou", "test_miou", "best_val_miou_paper",
                 "test_miou_paper", "wall_seconds", "images_per_s", "error")


def search_figures(board: Path, expected: list[str]) -> dict[str, Any]:
    """Per trial: status, best_val_miou and the rest of BOARD_COLUMNS from the leaderboard; trials the run never
    recorded (it timed out first) appear with status `not run`."""
    import pandas as pd

    rows = pd.read_parquet(board).set_index("name") if board.is_file() else pd.DataFrame()
    trials = []
    for name in expected + [n for n in rows.index if n not in expected]:
        if name not in rows.index:
            trials.append({"name": name, "status": "not run"})
            continue
        r = rows.loc[name]
        trials.append({"name": name, **{c: _cell(r[c]) for c in BOARD_COLUMNS if c in r.index}})
    counts: dict[str, int] = {}
    for t in trials:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    return {"leaderboard": "leaderboard.parquet" if board.is_file() else None, "status_counts": counts,
            "trials": trials}


def _cell(v: Any) -> Any:
    """A leaderboard cell as plain JSON (None for NaN/NA, long errors cut)."""
    import pandas as pd

    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    if isinstance(v, str):
        return v[:500]
    return v.item() if hasattr(v, "item") else v


# ---------------------------------------------------------------------------------------------------------------
# The summary
# ---------------------------------------------------------------------------------------------------------------












if __name__ == "__main__":
    sys.exit(main())
