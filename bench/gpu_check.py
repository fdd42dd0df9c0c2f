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

Long because it is one self-contained command for a machine that has nothing else: the install step, three steps
with their budgets and parsers, and the summary must live in a file that imports only the standard library.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PAPER_SPACE = REPO / "spaces" / "paper.yaml"
DEFAULT_BUNDLE = REPO / ".offline-bundle" / "site.tar.xz"
BUNDLE_COMMAND = "../shared/offline/bundle.sh"  # run from the project root; writes .offline-bundle/site.tar.xz
REQUIRED = ("ray", "optuna", "pydantic", "plotly")  # what a bare torch machine lacks (bundle.sh packs these)
REPORTED = (*REQUIRED, "pytest", "pandas", "pyarrow", "yaml")  # versions recorded in the summary
STOP_GRACE_S = 10.0  # after SIGINT, how long a timed-out step may take to stop before SIGKILL
PROBE_TIMEOUT_S = 120.0  # importing Ray in a fresh process; slow on a sandboxed file system


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
    archs=("fcn", "fcn_dilated", "resnet34_fcn", "unet"), batch_sizes=(16, 64), image_size=224, steps=15, warmup=5,
    search_image_size=224, epochs_scale=0.5, split_counts=(209, 213, 210), synthetic_size=400,
    trial_cpus=2, trial_gpus=0.25, trials_per_gpu=4, num_cpus=None,
)
# The same steps on a 2-core CPU in one to two minutes: toy sizes, one epoch per trial, no GPU. Throughput: the
# smallest model (fcn, 5.5M parameters) at two batch sizes. Search: 64 px, the smallest size every paper arch
# takes (fcn and resnet34_fcn need a multiple of 32; fcn_dilated fails below 40).
DRY_RUN = Profile(
    name="dry-run", hide_gpus=True, time_budget_s=900,
    budgets_s=(("pytest_gpu", 180), ("throughput", 300), ("search", 420)),
    archs=("fcn",), batch_sizes=(2, 4), image_size=32, steps=2, warmup=1,
    search_image_size=64, epochs_scale=0.01, split_counts=(16, 8, 8), synthetic_size=64,
    trial_cpus=1, trial_gpus=0.25, trials_per_gpu=4, num_cpus=2,
)


class BundleError(RuntimeError):
    """The packages are missing and the bundle that would provide them cannot be used."""


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
    summary["environment"] = probe_environment(profile)
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


class Clock:
    """The whole check's deadline. A step's timeout is its own budget, cut short where the time left minus the
    budgets of the steps after it is less (slow unpacking eats into the first step, never the last)."""

    def __init__(self, total_s: float, budgets_s: dict[str, float]):
        self.start, self.total_s, self.budgets_s = time.monotonic(), total_s, budgets_s

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def timeout(self, step: str) -> float:
        names = list(self.budgets_s)
        later = sum(self.budgets_s[n] for n in names[names.index(step) + 1:])
        return max(0.0, min(self.budgets_s[step], self.total_s - self.elapsed() - later))


def guarded(step, *args) -> dict[str, Any]:
    """`step(*args)`, or a record of the exception it raised before or after its subprocess (an import the
    packages step could not provide, say): one broken step must not cost the summary of the others."""
    try:
        return step(*args)
    except Exception as e:
        print(f"[{step.__name__}] failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return {"returncode": None, "seconds": 0.0, "timed_out": False, "budget_s": None, "log": None,
                "error": f"{type(e).__name__}: {e}", "figures": {"error": "the step did not run"}}


