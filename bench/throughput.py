"""Training throughput, side by side in one process: the paper-style loop against segtune's, lever by lever.

    python -m bench.throughput                         # CPU: fcn, batch 16; CUDA: every arch, batch 16 and 64
    python -m bench.throughput --archs fcn unet --batch-sizes 16 --steps 20 --out results/bench/throughput.json

"Reference" is the paper's loop: a DataLoader over torchvision's VOCSegmentation that decodes and resizes every
JPEG/PNG with PIL per item, random flip, fp32, contiguous tensors, Adam, `loss.item()` every step. segtune's
loop is `seg.train.train_one_epoch` itself (not a copy), run over the cached split with the levers switched on
one at a time, so each row's ratio to the reference is what that lever buys. Real VOC2007 is used when found
(`--data-root`), else synthetic images of VOC's size (`--synthetic DIR` forces them; the JSON says which). The JSON
is rewritten after every architecture and batch size (`"complete": false` until the end), so a run stopped
part-way keeps what it measured; a lever that fails (a compiler error, out of memory) is a row with its `error`, the
rows after it are still measured, and the exit code is 1.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from seg.atomic import atomic_write_text
from seg.config import TrainConfig, make_config
from seg.data import load_split
from seg.data.cache import SplitData
from seg.losses import build_loss
from seg.models import build_model
from seg.levers import Levers, cpu_has_native_bf16, resolve_levers
from seg.train import build_optimizer, lr_factor, train_one_epoch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VOC = REPO.parent / "shared" / "data"
# Dense bf16 peak (TFLOP/s) of the devices we quote shares for; others get no share.
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0}


# ---------------------------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_per_image(cfg: TrainConfig, device: torch.device) -> float:
    """Forward+backward FLOPs of one training image, counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(cfg).to(device)
    x = torch.randn(2, 3, cfg.image_size, cfg.image_size, device=device)
    with FlopCounterMode(display=False) as fc:
        model(x).sum().backward()
    return fc.get_total_flops() / 2


def paper_style_dataset(cfg: TrainConfig, split: str, flip: bool):
    """torchvision's VOCSegmentation decoding and resizing every item with PIL, as the paper's loop did."""
    import torchvision.transforms.v2 as T
    from torchvision import tv_tensors

    from seg.data.voc import voc_dataset

    size = cfg.image_size
    joint = T.Compose([T.Resize((size, size), antialias=True), *([T.RandomHorizontalFlip()] if flip else []),
                       T.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
                       T.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))])

    def transforms(img, mask):
        img, mask = joint(tv_tensors.Image(T.functional.pil_to_tensor(img)),
                          tv_tensors.Mask(T.functional.pil_to_tensor(mask)[0]))
        return img.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).long()

    ds = voc_dataset(cfg.data_root, cfg.year, split)
    ds.transforms = transforms  # torchvision's joint (image, target) hook, applied per item
    return ds


def reference_loop(cfg: TrainConfig, workers: int, steps: int, warmup: int, device: torch.device) -> float:
    """Images/s of the paper-style loop (PIL decode + resize per item in a DataLoader, fp32, loss.item())."""
    from torch.utils.data import DataLoader

    ds = paper_style_dataset(cfg, cfg.train_split, flip=True)
    loader = DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0, pin_memory=device.type == "cuda")
    model = build_model(cfg).to(device)
    loss_fn = build_loss(cfg, None)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    done, t0 = 0, None

    def batches():
        while True:
            yield from loader

    for i, (x, y) in enumerate(batches()):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
        if i == warmup + steps:
            break
        x, y = x.to(device), y.to(device)
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()  # the paper's per-step host sync
        done += len(x) if i >= warmup else 0
    sync(device)
    return done / (time.perf_counter() - t0)


def segtune_loop(cfg: TrainConfig, levers: Levers, data: SplitData, steps: int, warmup: int) -> tuple[float, float]:
    """Images/s of seg.train.train_one_epoch over `steps` batches after `warmup` batches; also compile seconds."""
    device = levers.device
    model = build_model(cfg).to(device)
    if levers.channels_last:
        model = model.to(memory_format=torch.channels_last)
    compile_s = 0.0
    fwd = model
    if levers.compile_mode:
        fwd = torch.compile(model, mode=levers.compile_mode)
    loss_fn = build_loss(cfg, None)
    opt = build_optimizer(cfg, model.parameters(), levers.fused_optimizer)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s, 10**6))
    g_order, g_aug = torch.Generator().manual_seed(0), torch.Generator(device=device).manual_seed(1)

    def subset(n_batches: int) -> SplitData:
        idx = torch.arange(n_batches * cfg.batch_size, device=device) % len(data)
        return SplitData(data.images[idx], data.masks[idx], [data.ids[i] for i in idx.tolist()])

    t0 = time.perf_counter()
    train_one_epoch(fwd, loss_fn, opt, sched, subset(warmup), cfg, levers, g_order, g_aug)
    sync(device)
    if levers.compile_mode:
        compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    loss_sum, seen = train_one_epoch(fwd, loss_fn, opt, sched, subset(steps), cfg, levers, g_order, g_aug)
    loss_sum.item()
    sync(device)
    return seen / (time.perf_counter() - t0), compile_s


