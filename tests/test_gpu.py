"""GPU smoke check: every architecture trains on CUDA with the default levers and agrees with the CPU.

Skipped without CUDA (CI never has one); run it wherever a GPU is at hand: `python -m pytest -m gpu -q`.
"""
from __future__ import annotations

import math

import pytest
import torch

from seg.config import make_config
from seg.data import load_split
from seg.data.augment import normalize
from seg.losses import build_loss
from seg.models import MODELS, build_model
from seg.levers import resolve_levers
from seg.train import Trainer

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU test: needs CUDA (the only tests CI may skip)")]


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_first_loss_matches_cpu_within_bf16_tolerance(arch, synthetic_root, tmp_path):
    cfg = make_config(dict(arch=arch, data_root=str(synthetic_root), image_size=64, width=0.5,
                           cache_dir=str(tmp_path), device="cuda"))
    levers = resolve_levers(cfg)
    assert levers.amp_dtype == torch.bfloat16 and levers.channels_last and levers.fused_optimizer
    data = load_split(cfg, "train", "cpu")
    x, y = normalize(data.images[:8]), data.masks[:8].long()
    torch.manual_seed(0)
    model = build_model(cfg).train()
    loss_fn = build_loss(cfg, None)
    cpu = loss_fn(model(x), y).item()
    gpu_model = model.cuda().to(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = gpu_model(x.cuda().contiguous(memory_format=torch.channels_last))
    gpu = loss_fn(logits.float(), y.cuda()).item()
    assert gpu == pytest.approx(cpu, rel=0.05), (arch, cpu, gpu)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_trains_a_few_steps_on_cuda(arch, synthetic_root, tmp_path):
    cfg = make_config(dict(arch=arch, data_root=str(synthetic_root), image_size=64, width=0.5, epochs=2,
                           batch_size=8, cache_dir=str(tmp_path), device="cuda"))
    t = Trainer(cfg)
    hist = list(t.epochs())
    assert "NVIDIA" in t.device_name or "cuda" in t.device_name.lower()
    assert t.data["train"].images.is_cuda
    assert all(math.isfinite(m["train_loss"]) for m in hist)
