"""Scale benchmark: what segtune's driver costs per finished trial as a search grows from 100 to 10,000 trials.

    python -m bench.scale                                 # real searches of 100 and 1,000; parts at 100..10,000
    python -m bench.scale --sizes 100 --parts-sizes 100   # the smoke size CI runs (tests/test_scale.py)
    python -m bench.scale --storage                       # + a real tiny training search: bytes per trial

1. Real searches (`--sizes`): spaces/full.yaml's TPE + ASHA (its params, sampler and reduction factor; epochs
   scaled to 9..27 with rungs at 1, 3, 9, 27, so most trials stop after an epoch or three, as on a cluster) through
   `python -m search.run --synthetic-trials`: a local Ray with 64 GPUs declared (logical: no GPU is used), each trial
   asking for 0.25 GPU, and a trainable that trains no model but reports made-up learning curves with a checkpoint
   per epoch (search/tune/synthetic.py), so the whole driver runs for real: Tune, the Optuna searcher, ASHA, the
   recorder, the tables, the progress table, the report. The driver writes its own cost per pass run into
   experiment.json (`driver_cost`, search/tune/cost.py): CPU seconds split into segtune's (records, tables,
   progress), the searcher's (Optuna TPE), the scheduler's (ASHA) and the rest (Tune's own loop and Ray's threads
   in the driver process: the anchor), plus the table writer's wall time and the driver's peak memory.
2. Parts (`--parts-sizes`): segtune's own work driven directly at sizes real Tune cannot reach here in reasonable
   time: N synthetic final records written as the recorder writes them (a record write at the start, after every
   epoch and at the end), the table writer told of each (its compaction clock simulating `--rate` finished trials
   a second), then the report built from the folder. Per trial: records and tables CPU seconds; per size: the
   report's bytes and build time.
3. Storage (`--storage`): a real tiny training search (two fixed and four searched trials, ASHA) and the bytes its
   experiment folder holds per finished trial.

Results: JSON (`--out`, default bench/results/scale.json) and the README's growth table (`--table`).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.launch import search_run_command
from seg.atomic import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
FULL_SPACE = REPO / "spaces" / "full.yaml"
DEFAULT_OUT = REPO / "bench" / "results" / "scale.json"
SIZES = (100, 1000)  # real Tune searches (10,000 does not fit in ~30 minutes on a loaded 2-core machine)
PARTS_SIZES = (100, 1000, 10000)
DECLARED_GPUS = 64
GPUS_PER_TRIAL = 0.25  # 4 trials per GPU, as full.yaml
CONCURRENT = 16  # trials at once here (each is a Ray worker process; a 64-GPU cluster runs 256)
EPOCHS = (9, 27)  # searched epochs, scaled from full.yaml's 20..300
RUNGS = {"grace_period": 1, "reduction_factor": 3, "max_epochs": 27}  # ASHA rungs at 1, 3, 9, 27
RATE = 4.0  # finished trials a second the parts' compaction clock assumes (64 GPUs, ASHA, ~1-minute epochs)
FIXED = {"baseline": {}, "4a": {"lr": 5.0e-4}, "5a": {"arch": "fcn_dilated", "activation": "tanh"},
         "5c": {"arch": "unet", "lr": 1.0e-4}}  # the paper's names, epochs scaled like the searched ones


# ---------------------------------------------------------------------------------------------------------------
# 1. Real searches of synthetic trials
# ---------------------------------------------------------------------------------------------------------------
def derive_space(size: int, out: Path, concurrent: int = CONCURRENT) -> Path:
    """full.yaml with its searched params, sampler and ASHA factor; synthetic trials, scaled epochs, no seeds."""
    space = yaml.safe_load(FULL_SPACE.read_text())
    space.update(name=f"scale-{size}", description=f"bench.scale: {size} synthetic trials (full.yaml's search)")
    space["data"] = {"dataset": "synthetic", "root": str(out.parent / "data"), "image_size": 64}
    space["defaults"] = {**space["defaults"], "epochs": EPOCHS[0], "num_masks": 0}
    space["params"] = {**space["params"], "epochs": {"int": list(EPOCHS)}}
    space["fixed_trials"] = FIXED
    space["budget"] = {"num_samples": size, "max_concurrent": concurrent, "max_failures": 0}
    space["scheduler"] = RUNGS
    space["resources"] = {"cpus": 1, "gpus": GPUS_PER_TRIAL}
    space.pop("seeds", None)
    space["storage"] = str(out.parent / "results")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, yaml.safe_dump(space, sort_keys=False))
    return out


def run_search(size: int, work: Path, concurrent: int, timeout: float) -> dict[str, Any]:
    """One real search of `size` synthetic trials; its driver's cost as experiment.json recorded it."""
    space = derive_space(size, work / f"scale-{size}.yaml", concurrent)
    cmd = search_run_command(space, num_cpus=concurrent,
                             extra=("--synthetic-trials", "--num-gpus", str(DECLARED_GPUS), "--fresh"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "RAY_DEDUP_LOGS": "0"}
    log = work / f"scale-{size}.log"
    start = time.perf_counter()
    with log.open("w") as f:
        try:
            rc = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    wall = time.perf_counter() - start
    exp = next(iter(sorted((work / "results").glob(f"scale-{size}*/experiment.json"))), None)
    if exp is None:
        return {"size": size, "rc": rc, "wall_s": round(wall, 1), "log": str(log), "error": "no experiment.json"}
    return summarise_search(size, json.loads(exp.read_text()), exp.parent, rc, wall, log)


def summarise_search(size: int, meta: dict[str, Any], exp: Path, rc: Any, wall: float, log: Path) -> dict[str, Any]:
    """Per finished trial of the searched pass: driver CPU seconds by part, the table writer's wall time."""
    cost = [c for c in meta.get("driver_cost", []) if c["pass_name"] == "search"]
    n = sum(c["trials_finished"] for c in cost) or 1
    parts: dict[str, float] = {}
    for c in cost:
        for k, v in c["parts_cpu_s"].items():
            parts[k] = parts.get(k, 0.0) + v
    total = lambda key: sum(c[key] for c in cost)  # noqa: E731
    report = exp / "report.html"
    return {
        "size": size, "rc": rc, "command_wall_s": round(wall, 1), "trials_finished": n,
        "pass_wall_s": round(total("wall_s"), 1), "trials_per_s": round(n / max(total("wall_s"), 1e-9), 2),
        "per_trial_cpu_s": {"driver": total("driver_cpu_s") / n, "segtune": total("segtune_cpu_s") / n,
                            **{k: v / n for k, v in sorted(parts.items())}, "tune_own": total("tune_own_cpu_s") / n},
        "tables_wall_s_per_trial": total("tables_wall_s") / n,
        "driver_max_rss_mb": max(c["driver_max_rss_mb"] for c in cost) if cost else None,
        "report_mb": round(report.stat().st_size / 1e6, 2) if report.is_file() else None,
        "experiment": str(exp), "log": str(log),
    }


# ---------------------------------------------------------------------------------------------------------------
# 2. segtune's parts, driven directly
# ---------------------------------------------------------------------------------------------------------------
def sample_fields(rng: random.Random) -> dict[str, Any]:
    """A searched trial's TrainConfig fields: full.yaml's defaults with a few of its params drawn at random."""
    from seg.config import TrainConfig

    arch = rng.choice(["fcn", "fcn_dilated", "resnet34_fcn", "unet"])
    return {**TrainConfig().model_dump(mode="json"), "arch": arch, "lr": 10 ** rng.uniform(-4, -2.3),
            "weight_decay": 10 ** rng.uniform(-6, -2), "batch_size": rng.choice([8, 16, 32]),
            "activation": rng.choice(["relu", "tanh", "gelu", "leaky_relu", "silu"]),
            "epochs": rng.randint(*EPOCHS), "width": rng.choice([0.25, 0.5, 1.0]) if arch == "unet" else 1.0}


def asha_epochs(rng: random.Random, epochs: int) -> int:
    """Epochs an ASHA trial runs (rungs 1, 3, 9, 27; a third goes on at each)."""
    run = 1
    while run < epochs and rng.random() < 1 / RUNGS["reduction_factor"]:
        run = min(epochs, run * RUNGS["reduction_factor"])
    return run


def fabricate(exp: Path, size: int, seed: int = 0) -> list[dict[str, Any]]:
    """`size` synthetic final records (1% failed) and an experiment.json, as a search of that size leaves them."""
    from search.synthetic import synthetic_record

    rng = random.Random(seed)
    exp.mkdir(parents=True, exist_ok=True)
    atomic_write_text(exp / "experiment.json", json.dumps({"name": exp.name, "dataset": "synthetic", "image_size": 64}))
    recs = []
    for i in range(size):
        fields = sample_fields(rng)
        recs.append(synthetic_record(i, fields, asha_epochs(rng, fields["epochs"]), failed=rng.random() < 0.01))
    return recs


def drive_parts(size: int, work: Path, rate: float) -> dict[str, Any]:
    """Records and tables per trial as the driver does them, then the report, all at `size` trials."""
    from search.fragments import TableWriter
    from search.records import describe_end, write_record
    from search.report import write_report

    exp = work / f"parts-{size}"
    shutil.rmtree(exp, ignore_errors=True)
    recs = fabricate(exp, size)
    finished = [0]
    tables = TableWriter(exp, clock=lambda: finished[0] / rate)
    records_cpu = tables_cpu = 0.0
    for rec in recs:
        t = time.thread_time()
        hist = rec["history"]
        for k in range(len(hist) + 1):  # start, then each epoch's result (its checkpoint rides along)
            write_record(exp, {**rec, "history": hist[:k], "status": "running"})
        write_record(exp, rec)
        describe_end(rec)
        records_cpu += time.thread_time() - t
        t = time.thread_time()
        tables.trial_finished(rec)
        finished[0] += 1
        tables_cpu += time.thread_time() - t
    t = time.thread_time()
    tables.close()
    close_cpu = time.thread_time() - t
    t, w = time.thread_time(), time.perf_counter()
    report = write_report(exp)
    return {"size": size, "records_cpu_s_per_trial": records_cpu / size, "tables_cpu_s_per_trial": tables_cpu / size,
            "segtune_cpu_s_per_trial": (records_cpu + tables_cpu) / size, "tables_wall_s_per_trial": tables.seconds / size,
            "pass_end_compaction_cpu_s": round(close_cpu, 3), "report_build_s": round(time.perf_counter() - w, 2),
            "report_cpu_s": round(time.thread_time() - t, 2), "report_mb": round(report.stat().st_size / 1e6, 2),
            "rate_assumed_per_s": rate, "report": str(report)}


# ---------------------------------------------------------------------------------------------------------------
# 3. Storage of a real tiny training search
# ---------------------------------------------------------------------------------------------------------------
TINY_SPACE = """name: scale-storage
description: "bench.scale: bytes per finished trial of a real tiny training search"
data: {{dataset: synthetic, root: {root}, image_size: 32}}
defaults: {{synthetic_counts: [32, 16, 16], synthetic_size: 48, arch: fcn, width: 0.25, epochs: 3, batch_size: 8,
           num_masks: 4, test_split: test}}
params: {{lr: {{loguniform: [1.0e-4, 1.0e-2]}}, arch: {{choice: [fcn, unet]}}}}
fixed_trials: {{baseline: {{}}, small_lr: {{lr: 3.0e-4}}}}
metric: val_miou
budget: {{num_samples: 4, max_concurrent: 2, max_failures: 0}}
scheduler: {{grace_period: 1, reduction_factor: 2}}
sampler: {{n_startup_trials: 2}}
resources: {{cpus: 1, gpus: 0}}
storage: {results}
"""


def folder_bytes(root: Path) -> dict[str, int]:
    """Bytes under `root`, by kind: Tune checkpoints, masks, records, tables, the rest."""
    out = {"checkpoints": 0, "masks": 0, "records": 0, "tables": 0, "other": 0}
    for p in root.rglob("*"):
        if not p.is_file():
            continue
        kind = ("checkpoints" if "checkpoint_" in str(p) else "masks" if p.suffix == ".npz" else
                "records" if p.parent.name == "trials" else "tables" if p.suffix == ".parquet" else "other")
        out[kind] += p.stat().st_size
    return out


def measure_storage(work: Path, timeout: float) -> dict[str, Any]:
    space = work / "storage.yaml"
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(space, TINY_SPACE.format(root=work / "data", results=work / "results"))
    cmd = search_run_command(space, num_cpus=2, extra=("--fresh",))
    with (work / "storage.log").open("w") as f:
        rc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
    exp = next(iter(sorted((work / "results").glob("scale-storage*"))))
    board = json.loads((exp / "experiment.json").read_text())
    import pandas as pd

    statuses = pd.read_parquet(exp / "leaderboard.parquet")["status"].value_counts().to_dict()
    n = sum(v for k, v in statuses.items() if k != "running")
    sizes = folder_bytes(exp)
    return {"rc": rc, "trials_finished": n, "statuses": statuses, "bytes": sizes,
            "bytes_per_finished_trial": sum(sizes.values()) // max(n, 1),
            "checkpoint_bytes_per_finished_trial": sizes["checkpoints"] // max(n, 1),
            "checkpoint_bytes_per_finished_trial_before": unslimmed_estimate(exp) // max(n, 1),
            "experiment": str(exp), "space_file": str(space), "name": board.get("name")}


def unslimmed_estimate(exp: Path) -> int:
    """What the kept checkpoints would weigh without slimming (as before issue 17): two per trial, each its
    Trainer state plus the model and Adam's two moments (3 x the weights, in the resume file)."""
    import torch

    total = 0
    from search.tune.layout import checkpoint_state_files

    for p in checkpoint_state_files(exp):
        weights = torch.load(p, weights_only=True)["best_state"]
        total += 2 * (p.stat().st_size + 3 * sum(t.numel() * t.element_size() for t in weights.values()))
    return total


# ---------------------------------------------------------------------------------------------------------------
# The table, main
# ---------------------------------------------------------------------------------------------------------------
def ms(x: float | None) -> str:
    return "-" if x is None else f"{1000 * x:.1f}"


def format_table(report: dict[str, Any]) -> str:
    lines = ["| trials | mode | trials/s | driver CPU ms/trial | Tune's own (anchor) | searcher (TPE) | ASHA | "
             "segtune (records + tables + progress) | table write ms/trial (wall) | driver peak MB | report MB | "
             "report build s |", "|" + "---|" * 12]
    for r in report.get("searches", []):
        p = r.get("per_trial_cpu_s", {})
        seg = f"{ms(p.get('segtune'))} ({ms(p.get('records'))} + {ms(p.get('tables'))} + {ms(p.get('progress'))})"
        lines.append(f"| {r['size']:,} | real Tune | {r.get('trials_per_s', '-')} | {ms(p.get('driver'))} | "
                     f"{ms(p.get('tune_own'))} | {ms(p.get('searcher'))} | {ms(p.get('scheduler'))} | {seg} | "
                     f"{ms(r.get('tables_wall_s_per_trial'))} | {r.get('driver_max_rss_mb', '-')} | "
                     f"{r.get('report_mb', '-')} | - |")
    for r in report.get("parts", []):
        seg = (f"{ms(r['segtune_cpu_s_per_trial'])} ({ms(r['records_cpu_s_per_trial'])} + "
               f"{ms(r['tables_cpu_s_per_trial'])} + -)")
        lines.append(f"| {r['size']:,} | parts | - | - | - | - | - | {seg} | {ms(r['tables_wall_s_per_trial'])} | "
                     f"- | {r['report_mb']} | {r['report_build_s']} |")
    return "\n".join(lines)


def keep_unmeasured(old: dict[str, Any], new: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    measured = {"searches": bool(args.sizes), "parts": bool(args.parts_sizes), "storage": args.storage}
    for key, now in measured.items():
        if not now and key in old:
            new[key] = old[key]
    new["commands"] = [*old.get("commands", [old.get("command")]), new["command"]]
    return new


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=list(SIZES), help="real synthetic searches (trials)")
    ap.add_argument("--parts-sizes", type=int, nargs="*", default=list(PARTS_SIZES),
                    help="segtune's records, tables and report driven directly at these sizes")
    ap.add_argument("--storage", action="store_true", help="also a real tiny training search: bytes per trial")
    ap.add_argument("--concurrent", type=int, default=CONCURRENT, help="trials at once in the real searches")
    ap.add_argument("--rate", type=float, default=RATE, help="finished trials/s the parts' compaction clock assumes")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per real search")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temporary one)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--table", action="store_true", help="print the README table of --out and exit")
    ap.add_argument("--keep", action="store_true",
                    help="keep what --out already holds for the parts this run does not measure (real searches, "
                         "parts, storage), so they can be measured by separate commands")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        print(format_table(json.loads(args.out.read_text())))
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="segtune-scale-"))
    report: dict[str, Any] = {"benchmark": "bench.scale", "command": ["python", "-m", "bench.scale", *(argv or sys.argv[1:])],
                              "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                              "cpu_count": os.cpu_count(), "load_average_at_start": list(os.getloadavg()),
                              "declared_gpus": DECLARED_GPUS, "gpus_per_trial": GPUS_PER_TRIAL,
                              "concurrent": args.concurrent, "work": str(work), "searches": [], "parts": []}
    for size in args.sizes:
        report["searches"].append(run_search(size, work, args.concurrent, args.timeout))
        print(json.dumps(report["searches"][-1]), flush=True)
    for size in args.parts_sizes:
        report["parts"].append(drive_parts(size, work, args.rate))
        print(json.dumps(report["parts"][-1]), flush=True)
    if args.storage:
        report["storage"] = measure_storage(work / "storage", args.timeout)
        print(json.dumps(report["storage"]), flush=True)
    report["load_average_at_end"] = list(os.getloadavg())
    if args.keep and args.out.is_file():
        report = keep_unmeasured(json.loads(args.out.read_text()), report, args)
    report["bench_max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=1))
    print(format_table(report))
    print(f"\n-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
