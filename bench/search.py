"""Search-level benchmark: the paper's seven trials end to end through `search.run`.

    python -m bench.search                                  # CPU: 64 px, epochs x0.1; CUDA: the full 224 px run
    python -m bench.search --image-size 224 --epochs-scale 1 --out results/bench/search.json

`spaces/paper.yaml` (the seven fixed trials) through `python -m search.run` in a subprocess, Ray start, data
preparation and compilation included, timed from launch to exit. Beside it, an *estimate* of the paper-style
reference loop running the same trials one after another: training images/s and evaluation images/s of that loop
are measured on a few batches per architecture (`bench.throughput.reference_loop`, and `reference_eval` below),
then multiplied out over each trial's epochs (train split every epoch, val split every epoch, test split once at
the end, as the paper did). Epochs are scaled and the image size set by writing a derived space YAML (a copy of
paper.yaml, no includes) next to the output JSON. Real VOC2007 is used when found (`--data-root`), else synthetic
images of VOC's size and split counts.

What a search saves (ASHA, TPE, at equal compute, on real learning curves) is `python -m bench.efficiency`'s: the
ASHA-against-unpruned run of quick.yaml that used to be here could not show a saving (its target, the best fixed
trial, was reached by the second searched trial either way).

The parts: bench.derive (the derived space files), bench.reference (the reference loop's rates and estimate),
bench.launch (the search.run command line).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench.derive import derive_space
from bench.launch import search_run_command
from bench.reference import measure_reference_rates, model_key, reference_estimate
from seg.atomic import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VOC = REPO.parent / "shared" / "data"
PAPER_SPACE = REPO / "spaces" / "paper.yaml"
VOC_SPLIT_COUNTS = (209, 213, 210)  # train / val / test of the VOC2007 subset (CALIBRATION.md)
SYNTHETIC_SIZE = 400  # px, about a VOC image's long side
CPU_DEFAULTS = {"image_size": 64, "epochs_scale": 0.1}  # the full paper run takes hours on a 2-core CPU
CUDA_DEFAULTS = {"image_size": 224, "epochs_scale": 1.0}


# ---------------------------------------------------------------------------------------------------------------
# Running search.run
# ---------------------------------------------------------------------------------------------------------------
def run_search(space_file: Path, name: str, results: Path, args: argparse.Namespace) -> dict[str, Any]:
    """`python -m search.run` in a subprocess from the repository root; wall time from launch to exit."""
    cmd = search_run_command(space_file, name=name, results=results, allow_missing_weights=True, gpus=args.gpus,
                             num_cpus=args.num_cpus)
    log = results / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"  $ {' '.join(cmd[1:])}   (log: {log})", flush=True)
    t0 = time.perf_counter()
    with log.open("w") as f:
        rc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
    wall = time.perf_counter() - t0
    board_path = results / name / "leaderboard.parquet"
    board = pd.read_parquet(board_path) if board_path.is_file() else None
    if rc != 0:
        tail = log.read_text().strip().splitlines()[-5:]
        print(f"  search.run exited {rc}:\n    " + "\n    ".join(tail), file=sys.stderr)
    return {"name": name, "experiment": str(results / name), "space_file": str(space_file), "log": str(log),
            "command": cmd[1:], "returncode": rc, "wall_seconds": wall, "board": board}


def paper_data(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(data section, defaults update, description): real VOC2007 when found, else synthetic VOC-sized data."""
    root = Path(args.data_root).resolve()
    if (root / "VOCdevkit" / "VOC2007" / "JPEGImages").is_dir():
        return {"dataset": "voc2007", "root": str(root)}, {}, f"VOC2007 at {root}"
    synth = (Path(args.results) / "synthetic-voc").resolve()
    return ({"dataset": "synthetic", "root": str(synth)},
            {"synthetic_counts": list(VOC_SPLIT_COUNTS), "synthetic_size": SYNTHETIC_SIZE},
            f"synthetic, VOC-sized ({SYNTHETIC_SIZE} px, {VOC_SPLIT_COUNTS} images) at {synth}")


def split_sizes_of(cfg) -> dict[str, int]:
    from seg.data.voc import read_split_ids

    return {s: len(read_split_ids(cfg.data_root, cfg.year, getattr(cfg, f"{s}_split")))
            for s in ("train", "val", "test") if getattr(cfg, f"{s}_split")}


