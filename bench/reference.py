"""The paper-style reference loop's rates and the estimate of what it would take to run a search's fixed trials
one after another (bench.search's first benchmark): training images/s from bench.throughput.reference_loop,
evaluation images/s from `reference_eval`, multiplied out over each trial's epochs."""
from __future__ import annotations

import itertools
import time
from typing import Any

import torch


def reference_eval(cfg, workers: int, steps: int, warmup: int, device: torch.device) -> float:
    """Images/s of the paper-style evaluation: PIL decode + resize per item in a DataLoader over the val split,
    fp32 forward under no_grad, argmax, a bincount confusion matrix on the host (the paper's per-batch .cpu())."""
    from torch.utils.data import DataLoader

    from bench.throughput import paper_style_dataset, sync
    from seg.data.voc import IGNORE_INDEX, NUM_CLASSES
    from seg.models import build_model

    ds = paper_style_dataset(cfg, cfg.val_split, flip=False)
    loader = DataLoader(ds, batch_size=cfg.batch_size, shuffle=False, num_workers=workers)
    model = build_model(cfg).to(device).eval()
    conf = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.long)
    done = 0

    stream = (batch for _ in itertools.count() for batch in loader)  # the loader, again and again

    def score(x: torch.Tensor, y: torch.Tensor) -> None:
        pred = model(x.to(device)).argmax(1).cpu()
        keep = y != IGNORE_INDEX
        conf.add_(torch.bincount(y[keep] * NUM_CLASSES + pred[keep], minlength=NUM_CLASSES ** 2).view(
            NUM_CLASSES, NUM_CLASSES))

    with torch.no_grad():
        for _, (x, y) in zip(range(warmup), stream):
            score(x, y)
        sync(device)
        t0 = time.perf_counter()
        for _, (x, y) in zip(range(steps), stream):
            score(x, y)
            done += len(x)
    sync(device)
    return done / (time.perf_counter() - t0)


def measure_reference_rates(space, workers: int, steps: int, warmup: int, device: torch.device) -> dict[str, dict]:
    """Train and eval images/s of the reference loop for each distinct model among the space's fixed trials.
    Measured without pretrained weights and class weights (same arithmetic; the reference loop's loss takes none)."""
    from bench.throughput import reference_loop

    rates: dict[str, dict] = {}
    for cfg in space.fixed.values():
        key = model_key(cfg)
        if key in rates:
            continue
        probe = cfg.resolved().model_copy(update={"pretrained": False, "class_weights": "none", "device": device.type})
        t0 = time.perf_counter()
        train = reference_loop(probe, workers, steps, warmup, device)
        evl = reference_eval(probe, workers, steps, warmup, device)
        rates[key] = {"train_images_per_s": train, "eval_images_per_s": evl,
                      "measure_seconds": time.perf_counter() - t0}
        print(f"  reference {key:32s} train {train:7.1f} img/s   eval {evl:7.1f} img/s")
    return rates


def model_key(cfg) -> str:
    return f"{cfg.arch}/{cfg.activation}/w{cfg.width:g}/b{cfg.batch_size}"


def reference_estimate(trials: dict[str, dict[str, Any]], rates: dict[str, dict], split_sizes: dict[str, int]
                       ) -> dict[str, dict[str, float]]:
    """Seconds the reference loop would need per trial: epochs x (train images / train rate + val images / eval
    rate) + test images / eval rate. `trials`: name -> {"key", "epochs", "batch_size"}. Training drops the last
    partial batch, as the reference DataLoader does."""
    out = {}
    for name, t in trials.items():
        r = rates[t["key"]]
        train_images = split_sizes["train"] // t["batch_size"] * t["batch_size"]
        train_s = t["epochs"] * train_images / r["train_images_per_s"]
        eval_s = (t["epochs"] * split_sizes["val"] + split_sizes.get("test", 0)) / r["eval_images_per_s"]
        out[name] = {"epochs": t["epochs"], "train_seconds": train_s, "eval_seconds": eval_s,
                     "seconds": train_s + eval_s}
    return out