def lever_ladder(device: torch.device) -> list[tuple[str, dict[str, Any]]]:
    """segtune's levers, added one at a time (each row keeps the ones above it)."""
    rows = [("cached data, fp32", dict(channels_last=False, amp_dtype=None, fused_optimizer=False, compile_mode=None)),
            ("+ channels_last", dict(channels_last=True)),
            ("+ bf16 autocast", dict(amp_dtype=torch.bfloat16))]
    if device.type == "cuda":
        rows += [("+ fused Adam", dict(fused_optimizer=True)), ("+ CUDA graphs (compile reduce-overhead)",
                                                               dict(compile_mode="reduce-overhead"))]
    return rows


def packed_trials(arch: str, n: int, batch: int, size: int, steps: int) -> float:
    """Aggregate images/s of n trial processes sharing the GPU (each eager bf16, started together)."""
    code = ("import sys,json; from bench.throughput import _one_trial; "
            f"print(json.dumps(_one_trial({arch!r},{batch},{size},{steps})))")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO) for _ in range(n)]
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    start, end = min(r["start"] for r in results), max(r["end"] for r in results)
    return sum(r["images"] for r in results) / (end - start)


def _one_trial(arch: str, batch: int, size: int, steps: int) -> dict[str, float]:
    cfg = make_config(dict(arch=arch, batch_size=batch, image_size=size, device="cuda"))
    lv = Levers(torch.device("cuda"), torch.bfloat16, True, True, None)
    data = synthetic_split(cfg, lv.device, 64)
    segtune_loop(cfg, lv, data, 3, 3)  # warm
    start = time.time()
    ips, _ = segtune_loop(cfg, lv, data, steps, 1)
    return {"start": start, "end": time.time(), "images": ips * (time.time() - start)}


def synthetic_split(cfg: TrainConfig, device: torch.device, n: int) -> SplitData:
    g = torch.Generator().manual_seed(0)
    s = cfg.image_size
    images = torch.randint(0, 256, (n, 3, s, s), generator=g, dtype=torch.uint8)
    masks = torch.randint(0, 21, (n, s, s), generator=g, dtype=torch.uint8)
    return SplitData(images, masks, [f"{i:06d}" for i in range(n)]).to(device)


def peak_tflops(name: str) -> float | None:
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


