"""The speed levers of the training loop, resolved per device from the config's auto/on/off switches.

On CUDA: bf16 autocast, channels_last, cudnn.benchmark (set by the trainer) and fused Adam. On a CPU, bf16 only
where the CPU computes it natively (AVX512-BF16 / AMX): emulated bf16 is several times slower than fp32.
Each `auto` is what measured fastest on the machine kind it runs on (bench.throughput, README "Performance"):
  bf16 autocast   CPU with AVX512-BF16/AMX: 1.2-1.7x a step at 64 px, 2.6x at 224 px (fcn) over fp32 +
                  channels_last; without native bf16: off (emulated, 7x slower), so that fp32 path is unchanged.
  channels_last   on everywhere: oneDNN's convolutions want NHWC; 0.9-1.2x in fp32 at 64 px, 1.3x at 224 px.
  fused Adam      on for the CPU too (torch >= 2.4 has a fused CPU kernel): the optimizer step (14-21% of a
                  64 px step for fcn, resnet34_fcn, smp_unet) timed alone takes about half as long; whole-step
                  ratios on the loaded machine were within their noise. The same update (tests/test_levers.py).
  torch.compile   off on a CPU: inductor took 36 s (warm cache) to 9 min (cold, loaded machine) for fcn at 64 px
                  and then ran no faster than eager (0.96x), so no trial recovers it.
Threads are not a lever here: a trial uses the CPUs its space gives it (search.tune.trainable), and the packing
measurement (README) says one thread per trial, as many trials as cores.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any

import torch

from seg.config import TrainConfig


@dataclass(frozen=True)
class Levers:
    """What the loop actually uses on this device, resolved from the config's auto/on/off switches."""

    device: torch.device
    amp_dtype: torch.dtype | None  # bf16 autocast or None
    channels_last: bool
    fused_optimizer: bool
    compile_mode: str | None  # None, "default" or "reduce-overhead"

    def describe(self) -> dict[str, Any]:
        return {"device": str(self.device), "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off",
                "channels_last": self.channels_last, "fused_optimizer": self.fused_optimizer,
                "compile": self.compile_mode or "off"}


def prepare_model(model: torch.nn.Module, levers: Levers) -> torch.nn.Module:
    """The model on the levers' device and memory format (what Trainer and the benchmarks train)."""
    model = model.to(levers.device)
    return model.to(memory_format=torch.channels_last) if levers.channels_last else model


def cpu_has_fused_adam() -> bool:
    """torch's fused Adam/AdamW runs on the CPU from 2.4 on."""
    major, minor = (int(p) for p in torch.__version__.split(".")[:2])
    return (major, minor) >= (2, 4)


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (AVX512-BF16 / AMX); emulated bf16 is slower than fp32."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, p, lambda: False)() for p in probes)


def resolve_levers(cfg: TrainConfig) -> Levers:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was requested but torch.cuda.is_available() is False; "
                           "set device: auto or cpu, or install a CUDA build of torch")
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda", torch.cuda.current_device()) if use_cuda else torch.device("cpu")
    if cfg.amp == "bf16":
        amp = torch.bfloat16
    elif cfg.amp == "auto":
        amp = torch.bfloat16 if (use_cuda and torch.cuda.is_bf16_supported()) or (not use_cuda and cpu_has_native_bf16()) else None
    else:
        amp = None
    channels_last = cfg.channels_last != "off"
    # fused Adam/AdamW on CUDA and on the CPU alike: the same update in one kernel per parameter group (the CPU
    # kernel arrived in torch 2.4); bench.throughput's "+ fused Adam" rows measure it on both paths.
    fused = cfg.fused_optimizer == "on" or (cfg.fused_optimizer == "auto" and (use_cuda or cpu_has_fused_adam()))
    compile_mode = None if cfg.compile == "off" else cfg.compile
    return Levers(device, amp, channels_last, fused and cfg.optimizer in ("adam", "adamw"), compile_mode)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def autocast(levers: Levers):
    """The autocast context of every forward pass (bf16 where the levers chose it, else a no-op), built in one
    place as nanoGPT builds its `ctx`."""
    return torch.autocast(levers.device.type, dtype=levers.amp_dtype or torch.float32,
                          enabled=levers.amp_dtype is not None)