def bench_paper(args: argparse.Namespace, stamp: str, device: torch.device) -> dict[str, Any]:
    from search.space import load_space

    results, out_dir = Path(args.results), Path(args.out).parent
    name = f"bench-paper-{stamp}"
    data, defaults, data_desc = paper_data(args)
    space_file = derive_space(args.paper_space, out_dir / f"{name}.yaml", name=name, epochs_scale=args.epochs_scale,
                              image_size=args.image_size, data=data, defaults=defaults)
    space = load_space(space_file)
    reduced = args.image_size != 224 or args.epochs_scale != 1.0
    print(f"\n[paper] {len(space.fixed)} fixed trials at {args.image_size} px, epochs x{args.epochs_scale:g} "
          f"({sum(c.epochs for c in space.fixed.values())} epochs in all); data: {data_desc}")
    if data["dataset"] == "synthetic":
        from seg.data.synthetic import make_synthetic_voc

        make_synthetic_voc(data["root"], counts=VOC_SPLIT_COUNTS, size=SYNTHETIC_SIZE, seed=0)
    out: dict[str, Any] = {
        "space": str(args.paper_space), "derived_space": str(space_file), "data": data_desc,
        "image_size": args.image_size, "epochs_scale": args.epochs_scale, "reduced": reduced,
        "note": ("REDUCED size for this machine: not the paper's 224 px / full epochs" if reduced else
                 "full size: 224 px, the paper's epochs"),
        "split_sizes": split_sizes_of(space.defaults.resolved()),
    }
    ref_trials = {n: {"key": model_key(c), "epochs": c.epochs, "batch_size": c.batch_size}
                  for n, c in space.fixed.items()}
    if not args.no_reference:  # measured before the search starts, so the two never share the machine
        print(f"  measuring the reference loop ({args.ref_steps} timed batches after {args.ref_warmup}, "
              f"{args.ref_workers} DataLoader workers) per model")
        rates = measure_reference_rates(space, args.ref_workers, args.ref_steps, args.ref_warmup, device)
    run = run_search(space_file, name, results, args)
    board = run.pop("board")
    rows = []
    if board is not None:
        by_name = board.set_index("name")
        for n, cfg in space.fixed.items():
            r = by_name.loc[n] if n in by_name.index else None
            rows.append({"name": n, "arch": cfg.arch, "epochs": cfg.epochs,
                         "status": None if r is None else r["status"],
                         "epochs_run": None if r is None else _num(r["epochs_run"]),
                         "best_val_miou": None if r is None else _num(r["best_val_miou"]),
                         "test_miou": None if r is None else _num(r["test_miou"]),
                         "wall_seconds": None if r is None else _num(r["wall_seconds"]),
                         "images_per_s": None if r is None else _num(r["images_per_s"]),
                         "error": None if r is None or pd.isna(r["error"]) else str(r["error"])[:200]})
    completed = [r["name"] for r in rows if r["status"] == "completed"]
    out.update(run, trials=rows, n_completed=len(completed),
               n_failed=sum(r["status"] == "failed" for r in rows),
               failed=[r["name"] for r in rows if r["status"] != "completed"],
               segtune_epochs=sum(int(r["epochs_run"] or 0) for r in rows),
               segtune_trial_seconds=sum(float(r["wall_seconds"] or 0) for r in rows))
    if not args.no_reference:
        per_trial = reference_estimate(ref_trials, rates, out["split_sizes"])
        total_done = sum(per_trial[n]["seconds"] for n in completed)
        out["reference"] = {
            "estimate": True,
            "method": ("ESTIMATE, not a run: the paper-style loop's train and eval images/s measured on "
                       f"{args.ref_steps} batches per model ({args.ref_workers} DataLoader workers, fp32, PIL decode "
                       "+ resize per item), times each trial's images: epochs x train split (last partial batch "
                       "dropped) + epochs x val split + the test split once; no process or Ray start"),
            "rates": rates, "trials": per_trial,
            "total_seconds_all_trials": sum(t["seconds"] for t in per_trial.values()),
            "total_seconds_completed_trials": total_done,
        }
        out["speedup_vs_reference_completed_trials"] = total_done / run["wall_seconds"] if completed else None
    return out


def _num(v: Any) -> float | int | None:
    """A leaderboard cell as a JSON number (None for a missing value)."""
    if v is None or pd.isna(v):
        return None
    return int(v) if isinstance(v, (int, np.integer)) else float(v)


