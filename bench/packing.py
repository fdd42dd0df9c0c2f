"""How to pack CPU trials: trials at once x threads each, in training epochs per hour at 64 px; and each
architecture's epoch time at 64 px.

    python -m bench.packing                                   # fcn: 1 trial x 2 threads against 2 x 1, alternated
    python -m bench.packing --layouts 1x2 2x1 --repeats 2 --epochs 3 --arch fcn --out bench/results/packing.json
    python -m bench.packing --epoch-times --archs fcn unet:0.5 unet:0.25   # one 1-thread trial each, in turn

Each trial is a separate process that builds `seg.train.Trainer` on real VOC2007 (64 px, the CPU spaces' size)
and runs `--epochs` epochs (training + validation, + test at a new best, as a search trial does) with
`torch.set_num_threads(threads)`, as search.tune.trainable sets it from the space's `resources.cpus`. The layouts
alternate (A B A B ...) so that the load of a shared machine hits them alike; the JSON records the load average.
Epochs per hour = all trials' epochs after the first (start-up and first-epoch warm-up excluded) over the
wall time they took together.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VOC = REPO.parent / "shared" / "data"


def trial(spec: str, threads: int, epochs: int, data_root: str) -> dict[str, Any]:
    """One trial in this process: per-epoch start/end times after start-up (run in a child by `layout`)."""
    import torch

    from seg.config import make_config
    from seg.train import Trainer

    torch.set_num_threads(threads)
    arch, _, width = spec.partition(":")
    fields = dict(arch=arch, data_root=data_root, image_size=64, batch_size=16, epochs=epochs, device="cpu",
                  num_masks=0, **({"width": float(width)} if width else {}))
    if arch == "resnet34_fcn":
        fields["skips"] = True
    if arch.startswith("smp_"):
        fields["encoder"] = "resnet18"
    t = Trainer(make_config(fields).resolved())
    marks = [time.time()]
    for m in t.epochs():
        marks.append(time.time())
    return {"marks": marks, "levers": t.levers.describe(), "train_images_per_s": m["images_per_s"]}


def layout(spec: str, trials: int, threads: int, epochs: int, data_root: str) -> dict[str, Any]:
    code = ("import json; from bench.packing import trial; "
            f"print(json.dumps(trial({spec!r}, {threads}, {epochs}, {data_root!r})))")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
             for _ in range(trials)]
    runs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    start = min(r["marks"][1] for r in runs)  # after every trial's first epoch
    end = max(r["marks"][-1] for r in runs)
    counted = sum(len(r["marks"]) - 2 for r in runs)
    epoch_s = [b - a for r in runs for a, b in zip(r["marks"][1:], r["marks"][2:])]
    return {"arch": spec, "trials": trials, "threads": threads, "epochs_per_hour": 3600 * counted / (end - start),
            "median_epoch_s": statistics.median(epoch_s), "epoch_s": epoch_s,
            "startup_and_first_epoch_s": [r["marks"][1] - r["marks"][0] for r in runs],
            "levers": runs[0]["levers"], "loadavg": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.packing", description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="fcn", help="arch or arch:width of the packing comparison")
    ap.add_argument("--layouts", nargs="+", default=["1x2", "2x1"], help="TRIALSxTHREADS")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3, help="per trial; the first is start-up and not counted")
    ap.add_argument("--epoch-times", action="store_true", help="instead: each arch alone, 1 thread")
    ap.add_argument("--archs", nargs="+", default=["fcn", "fcn_dilated", "resnet34_fcn", "unet:0.5", "unet:0.25",
                                                   "smp_unet"])
    ap.add_argument("--data-root", default=str(DEFAULT_VOC))
    ap.add_argument("--out", default="results/bench/packing.json")
    args = ap.parse_args(argv)
    report: dict[str, Any] = {"command": " ".join(sys.argv), "cpus": os.cpu_count(), "image_size": 64,
                              "loadavg_start": os.getloadavg(), "runs": []}
    plan = ([(a, 1, 1) for a in args.archs] if args.epoch_times else
            [(args.arch, *map(int, lay.split("x"))) for _ in range(args.repeats) for lay in args.layouts])
    for spec, trials, threads in plan:
        r = layout(spec, trials, threads, args.epochs, args.data_root)
        report["runs"].append(r)
        print(f"{spec:12s} {trials} trial(s) x {threads} thread(s): {r['epochs_per_hour']:7.0f} epochs/h, "
              f"median epoch {r['median_epoch_s']:.1f} s, load {r['loadavg'][0]:.1f}", flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
    if not args.epoch_times:
        report["summary"] = {lay: statistics.median(r["epochs_per_hour"] for r in report["runs"]
                                                    if f"{r['trials']}x{r['threads']}" == lay) for lay in args.layouts}
        print(report["summary"])
    report["loadavg_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