# ---------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", nargs="+", default=["fcn", "fcn_dilated", "resnet34_fcn", "unet"] if cuda else ["fcn"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[16, 64] if cuda else [16])
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=30 if cuda else 6, help="timed batches per measurement")
    ap.add_argument("--warmup", type=int, default=5 if cuda else 2)
    ap.add_argument("--workers", nargs="+", type=int, default=[0, os.cpu_count() or 1])
    ap.add_argument("--data-root", default=str(DEFAULT_VOC))
    ap.add_argument("--no-reference", action="store_true", help="skip the paper-style loop")
    ap.add_argument("--packing", nargs="*", type=int, default=[1, 2, 4] if cuda else [],
                    help="trial processes sharing the GPU, e.g. 1 2 4 (default on CUDA); none: `--packing` alone")
    ap.add_argument("--synthetic", metavar="DIR", default=None,
                    help="use synthetic VOC-sized images generated in DIR even where VOC is found (default: only "
                         "when it is not, in results/bench/synthetic-voc)")
    ap.add_argument("--synthetic-size", type=int, default=400, help="px of the synthetic source images (VOC: ~500)")
    ap.add_argument("--out", default="results/bench/throughput.json")
    args = ap.parse_args(argv)

    device = torch.device("cuda" if cuda else "cpu")
    dev_name = torch.cuda.get_device_name() if cuda else f"cpu: {platform.processor() or platform.machine()}"
    real = args.synthetic is None and (Path(args.data_root) / "VOCdevkit" / "VOC2007" / "JPEGImages").is_dir()
    synth_root = Path(args.synthetic) if args.synthetic else REPO / "results" / "bench" / "synthetic-voc"
    base = dict(image_size=args.image_size, data_root=args.data_root if real else str(synth_root),
                dataset="voc" if real else "synthetic", synthetic_counts=(209, 16, 16),
                synthetic_size=args.synthetic_size, device=device.type, test_split=None)
    report: dict[str, Any] = {"device": dev_name, "torch": torch.__version__, "data": "VOC2007 train" if real else
                              f"synthetic, VOC-sized (~{args.synthetic_size} px)", "image_size": args.image_size,
                              "cpu_native_bf16": cpu_has_native_bf16(), "complete": False, "rows": [], "packing": []}
    print(f"device: {dev_name}; data: {report['data']}; torch {torch.__version__}")
    out = Path(args.out)
    for arch in args.archs:
        for batch in args.batch_sizes:
            cfg = make_config(dict(base, arch=arch, batch_size=batch)).resolved()
            data = load_split(cfg, "train", device)
            gflop = flops_per_image(cfg, device) / 1e9
            ref: dict[int, float] = {}
            for w in [] if args.no_reference else args.workers:
                loop = f"reference, {w} workers"
                if r := attempt(report, arch, batch, loop, reference_loop, cfg, w, args.steps, args.warmup, device):
                    ref[w] = r[0]
                    emit(report, arch, batch, loop, r[0], ref.get(0), gflop, dev_name)
            ladder, lv = [], dict(device=device)
            for name, change in lever_ladder(device):
                lv.update(change)
                ladder.append((name, Levers(**lv)))
            # What a trial actually gets: the levers `resolve_levers` picks for this device (e.g. no bf16 on a
            # CPU without native bf16, where emulated bf16 is several times slower than fp32).
            auto = resolve_levers(cfg)
            ladder.append((f"segtune default ({auto.describe()['amp']}, cl={auto.channels_last}, "
                           f"compile={auto.describe()['compile']})", auto))
            for name, levers in ladder:
                if r := attempt(report, arch, batch, name, segtune_loop, cfg, levers, data, args.steps, args.warmup):
                    emit(report, arch, batch, name, r[0], ref.get(0), gflop, dev_name, r[1])
            del data
            write_report(out, report)  # a run stopped later (a time budget, a crash) keeps these rows
    for arch in args.archs if args.packing else []:
        for n in args.packing:
            ips = packed_trials(arch, n, 16, args.image_size, args.steps)
            report["packing"].append({"arch": arch, "trials": n, "images_per_s": ips})
            print(f"{arch:14s} {n} trial(s) sharing the GPU: {ips:8.1f} images/s in all")
    report["complete"] = True
    write_report(out, report)
    print(f"wrote {out}")
    return 1 if any(r.get("error") for r in report["rows"]) else 0


def attempt(report, arch, batch, loop, fn, *args) -> tuple[float, float] | None:
    """`fn(*args)` as (images/s, compile seconds); a bare images/s means nothing was compiled. An exception (a
    compiler error, running out of memory) is recorded as a row with `error` and images_per_s None, and None is
    returned, so one failing lever does not lose the rows after it; the exit code is then 1."""
    try:
        result = fn(*args)
    except Exception as e:
        error = f"{type(e).__name__}: {e}".strip()
        report["rows"].append({"arch": arch, "batch": batch, "loop": loop, "images_per_s": None, "error": error[:2000]})
        print(f"{arch:14s} b{batch:<3d} {loop:42s} FAILED: {error[:300]}")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return None
    return result if isinstance(result, tuple) else (result, 0.0)


def write_report(out: Path, report: dict[str, Any]) -> None:
    atomic_write_text(out, json.dumps(report, indent=2))


def emit(report, arch, batch, loop, ips, ref0, gflop, dev_name, compile_s=0.0) -> None:
    tflops = ips * gflop / 1e3
    peak = peak_tflops(dev_name)
    row = {"arch": arch, "batch": batch, "loop": loop, "images_per_s": ips,
           "ratio_vs_reference_0_workers": ips / ref0 if ref0 else None, "gflop_per_image": gflop,
           "achieved_tflops": tflops, "share_of_bf16_peak": tflops / peak if peak else None,
           "compile_seconds": compile_s}
    report["rows"].append(row)
    ratio = f"{row['ratio_vs_reference_0_workers']:5.2f}x" if ref0 else "   - "
    print(f"{arch:14s} b{batch:<3d} {loop:42s} {ips:8.1f} img/s  {ratio}  {gflop:7.1f} GFLOP/img  "
          f"{tflops:6.2f} TFLOP/s" + (f"  {100 * row['share_of_bf16_peak']:.1f}% of peak" if peak else ""))


if __name__ == "__main__":
    sys.exit(main())
