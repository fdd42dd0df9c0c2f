"""Training throughput, side by side in one process: the paper-style loop against segtune's, lever by lever.

    python -m bench.throughput                         # CPU: fcn, batch 16, 224 px; CUDA: every arch, batch 16 and 64
    python -m bench.throughput --px64                  # CPU trials' size: every architecture at 64 px
    python -m bench.throughput --archs fcn unet:0.25 --steps 3 --rounds 5 --threads 1 --compile

"Reference" is the paper's loop: a DataLoader over torchvision's VOCSegmentation decoding and resizing every
JPEG/PNG with PIL per item, random flip, fp32, contiguous tensors, Adam, `loss.item()` every step. segtune's loop is
`seg.train.train_one_epoch` itself over the cached split, levers switched on one at a time, so each row's ratio to
the reference is what that lever buys. An architecture's loops are built first, then run interleaved (`--steps`
batches each per round, A..Z then Z..A, `--rounds` rounds; each row the median round), so load drifts hit every row
alike: compare ratios (the JSON records the load average). On a CPU the same rounds time an n x n matmul in fp32 and
bf16; `share_of_matmul` is a row's FLOP rate over the matmul figure of its own dtype. Real VOC2007 when found
(`--data-root`), else synthetic images of VOC's size (`--synthetic DIR`; the JSON says which). The JSON is
rewritten after every architecture (`"complete": false` until the end); a failing loop is a row with its `error`,
the others are still measured, and the exit code is 1.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
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
from seg.levers import Levers, cpu_has_native_bf16, prepare_model, resolve_levers
from seg.train import build_optimizer, lr_factor, train_one_epoch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VOC = REPO.parent / "shared" / "data"
# Dense bf16 peak (TFLOP/s) of the devices we quote shares for; others get no share.
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0}
# --px64: the CPU spaces' architectures (resnet34_fcn with skips, smp on resnet18) and U-Net widths.
PX64_MODELS = ["fcn", "fcn_dilated", "resnet34_fcn", "unet:0.5", "unet:0.25", "smp_unet"]


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


class ReferenceLoop:
    """The paper-style loop (PIL decode + resize per item in a DataLoader, fp32, loss.item() every step)."""

    def __init__(self, cfg: TrainConfig, workers: int, device: torch.device):
        from torch.utils.data import DataLoader

        loader = DataLoader(paper_style_dataset(cfg, cfg.train_split, flip=True), batch_size=cfg.batch_size,
                            shuffle=True, num_workers=workers, drop_last=True, persistent_workers=workers > 0,
                            pin_memory=device.type == "cuda")
        self.batches = (b for _ in iter(int, 1) for b in loader)  # endless
        self.device, self.model = device, build_model(cfg).to(device)
        self.loss_fn, self.opt = build_loss(cfg, None), torch.optim.Adam(self.model.parameters(), lr=cfg.lr)

    def run(self, steps: int) -> tuple[int, float]:
        """Trains `steps` batches; returns (images, seconds)."""
        sync(self.device)
        done, t0 = 0, time.perf_counter()
        for _ in range(steps):
            x, y = next(self.batches)
            x, y = x.to(self.device), y.to(self.device)
            loss = self.loss_fn(self.model(x), y)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            loss.item()  # the paper's per-step host sync
            done += len(x)
        sync(self.device)
        return done, time.perf_counter() - t0


class SegtuneLoop:
    """seg.train.train_one_epoch itself over `steps` cached batches, with the given levers (and thread count)."""

    def __init__(self, cfg: TrainConfig, levers: Levers, data: SplitData, threads: int | None = None):
        self.cfg, self.levers, self.data, self.threads = cfg, levers, data, threads
        self.model = prepare_model(build_model(cfg), levers)
        self.fwd = torch.compile(self.model, mode=levers.compile_mode) if levers.compile_mode else self.model
        self.loss_fn = build_loss(cfg, None)
        self.opt = build_optimizer(cfg, self.model.parameters(), levers.fused_optimizer)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(cfg, s, 10**6))
        self.g_order = torch.Generator().manual_seed(0)
        self.g_aug = torch.Generator(device=levers.device).manual_seed(1)

    def run(self, steps: int) -> tuple[int, float]:
        idx = torch.arange(steps * self.cfg.batch_size, device=self.levers.device) % len(self.data)
        part = SplitData(self.data.images[idx], self.data.masks[idx], [self.data.ids[i] for i in idx.tolist()])
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads or before)
        try:
            sync(self.levers.device)
            t0 = time.perf_counter()
            loss_sum, seen = train_one_epoch(self.fwd, self.loss_fn, self.opt, self.sched, part, self.cfg,
                                             self.levers, self.g_order, self.g_aug)
            loss_sum.item()
            sync(self.levers.device)
            return seen, time.perf_counter() - t0
        finally:
            torch.set_num_threads(before)


class MatmulLoop:
    """The matmul figure of this run: n x n @ n x n in `dtype` (FLOPs counted as 2n^3) at a thread count."""

    def __init__(self, dtype: torch.dtype, device: torch.device, n: int, threads: int | None = None):
        self.a, self.b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        self.device, self.threads, self.flop = device, threads, 2 * n**3

    def run(self, steps: int) -> tuple[float, float]:
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads or before)
        try:
            sync(self.device)
            t0 = time.perf_counter()
            for _ in range(steps):
                self.a @ self.b
            sync(self.device)
            return steps * self.flop / 1e9, time.perf_counter() - t0  # (GFLOP, seconds)
        finally:
            torch.set_num_threads(before)


def interleaved(loops: dict[str, Any], rounds: int, steps: int, warmup: int, report, arch, batch) -> dict[str, dict]:
    """Runs every loop `steps` batches per round, A B C .. then .. C B A, so load drifts hit them alike.

    Returns name -> {"rate": median units/s over the rounds, "rounds": [...], "first_s": the warm-up's seconds
    (compilation included)}. A loop that raises is dropped and recorded as an error row."""
    out: dict[str, dict] = {}
    for name in list(loops):
        try:
            t0 = time.perf_counter()
            loops[name].run(warmup)
            out[name] = {"rounds": [], "first_s": time.perf_counter() - t0}
        except Exception as e:  # a compiler error, out of memory: the other loops are still measured
            record_error(report, arch, batch, name, e)
            del loops[name]
    for r in range(rounds):
        for name in (list(loops) if r % 2 == 0 else list(reversed(loops))):
            try:
                done, seconds = loops[name].run(steps)
            except Exception as e:
                record_error(report, arch, batch, name, e)
                del loops[name], out[name]
                continue
            out[name]["rounds"].append(done / seconds)
    for v in out.values():
        v["rate"] = statistics.median(v["rounds"]) if v["rounds"] else None
    return out


def reference_loop(cfg: TrainConfig, workers: int, steps: int, warmup: int, device: torch.device) -> float:
    """Images/s of the paper-style loop alone (bench.search estimates the reference's time from it)."""
    loop = ReferenceLoop(cfg, workers, device)
    loop.run(warmup)
    done, seconds = loop.run(steps)
    return done / seconds


def lever_ladder(device: torch.device, compile_cpu: bool) -> list[tuple[str, dict[str, Any]]]:
    """segtune's levers, added one at a time (each row keeps the ones above it)."""
    rows = [("cached data, fp32", dict(channels_last=False, amp_dtype=None, fused_optimizer=False, compile_mode=None)),
            ("+ channels_last", dict(channels_last=True)),
            ("+ bf16 autocast", dict(amp_dtype=torch.bfloat16)),
            ("+ fused Adam", dict(fused_optimizer=True))]
    if device.type == "cuda":
        rows += [("+ CUDA graphs (compile reduce-overhead)", dict(compile_mode="reduce-overhead"))]
    elif compile_cpu:
        rows += [("+ torch.compile (inductor)", dict(compile_mode="default"))]
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
    loop = SegtuneLoop(cfg, lv, data)
    loop.run(3)  # warm
    start = time.time()
    images, _ = loop.run(steps)
    return {"start": start, "end": time.time(), "images": images}


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
    ap.add_argument("--archs", nargs="+", default=None, help="arch or arch:width (default: fcn on a CPU, the "
                    "paper's four on CUDA; with --px64 every architecture and the narrow U-Nets)")
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[16, 64] if cuda else [16])
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--px64", action="store_true", help="the CPU trials' size: 64 px, every architecture")
    ap.add_argument("--steps", type=int, default=30 if cuda else 3, help="timed batches per loop and round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    ap.add_argument("--warmup", type=int, default=5 if cuda else 2)
    ap.add_argument("--workers", nargs="+", type=int, default=[0, os.cpu_count() or 1])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads of every loop")
    ap.add_argument("--compile", action="store_true", help="CPU: add a torch.compile (inductor) row")
    ap.add_argument("--matmul-size", type=int, default=None,
                    help="n of the n x n matmul figure (default 4096 from 128 px up, else 512: toy runs stay short)")
    ap.add_argument("--data-root", default=str(DEFAULT_VOC))
    ap.add_argument("--no-reference", action="store_true", help="skip the paper-style loop")
    ap.add_argument("--packing", nargs="*", type=int, default=[1, 2, 4] if cuda else [],
                    help="trial processes sharing the GPU, e.g. 1 2 4 (default on CUDA); none: `--packing` alone")
    ap.add_argument("--synthetic", metavar="DIR", default=None,
                    help="use synthetic VOC-sized images generated in DIR even where VOC is found (default: only "
                         "when it is not, in results/bench/synthetic-voc)")
    ap.add_argument("--synthetic-size", type=int, default=400, help="px of the synthetic source images (VOC: ~500)")
    ap.add_argument("--out", default=None, help="default results/bench/throughput[_64px].json")
    args = ap.parse_args(argv)
    if args.px64:
        args.image_size = 64
    args.matmul_size = args.matmul_size or (4096 if args.image_size >= 128 else 512)
    archs = args.archs or (PX64_MODELS if args.px64 else ["fcn", "fcn_dilated", "resnet34_fcn", "unet"] if cuda
                           else ["fcn"])
    torch.set_num_threads(args.threads)

    device = torch.device("cuda" if cuda else "cpu")
    dev_name = torch.cuda.get_device_name() if cuda else f"cpu: {platform.processor() or platform.machine()}"
    real = args.synthetic is None and (Path(args.data_root) / "VOCdevkit" / "VOC2007" / "JPEGImages").is_dir()
    synth_root = Path(args.synthetic) if args.synthetic else REPO / "results" / "bench" / "synthetic-voc"
    base = dict(image_size=args.image_size, data_root=args.data_root if real else str(synth_root),
                dataset="voc" if real else "synthetic", synthetic_counts=(209, 16, 16),
                synthetic_size=args.synthetic_size, device=device.type, test_split=None)
    report: dict[str, Any] = {"device": dev_name, "torch": torch.__version__, "data": "VOC2007 train" if real else
                              f"synthetic, VOC-sized (~{args.synthetic_size} px)", "image_size": args.image_size,
                              "cpu_native_bf16": cpu_has_native_bf16(), "cpu_flags": cpu_flags(),
                              "threads": args.threads, "steps_per_round": args.steps, "rounds": args.rounds,
                              "loadavg_start": os.getloadavg(), "command": " ".join(sys.argv),
                              "complete": False, "matmul_gflops": {}, "rows": [], "packing": []}
    print(f"device: {dev_name}; data: {report['data']}; torch {torch.__version__}; {args.threads} threads; "
          f"load average {os.getloadavg()[0]:.1f}")
    out = Path(args.out or f"results/bench/throughput{'_64px' if args.px64 else ''}.json")
    for spec in archs:
        for batch in args.batch_sizes:
            cfg = model_config(spec, batch, base)
            data = load_split(cfg, "train", device)
            gflop = flops_per_image(cfg, device) / 1e9
            loops: dict[str, Any] = {}
            for w in [] if args.no_reference else args.workers:
                loops[f"reference, {w} workers"] = ReferenceLoop(cfg, w, device)
            rows, lv = {}, dict(device=device)
            for name, change in lever_ladder(device, args.compile):
                lv.update(change)
                rows[name] = Levers(**lv)
            # What a trial actually gets: the levers `resolve_levers` picks for this device (e.g. no bf16 on a
            # CPU without native bf16, where emulated bf16 is several times slower than fp32).
            auto = resolve_levers(cfg)
            d = auto.describe()
            default = (f"segtune default ({d['amp']}, cl={auto.channels_last}, fused={auto.fused_optimizer}, "
                       f"compile={d['compile']})")
            rows[default] = auto
            for name, levers in rows.items():
                loops[name] = SegtuneLoop(cfg, levers, data)
            if args.threads > 1 and not cuda:  # one trial per core: what the CPU spaces run
                rows[default + ", 1 thread"] = auto
                loops[default + ", 1 thread"] = SegtuneLoop(cfg, auto, data, threads=1)
            if not cuda:  # the matmul figures, measured between the loops of the same rounds
                for dt in (torch.float32, torch.bfloat16):
                    for th in sorted({args.threads, 1}):
                        loops[f"matmul {str(dt)[6:]}, {th} thread(s)"] = MatmulLoop(dt, device, args.matmul_size, th)
            res = interleaved(loops, args.rounds, args.steps, args.warmup, report, spec, batch)
            report["matmul_gflops"].update({k: r["rate"] for k, r in res.items() if k.startswith("matmul")})
            ref0 = res.get("reference, 0 workers", {}).get("rate")
            for name, r in res.items():
                if not name.startswith("matmul"):
                    emit(report, spec, batch, name, r, ref0, gflop, dev_name, rows.get(name), args.threads)
            del data, loops
            atomic_write_text(out, json.dumps(report, indent=2))  # a run stopped later (a time budget, a crash) keeps these rows
    for arch in archs if args.packing else []:
        for n in args.packing:
            ips = packed_trials(arch, n, 16, args.image_size, args.steps)
            report["packing"].append({"arch": arch, "trials": n, "images_per_s": ips})
            print(f"{arch:14s} {n} trial(s) sharing the GPU: {ips:8.1f} images/s in all")
    report["complete"], report["loadavg_end"] = True, os.getloadavg()
    atomic_write_text(out, json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 1 if any(r.get("error") for r in report["rows"]) else 0


def model_config(spec: str, batch: int, base: dict[str, Any]) -> TrainConfig:
    """`arch` or `arch:width`; resnet34_fcn with its skips and smp models on resnet18, as the CPU spaces run them."""
    arch, _, width = spec.partition(":")
    fields = dict(base, arch=arch, batch_size=batch, **({"width": float(width)} if width else {}))
    if arch == "resnet34_fcn":
        fields["skips"] = True
    if arch.startswith("smp_"):
        fields["encoder"] = "resnet18"
    return make_config(fields).resolved()


def cpu_flags() -> list[str]:
    try:
        flags = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")).split()
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags if f.startswith(("amx", "avx512_bf16", "avx512_fp16", "avx512f")))


def record_error(report, arch, batch, loop, e: Exception) -> None:
    """A failing loop (a compiler error, out of memory) is a row with `error`; the exit code is then 1."""
    error = f"{type(e).__name__}: {e}".strip()
    report["rows"].append({"arch": arch, "batch": batch, "loop": loop, "images_per_s": None, "error": error[:2000]})
    print(f"{arch:14s} b{batch:<3d} {loop:42s} FAILED: {error[:300]}")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def emit(report, arch, batch, loop, res, ref0, gflop, dev_name, levers, threads) -> None:
    ips = res["rate"]
    tflops = ips * gflop / 1e3
    peak = peak_tflops(dev_name)
    row = {"arch": arch, "batch": batch, "loop": loop, "images_per_s": ips, "images_per_s_rounds": res["rounds"],
           "ratio_vs_reference_0_workers": ips / ref0 if ref0 else None, "gflop_per_image": gflop,
           "achieved_tflops": tflops, "share_of_bf16_peak": tflops / peak if peak else None,
           "compile_seconds": res["first_s"] if levers is not None and levers.compile_mode else 0.0}
    share = ""
    if levers is None or levers.device.type == "cpu":  # against the matmul of the same dtype and thread count
        th = 1 if loop.endswith("1 thread") else threads
        dtype = "bfloat16" if levers is not None and levers.amp_dtype else "float32"
        mm = report["matmul_gflops"].get(f"matmul {dtype}, {th} thread(s)")
        row["share_of_matmul"] = tflops * 1e3 / mm if mm else None
        share = f"  {100 * row['share_of_matmul']:.0f}% of {dtype} matmul" if mm else ""
    report["rows"].append(row)
    ratio = f"{row['ratio_vs_reference_0_workers']:5.2f}x" if ref0 else "   - "
    print(f"{arch:14s} b{batch:<3d} {loop:60s} {ips:8.1f} img/s  {ratio}  {gflop:7.1f} GFLOP/img  "
          f"{tflops:6.3f} TFLOP/s" + (f"  {100 * row['share_of_bf16_peak']:.1f}% of peak" if peak else "") + share,
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
