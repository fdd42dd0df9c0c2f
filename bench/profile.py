"""Where a training step's time goes: torch.profiler over segtune's own train step, by phase, op and layer.

    python -m bench.profile                                   # the paper's four + smp_unet/resnet18, 224 and 64 px
    python -m bench.profile --models fcn unet:0.25 --sizes 64 --steps 3 --out bench/results/profile.json

A model is `arch` or `arch:width`. Each (model, size) is one fresh model with the levers `resolve_levers` picks
for this machine (or `--amp off` etc. to profile another path), fed synthetic images of the size (the arithmetic
does not depend on the pixels). The step is seg.train's: augment, forward under autocast, loss, backward,
optimizer step, each inside a `record_function` so the phases add up. Ops are grouped by name and by (name, input
shapes): the shapes say which layer an op belongs to, forward and backward alike. Profiler overhead inflates the
many-small-op cases (64 px) a little: read shares, not absolute times. The JSON records the load average.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from seg.atomic import atomic_write_text
from seg.config import make_config
from seg.data.augment import augment_batch
from seg.levers import autocast, prepare_model, resolve_levers
from seg.losses import build_loss
from seg.models import build_model
from seg.train import build_optimizer

DEFAULT_MODELS = ["fcn", "fcn_dilated", "resnet34_fcn", "unet:1", "unet:0.5", "unet:0.25", "smp_unet"]
PHASES = ("augment", "forward", "loss", "backward", "optimizer")
CONVERT_OPS = ("aten::to", "aten::_to_copy", "aten::copy_", "aten::clone", "aten::contiguous")


def model_config(spec: str, size: int, batch: int, overrides: dict[str, Any]):
    arch, _, width = spec.partition(":")
    fields = dict(arch=arch, image_size=size, batch_size=batch, device="cpu", dataset="synthetic", **overrides)
    if width:
        fields["width"] = float(width)
    if arch == "resnet34_fcn":
        fields.setdefault("skips", True)
    if arch.startswith("smp_"):
        fields.setdefault("encoder", "resnet18")
    return make_config(fields)


def profile_step(spec: str, size: int, batch: int, steps: int, overrides: dict[str, Any], top: int) -> dict[str, Any]:
    cfg = model_config(spec, size, batch, overrides)
    lv = resolve_levers(cfg)
    torch.manual_seed(0)
    model = prepare_model(build_model(cfg), lv)
    loss_fn = build_loss(cfg, None)
    opt = build_optimizer(cfg, model.parameters(), lv.fused_optimizer)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, size, size), generator=g, dtype=torch.uint8)
    masks = torch.randint(0, 21, (batch, size, size), generator=g, dtype=torch.uint8)

    def step():
        with record_function("augment"):
            x, y = augment_batch(images, masks, cfg, g)
            if lv.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        with record_function("forward"), autocast(lv):
            logits = model(x)
        with record_function("loss"):
            loss = loss_fn(logits.float(), y)
        with record_function("backward"):
            opt.zero_grad(set_to_none=True)
            loss.backward()
        with record_function("optimizer"):
            opt.step()

    step()  # warm-up: oneDNN primitive creation, optimizer state
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)  # us, every op once
    phase = {e.key: e.cpu_time_total / steps / 1e3 for e in events if e.key in PHASES}
    ops = sorted((e for e in events if e.key not in PHASES), key=lambda e: -e.self_cpu_time_total)
    by_shape = sorted((e for e in prof.key_averages(group_by_input_shape=True) if e.key not in PHASES),
                      key=lambda e: -e.self_cpu_time_total)
    calls = sum(e.count for e in events if e.key.startswith("aten::")) / steps
    convert = sum(e.self_cpu_time_total for e in events if e.key in CONVERT_OPS)
    conv = sum(e.self_cpu_time_total for e in events if "convolution" in e.key.lower())
    return {
        "model": spec, "image_size": size, "batch": batch, "levers": lv.describe(),
        "step_ms": sum(phase.values()), "phase_ms": phase,
        "aten_calls_per_step": calls, "share_convolution": conv / total, "share_dtype_layout_copies": convert / total,
        "top_ops": [{"op": e.key, "share": e.self_cpu_time_total / total, "calls_per_step": e.count / steps}
                    for e in ops[:top]],
        "top_ops_by_shape": [{"op": e.key, "input_shapes": str(e.input_shapes)[:160],
                              "share": e.self_cpu_time_total / total} for e in by_shape[:top]],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="arch or arch:width")
    ap.add_argument("--sizes", nargs="+", type=int, default=[224, 64])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: torch's)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="TrainConfig override, e.g. amp=off (profile the fp32 path)")
    ap.add_argument("--out", default="results/bench/profile.json")
    args = ap.parse_args(argv)
    overrides = dict(kv.split("=", 1) for kv in args.set)
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                              "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                              "loadavg_start": os.getloadavg(), "overrides": overrides, "rows": []}
    for size in args.sizes:
        for spec in args.models:
            row = profile_step(spec, size, args.batch, args.steps, overrides, args.top)
            report["rows"].append(row)
            ph = ", ".join(f"{k} {v:.0f}" for k, v in row["phase_ms"].items())
            print(f"{spec:14s} {size:4d}px  step {row['step_ms']:7.0f} ms  ({ph})  conv {row['share_convolution']:.0%}"
                  f"  copies {row['share_dtype_layout_copies']:.0%}  {row['aten_calls_per_step']:.0f} aten calls; top: "
                  + ", ".join(f"{o['op']} {o['share']:.0%}" for o in row["top_ops"][:4]), flush=True)
            report["loadavg_end"] = os.getloadavg()
            atomic_write_text(Path(args.out), json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