# ---------------------------------------------------------------------------------------------------------------
# Step 0: packages from the offline bundle
# ---------------------------------------------------------------------------------------------------------------
def ensure_packages(modules: tuple[str, ...], bundle: Path, site: Path, report: tuple[str, ...] = ()
                    ) -> dict[str, Any]:
    """Make `modules` importable here and in every child process: nothing to do if they import already, else
    unpack `bundle` into `site` and put it first on sys.path and PYTHONPATH. Raises BundleError when a module is
    missing and the bundle is not there. The record has the versions of `modules` and `report` as children see
    them."""
    t0 = time.perf_counter()
    probed = tuple(dict.fromkeys((*modules, *report)))
    before = after = import_probe(probed)
    missing = {m: before[m]["error"] for m in modules if "error" in before[m]}
    info: dict[str, Any] = {"required": list(modules), "installed": False, "bundle": None, "site": None}
    if missing:
        if not bundle.is_file():
            raise BundleError(
                f"{bundle}: not found, and {', '.join(missing)} cannot be imported here "
                f"({next(iter(missing.values()))}). Make the bundle from the project root on a machine with pip: "
                f"`{BUNDLE_COMMAND}` (writes .offline-bundle/site.tar.xz), carry .offline-bundle with the working "
                f"tree, or pass --bundle PATH")
        print(f"packages: {', '.join(missing)} missing; unpacking {bundle} ({bundle.stat().st_size / 2**20:.0f} MiB)"
              f" into {site}", flush=True)
        install_bundle(bundle, site)
        info.update(installed=True, bundle=str(bundle), site=str(site), missing_before=missing)
        after = import_probe(probed)
    info["versions"] = {m: r.get("version", r.get("error")) for m, r in after.items()}
    still = [m for m in modules if "error" in after[m]]
    if still:  # carry on: each step fails on its own and says why in its log
        info["still_missing"] = {m: after[m]["error"] for m in still}
        print(f"warning: still not importable: {info['still_missing']}", file=sys.stderr)
    info["seconds"] = time.perf_counter() - t0
    if not missing:
        print(f"packages: {', '.join(modules)} import already; no bundle needed", flush=True)
    return info


def install_bundle(bundle: Path, site: Path) -> Path:
    """Unpack the tar.xz `bundle` into `site`, then prepend `site` to sys.path and to PYTHONPATH (inherited by
    every subprocess started afterwards). Returns `site`."""
    site.mkdir(parents=True, exist_ok=True)
    with tarfile.open(bundle, "r:xz") as tar:
        tar.extractall(site, filter="data")  # "data": no absolute paths, no links out of `site`
    activate_site(site)
    return site


def activate_site(site: Path) -> None:
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])


def _probe_code(modules: tuple[str, ...]) -> str:
    """A child script that imports each module by a plain import statement and prints what it found."""
    lines = ["import json, sys", "out = {}"]
    for name in modules:  # our own constant module names, never user input
        lines += ["try:", f"    import {name} as m",
                  f"    out[{name!r}] = {{'version': str(getattr(m, '__version__', '?')), "
                  f"'file': getattr(m, '__file__', None)}}",
                  "except Exception as e:", f"    out[{name!r}] = {{'error': f'{{type(e).__name__}}: {{e}}'}}"]
    return "\n".join([*lines, "print(json.dumps(out))"]) + "\n"