# ---------------------------------------------------------------------------------------------------------------
# Provenance, the table, main
# ---------------------------------------------------------------------------------------------------------------
def provenance(device: torch.device) -> dict[str, Any]:
    from search.provenance import git_commit, versions

    name = (torch.cuda.get_device_name() if device.type == "cuda"
            else f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    v = versions()
    return {"benchmark": "bench.search", "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "device": name, "hostname": socket.gethostname(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "ray": v.get("ray"), "optuna": v.get("optuna"), "python": v.get("python"),
            "git_commit": git_commit(), "command": ["python", "-m", "bench.search", *sys.argv[1:]],
            "load_average_at_start": list(os.getloadavg())}  # other work on the machine skews every timing


def format_table(report: dict[str, Any]) -> str:
    lines = [f"bench.search  {report['date']}  {report['device']}  torch {report['torch']}  ray {report['ray']}  "
             f"git {report['git_commit']}"]
    if report.get("load_average_at_start"):
        lines.append(f"load average (1/5/15 min) at start {_loads(report['load_average_at_start'])}, at end "
                     f"{_loads(report.get('load_average_at_end'))}: timings are shared with whatever else ran")
    paper = report.get("paper")
    if paper:
        lines += ["", f"paper.yaml end to end: {paper['image_size']} px, epochs x{paper['epochs_scale']:g}, "
                  f"{paper['data']}" + ("   [REDUCED size]" if paper["reduced"] else "")]
        lines.append(f"  {'trial':9s} {'arch':13s} {'epochs':>6s} {'status':10s} {'val mIoU':>8s} {'seconds':>8s}"
                     + ("  reference est. s" if "reference" in paper else ""))
        ref = paper.get("reference", {}).get("trials", {})
        for r in paper["trials"]:
            miou = f"{r['best_val_miou']:.4f}" if r["best_val_miou"] is not None else "-"
            secs = f"{r['wall_seconds']:.1f}" if r["wall_seconds"] is not None else "-"
            lines.append(f"  {r['name']:9s} {r['arch']:13s} {r['epochs']:6d} {str(r['status']):10s} {miou:>8s} "
                         f"{secs:>8s}" + (f"  {ref[r['name']]['seconds']:16.1f}" if r["name"] in ref else ""))
        lines.append(f"  segtune (search.run, Ray start included): {paper['wall_seconds']:.1f} s wall, "
                     f"{paper['n_completed']} completed, {paper['n_failed']} failed {paper['failed']}")
        if "reference" in paper:
            ref = paper["reference"]
            lines.append(f"  reference loop, one trial after another (ESTIMATE): "
                         f"{ref['total_seconds_completed_trials']:.1f} s for the completed trials, "
                         f"{ref['total_seconds_all_trials']:.1f} s for all seven; speedup "
                         f"{paper['speedup_vs_reference_completed_trials'] or float('nan'):.2f}x")
    return "\n".join(lines)


def _loads(v: list[float] | None) -> str:
    return "-" if not v else "/".join(f"{x:.1f}" for x in v)


def parse_args(argv: list[str] | None, cuda: bool) -> argparse.Namespace:
    d = CUDA_DEFAULTS if cuda else CPU_DEFAULTS
    ap = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/bench/search.json", help="the JSON report (written atomically)")
    ap.add_argument("--results", default=None, help="where the experiments go (default: the --out folder)")
    ap.add_argument("--image-size", type=int, default=d["image_size"],
                    help=f"paper run's image size (default here: {d['image_size']}; 224 on CUDA, 64 on CPU)")
    ap.add_argument("--epochs-scale", type=float, default=d["epochs_scale"],
                    help=f"multiply every paper trial's epochs (default here: {d['epochs_scale']:g}; 1 on CUDA)")
    ap.add_argument("--data-root", default=str(DEFAULT_VOC), help="VOC2007 root; synthetic data when absent")
    ap.add_argument("--paper-space", default=str(PAPER_SPACE))
    ap.add_argument("--no-reference", action="store_true", help="skip measuring the paper-style loop")
    ap.add_argument("--ref-steps", type=int, default=20 if cuda else 3, help="timed reference batches per model")
    ap.add_argument("--ref-warmup", type=int, default=3 if cuda else 1)
    ap.add_argument("--ref-workers", type=int, default=0, help="reference DataLoader workers (paper-style: 0)")
    ap.add_argument("--gpus", type=float, default=None if cuda else 0.0,
                    help="search.run --gpus (default: the space's on CUDA, 0 on CPU)")
    ap.add_argument("--num-cpus", type=int, default=None, help="search.run --num-cpus (default: all)")
    args = ap.parse_args(argv)
    if args.results is None:
        args.results = str(Path(args.out).parent)
    if args.epochs_scale <= 0:
        ap.error("--epochs-scale must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    cuda = torch.cuda.is_available()
    args = parse_args(argv, cuda)
    device = torch.device("cuda" if cuda else "cpu")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    report = provenance(device)
    report["defaults"] = "CUDA: 224 px, full epochs" if cuda else (
        f"CPU: reduced to {CPU_DEFAULTS['image_size']} px and epochs x{CPU_DEFAULTS['epochs_scale']:g} "
        f"(the full paper run takes hours on this CPU)")
    print(f"device: {report['device']}; torch {report['torch']}, ray {report['ray']}; {report['defaults']}")
    report["paper"] = bench_paper(args, stamp, device)

    out = Path(args.out)
    report["load_average_at_end"] = list(os.getloadavg())
    atomic_write_text(out, json.dumps(report, indent=2, default=str))
    print("\n" + format_table(report))
    print(f"\nwrote {out}")
    return 1 if report["paper"].get("returncode") else 0


if __name__ == "__main__":
    sys.exit(main())
