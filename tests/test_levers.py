"""The speed levers change how a step is computed, never what: a few steps' losses with and without each lever agree
to within rounding (fp32 levers) or bf16 rounding (autocast). No timing here: speed is bench.throughput's job."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from seg.config import make_config
from seg.data.cache import SplitData
from seg.levers import Levers, cpu_has_native_bf16, prepare_model, resolve_levers
from seg.losses import build_loss
from seg.models import build_model
from seg.train import build_optimizer, train_one_epoch

CPU = torch.device("cpu")
PLAIN = Levers(CPU, None, False, False, None)  # fp32, contiguous, for-each Adam: the paper-like path
STEPS = 4
# lever -> (the change, relative tolerance on the first step's loss, on every step's loss). The first step runs
# the same weights, so it shows the rounding of the forward pass alone: fp32 levers only reorder sums (1e-5), bf16
# rounds activations to 8 mantissa bits (3e-3 through resnet34_fcn's 34 layers). Later steps add Adam's amplification: its first updates are about
# lr * sign(grad), so a gradient that is 0 on one path and 1e-9 on the other moves a weight by a whole lr; over
# 4 steps that drifts the loss by up to ~0.5% for channels_last and ~2% for bf16. A real bug (a wrong layout, a
# dropped update) moves the first step or every step by far more. Fused Adam is the same update with other
# roundings (fused multiply-adds): equal first losses, ~5e-4 apart after 4 steps of resnet34_fcn.
LEVERS = {
    "channels_last": (dict(channels_last=True), 1e-5, 1e-2),
    "fused_adam": (dict(fused_optimizer=True), 1e-6, 2e-3),
    "bf16_autocast": (dict(amp_dtype=torch.bfloat16), 3e-3, 3e-2),
}


def step_losses(cfg, levers: Levers, data: SplitData) -> list[float]:
    torch.manual_seed(0)
    model = prepare_model(build_model(cfg), levers)
    loss_fn = build_loss(cfg, None)
    opt = build_optimizer(cfg, model.parameters(), levers.fused_optimizer)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    order, aug = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    losses = []
    for _ in range(STEPS):  # one batch per call: each call's loss sum is that step's loss
        loss_sum, _ = train_one_epoch(model, loss_fn, opt, sched, data, cfg, levers, order, aug)
        losses.append(loss_sum.item())
    return losses


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 32, 32), generator=g, dtype=torch.uint8)
    masks = torch.randint(0, 21, (4, 32, 32), generator=g, dtype=torch.uint8)
    masks[:, :16] = 0  # a background majority, as in VOC
    return SplitData(images, masks, [str(i) for i in range(4)])


@pytest.fixture(autouse=True)
def one_thread():
    """One thread, as a CPU trial runs: on a loaded 2-core machine two threads wait on each other for seconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("arch", ["fcn", "unet", "resnet34_fcn"])
@pytest.mark.parametrize("lever", sorted(LEVERS))
def test_each_lever_keeps_the_losses(arch, lever, batch):
    change, first_rtol, rtol = LEVERS[lever]
    if lever == "bf16_autocast" and not cpu_has_native_bf16():
        pytest.skip("emulated bf16 is slow on this CPU (the comparison still holds; it is just not worth the time)")
    cfg = make_config(dict(arch=arch, image_size=32, batch_size=4, width=0.25, lr=1e-3, optimizer="adamw",
                           device="cpu", color_jitter=0.0))
    plain = step_losses(cfg, PLAIN, batch)
    lever_on = step_losses(cfg, dataclasses.replace(PLAIN, **change), batch)
    assert lever_on[0] == pytest.approx(plain[0], rel=first_rtol), f"{lever} changed the forward pass of {arch}"
    assert lever_on == pytest.approx(plain, rel=rtol), f"{lever} changed the losses of {arch}"


def test_resolve_levers_on_this_cpu():
    lv = resolve_levers(make_config(dict(arch="fcn", device="cpu", optimizer="adamw")))
    assert lv.device == CPU and lv.channels_last
    assert (lv.amp_dtype is torch.bfloat16) == cpu_has_native_bf16()  # the fp32 path where bf16 is emulated
    assert lv.fused_optimizer  # fused Adam/AdamW: on for the CPU too (README, "Performance")
    assert lv.compile_mode is None
    assert not resolve_levers(make_config(dict(arch="fcn", device="cpu", optimizer="sgd"))).fused_optimizer
    off = make_config(dict(arch="fcn", device="cpu", amp="off", channels_last="off", fused_optimizer="off"))
    assert resolve_levers(off) == PLAIN