def import_probe(modules: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Import each module in a fresh child process (what the steps will see): {name: {version, file} or {error}}."""
    result = python_json(_probe_code(modules), [])
    if set(result) != set(modules):  # the probe itself failed: every module counts as missing, with its reason
        return {m: {"error": result.get("error", "not probed")} for m in modules}
    return result


def python_json(code: str, argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `code` in a child Python with this checkout on its path; its last stdout line is JSON."""
    proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, env=env or child_env(None),
                          capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": f"probe exited {proc.returncode}: {proc.stderr.strip()[-500:]}"}
    return json.loads(lines[-1])


def child_env(profile: Profile | None) -> dict[str, str]:
    """The environment of every step: this checkout first on PYTHONPATH (Ray's workers import seg and search
    from it too), unbuffered output (a killed step's log keeps its last lines), no GPU for the dry run."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    if profile is not None and profile.hide_gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


# ---------------------------------------------------------------------------------------------------------------
# Provenance: the machine, the versions, the commit
# ---------------------------------------------------------------------------------------------------------------
TORCH_PROBE = """
import json, platform, torch
cuda = torch.cuda.is_available()
print(json.dumps({
    "python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
    "cuda_available": cuda, "gpu_count": torch.cuda.device_count() if cuda else 0,
    "gpu_names": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
    "cudnn": torch.backends.cudnn.version() if cuda else None}))
"""


def probe_environment(profile: Profile) -> dict[str, Any]:
    """What the steps run on, as a child process sees it (the dry run hides the GPUs from its children)."""
    env = {"hostname": socket.gethostname(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
           "python_executable": sys.executable, **python_json(TORCH_PROBE, [], child_env(profile)),
           "nvidia_smi": nvidia_smi(), "git_commit": git_commit()}
    gpus = ", ".join(env.get("gpu_names") or []) or "no CUDA device visible"
    print(f"environment: {gpus}; torch {env.get('torch')}, python {env.get('python')}, git {env['git_commit']}",
          flush=True)
    return env


def nvidia_smi() -> list[str] | None:
    """`name, driver, memory` per GPU as nvidia-smi reports them; None without nvidia-smi."""
    try:
        proc = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip().splitlines() if proc.returncode == 0 else None


def git_commit() -> str | None:
    """HEAD with `+dirty` for modified tracked files; None where the working tree was copied without .git."""
    try:
        run = lambda *a: subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True, timeout=10,
                                        check=True).stdout.strip()
        return run("rev-parse", "HEAD") + ("+dirty" if run("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return None


# ---------------------------------------------------------------------------------------------------------------
# Running one step
# ---------------------------------------------------------------------------------------------------------------
def run_step(name: str, cmd: list[str], log: Path, timeout_s: float, env: dict[str, str],
             grace_s: float = STOP_GRACE_S) -> dict[str, Any]:
    """Run `cmd` from the repository root in its own process group, output to `log`. Past `timeout_s` the group
    gets SIGINT (pytest prints what it has, search.run stops Ray), then SIGKILL after `grace_s`. Returns the
    step's record: command, returncode, seconds, timed_out, budget_s, log (a name inside the output folder)."""
    record: dict[str, Any] = {"command": cmd, "budget_s": round(timeout_s, 1), "log": log.name}
    if timeout_s <= 0:
        print(f"[{name}] skipped: no time left in the check's budget", flush=True)
        return {**record, "returncode": None, "seconds": 0.0, "timed_out": True, "skipped": "no time left"}
    print(f"[{name}] {shlex.join(cmd[1:] if cmd[0] == sys.executable else cmd)}  (budget {timeout_s:.0f} s, "
          f"log {log.name})", flush=True)
    t0 = time.perf_counter()
    timed_out = False
    with log.open("w") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        # a session of its own: one killpg reaches pytest's, Ray's and the trials' processes too
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            rc = stop_group(proc, grace_s)
        reap_group(proc.pid, grace_s)  # whatever the step left behind (a Ray worker) must not share the next step
    seconds = time.perf_counter() - t0
    note = " TIMED OUT" if timed_out else ""
    print(f"[{name}] exit {rc} after {seconds:.1f} s{note}", flush=True)
    if rc != 0:
        print("    " + "\n    ".join(log.read_text(errors="replace").strip().splitlines()[-8:]), flush=True)
    return {**record, "returncode": rc, "seconds": seconds, "timed_out": timed_out}


def stop_group(proc: subprocess.Popen, grace_s: float) -> int:
    """SIGINT to the step's process group, SIGKILL if it is still running after `grace_s`; its return code."""
    for sig in (signal.SIGINT, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            return proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue
    proc.kill()  # the group is gone but the child is not (it left the group): never wait on it unkilled
    return proc.wait()


def reap_group(pgid: int, grace_s: float) -> None:
    """SIGKILL what is left of a finished step's process group and wait (up to `grace_s`) until it is gone."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)  # orphans are reaped by init; poll until they are


# ---------------------------------------------------------------------------------------------------------------
# Step 1: the CUDA smoke tests
# ---------------------------------------------------------------------------------------------------------------
def run_pytest(profile: Profile, out: Path, scratch: Path, timeout_s: float) -> dict[str, Any]:
    junit = scratch / "pytest.xml"
    junit.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "tests/test_gpu.py", f"--junitxml={junit}"]
    step = run_step("pytest_gpu", cmd, out / "pytest.log", timeout_s, child_env(profile))
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
           "--steps", str(profile.steps), "--warmup", str(profile.warmup), "--workers", "0", "--packing",
           "--synthetic", str(scratch / "throughput-voc"), "--synthetic-size", str(profile.synthetic_size),
           "--out", str(report)]
    step = run_step("throughput", cmd, out / "throughput.log", timeout_s, child_env(profile))
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
    from bench.search import derive_space  # needs pydantic: imported after the packages step

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
    cmd = [sys.executable, "-m", "search.run", str(space_file), "--name", name, "--no-dashboard",
           "--allow-missing-weights"]
    if profile.hide_gpus:
        cmd += ["--gpus", "0"]
    if profile.num_cpus:
        cmd += ["--num-cpus", str(profile.num_cpus)]
    step = run_step("search", cmd, out / "search.log", timeout_s, child_env(profile))
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
def new_summary(profile: Profile, argv: list[str], out: Path, scratch: Path, clock: Clock) -> dict[str, Any]:
    return {"check": "bench.gpu_check", "mode": profile.name, "command": ["python", "-m", "bench.gpu_check", *argv],
            "started_at": now_iso(), "finished_at": None, "ok": False, "time_budget_s": clock.total_s,
            "out": str(out), "scratch": str(scratch), "profile": asdict(profile), "steps": {}}


def now_iso() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def finish(summary: dict[str, Any], out: Path, clock: Clock) -> None:
    steps = summary["steps"].values()
    summary.update(finished_at=now_iso(), total_seconds=clock.elapsed(),
                   ok=bool(summary["steps"]) and "error" not in summary
                   and all(s["returncode"] == 0 and not s["timed_out"] for s in steps))
    write_summary(out, summary)


def write_summary(out: Path, summary: dict[str, Any]) -> Path:
    """summary.json, atomically (rewritten after every step, so a check killed from outside leaves what it did)."""
    from seg.atomic import atomic_write_text  # seg.atomic needs only the standard library

    return atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))


def print_report(summary: dict[str, Any], out: Path) -> None:
    env = summary.get("environment", {})
    print(f"\ngpu_check ({summary['mode']}): {', '.join(env.get('gpu_names') or []) or 'no GPU'}; torch "
          f"{env.get('torch')}, python {env.get('python')}, git {env.get('git_commit')}; "
          f"{summary['total_seconds']:.0f} s of {summary['time_budget_s']:.0f}")
    for name, s in summary["steps"].items():
        print(f"  {name:11s} exit {s['returncode']!s:5s} {s['seconds']:6.1f} s / {s['budget_s'] or 0:5.0f} s"
              f"{'  TIMED OUT' if s['timed_out'] else ''}  {headline(name, s.get('figures', {}))}")
    tp = summary["steps"].get("throughput", {}).get("figures", {}).get("images_per_s", {})
    for arch, by_batch in tp.items():
        for batch, loops in by_batch.items():
            print(f"    {arch:13s} b{batch:<3s} " + "  ".join(
                f"{loop.split(' (')[0]}: {'-' if v is None else f'{v:.0f}'}" for loop, v in loops.items()))
    print(f"summary: {out / 'summary.json'}{'' if summary['ok'] else '  (NOT all steps passed)'}")


def headline(step: str, f: dict[str, Any]) -> str:
    if "error" in f:
        return f["error"]
    if step == "pytest_gpu":
        return f"{f['passed']} passed, {f['failed']} failed, {f['errors']} errors, {f['skipped']} skipped"
    if step == "throughput":
        n = sum(len(b) for a in f["images_per_s"].values() for b in a.values())
        return f"{n} measurements{'' if f['complete'] else ' (incomplete)'}, {len(f['errors'])} failed"
    if step == "search":
        scored = [t for t in f["trials"] if t.get("best_val_miou") is not None]
        best = max(scored, key=lambda t: t["best_val_miou"], default=None)
        return f"{f['status_counts']}" + (f"; best val mIoU {best['best_val_miou']:.4f} ({best['name']})"
                                          if best else "")
    return ""


if __name__ == "__main__":
    sys.exit(main())
