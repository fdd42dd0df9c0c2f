"""The result-quality options of TrainConfig do what they claim, wired through the Trainer where it matters.

Each test sets one option and checks the effect it promises (more training images, extra parameters that change
the output once trained, a different loss, a different learning rate at step 0, shrinking weights ...).
Fast: tiny synthetic data at 32 px, narrow models, at most a couple of epochs.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from seg.config import make_config
from seg.data import IGNORE_INDEX, load_split
from seg.data.augment import augment_batch, normalize
from seg.losses import build_loss, soft_dice_loss
from seg.models import build_model
from seg.train import Trainer, build_optimizer, lr_factor


def cfg_of(tiny_cfg, **kw):
    return make_config({**tiny_cfg.model_dump(), **kw})


def trainer_of(tiny_cfg, **kw) -> Trainer:
    return Trainer(cfg_of(tiny_cfg, **{"width": 0.25, **kw}))  # narrow: a training epoch takes well under 1 s


# ---------------------------------------------------------------------------------------------------------------
# data: train_split
# ---------------------------------------------------------------------------------------------------------------
def test_trainval_trains_on_train_plus_val(tiny_cfg):
    plain, tv = trainer_of(tiny_cfg), trainer_of(tiny_cfg, train_split="trainval")
    assert len(plain.data["train"]) == 24 and len(tv.data["train"]) == 24 + 12  # the fixture's 24/12/12 split
    assert tv.data["train"].ids == plain.data["train"].ids + plain.data["val"].ids
    assert tv.steps_per_epoch == 36 // tiny_cfg.batch_size > plain.steps_per_epoch
    assert tv.data["val"].ids == plain.data["val"].ids and tv.data["test"].ids == plain.data["test"].ids


@pytest.mark.voc
def test_trainval_on_real_voc2007_has_422_images(voc_root, tmp_path):
    cfg = make_config(dict(data_root=str(voc_root), image_size=32, cache_dir=str(tmp_path / "cache"),
                           train_split="trainval"))
    assert len(load_split(cfg, cfg.train_split, "cpu")) == 422


# ---------------------------------------------------------------------------------------------------------------
# augmentation: flip, scale_min/scale_max (255 fill), color_jitter
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def batch(synthetic_root, tmp_path_factory):
    cfg = make_config(dict(data_root=str(synthetic_root), image_size=32,
                           cache_dir=str(tmp_path_factory.mktemp("cache"))))
    data = load_split(cfg, "train", "cpu")
    return data.images[:16], data.masks[:16]


def augmented(tiny_cfg, batch, seed=0, **kw):
    images, masks = batch
    return augment_batch(images, masks, cfg_of(tiny_cfg, **kw), torch.Generator().manual_seed(seed))


def test_flip_mirrors_some_samples_image_and_mask_together(tiny_cfg, batch):
    images, masks = batch
    x, y = augmented(tiny_cfg, batch, flip=True)
    plain = normalize(images)
    same = [torch.equal(x[i], plain[i]) and torch.equal(y[i], masks[i].long()) for i in range(16)]
    mirrored = [torch.equal(x[i], plain[i].flip(-1)) and torch.equal(y[i], masks[i].long().flip(-1))
                for i in range(16)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 0 < sum(mirrored) < 16


def test_zoom_out_fills_void_zoom_in_crops(tiny_cfg, batch):
    images, masks = batch
    _, y_out = augmented(tiny_cfg, batch, scale_min=0.6, scale_max=0.8)
    assert (y_out == IGNORE_INDEX).float().mean() > 0.3  # the shrunken image leaves a void border
    x_in, y_in = augmented(tiny_cfg, batch, scale_min=1.5, scale_max=1.6)
    assert not (y_in == IGNORE_INDEX).any() or (masks == IGNORE_INDEX).any()  # a crop adds no void of its own
    assert not torch.allclose(x_in, normalize(images)) and not torch.equal(y_in, masks.long())
    x_none, y_none = augmented(tiny_cfg, batch, scale_min=1.0, scale_max=1.0)
    assert torch.equal(x_none, normalize(images)) and torch.equal(y_none, masks.long())


def test_color_jitter_changes_the_image_not_the_mask(tiny_cfg, batch):
    images, masks = batch
    x, y = augmented(tiny_cfg, batch, color_jitter=0.3)
    assert torch.equal(y, masks.long())
    assert (x - normalize(images)).abs().amax() > 0.05


def test_trainer_batches_are_augmented(tiny_cfg, monkeypatch):
    """The Trainer passes its config to the augmentation and trains on what it returns: with zoom-out the batches
    it trains on carry the void border (scale 0.5-0.7 leaves at least half of each mask void), without it only
    the masks' own void outlines."""
    import seg.trainer

    seen: list[tuple[float, float]] = []  # (scale_min of the config passed, void fraction of the masks returned)

    def recording(images, masks, cfg, generator):  # the real augmentation, its output recorded
        x, y = augment_batch(images, masks, cfg, generator)
        seen.append((cfg.scale_min, (y == IGNORE_INDEX).float().mean().item()))
        return x, y

    monkeypatch.setattr(seg.trainer, "augment_batch", recording)
    short = {"epochs": 1, "batch_size": 12, "test_split": None, "num_masks": 0}  # 2 steps, no test pass
    for kw in ({}, {"scale_min": 0.5, "scale_max": 0.7, "flip": True, "color_jitter": 0.3}):
        next(trainer_of(tiny_cfg, **short, **kw).epochs())
    plain, zoomed = [v for s, v in seen if s == 1.0], [v for s, v in seen if s == 0.5]
    assert len(plain) == len(zoomed) == 2, seen  # every training step of both trainers went through it
    assert max(plain) < 0.2 and min(zoomed) > 0.5, seen  # the synthetic masks' own void outlines are about 9%


# ---------------------------------------------------------------------------------------------------------------
# models: skips (fcn, resnet34_fcn), unet width
# ---------------------------------------------------------------------------------------------------------------
def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch", ["fcn", "resnet34_fcn"])
def test_skips_add_parameters_and_change_outputs_after_a_step(arch):
    torch.manual_seed(0)
    plain = build_model(make_config(dict(arch=arch, width=0.25)))
    skip = build_model(make_config(dict(arch=arch, width=0.25, skips=True)))
    skip.load_state_dict(plain.state_dict(), strict=False)
    laterals = sum(p.numel() for n, p in skip.named_parameters() if "lateral" in n)
    assert laterals > 0 and n_params(skip) == n_params(plain) + laterals
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 21, (2, 32, 32))  # batch 2: BatchNorm needs > 1
    for m in (plain, skip):  # the same SGD step on the same batch
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        F.cross_entropy(m.train()(x), y).backward()
        opt.step()
    with torch.no_grad():
        out_plain, out_skip = plain.eval()(x), skip.eval()(x)
    assert any(p.abs().sum() > 0 for n, p in skip.named_parameters() if "lateral" in n and n.endswith("weight"))
    assert not torch.allclose(out_plain, out_skip)


def test_trainer_builds_the_skip_model(tiny_cfg):
    assert any("lateral" in n for n, _ in trainer_of(tiny_cfg, skips=True).model.named_parameters())
    assert not any("lateral" in n for n, _ in trainer_of(tiny_cfg).model.named_parameters())


def test_unet_width_scales_channels_and_parameters():
    small, big = (build_model(make_config(dict(arch="unet", width=w))) for w in (0.25, 0.5))
    first = [m for m in small.modules() if isinstance(m, torch.nn.Conv2d)][0]
    assert first.out_channels == 16  # 64 base channels x 0.25
    assert 3 < n_params(big) / n_params(small) < 4.5  # conv parameters grow ~ width^2


# ---------------------------------------------------------------------------------------------------------------
# optimisation: optimizer, weight_decay, warmup_epochs, scheduler
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                      ("sgd", torch.optim.SGD)])
def test_optimizer_choice_reaches_the_trainer(tiny_cfg, name, cls):
    opt = trainer_of(tiny_cfg, optimizer=name, weight_decay=1e-4).optimizer
    assert type(opt) is cls and opt.param_groups[0]["weight_decay"] == 1e-4


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_weight_decay_shrinks_weights_with_zero_grads(name):
    def step(wd: float) -> torch.Tensor:
        p = torch.nn.Parameter(torch.ones(10))
        opt = build_optimizer(make_config(dict(optimizer=name, lr=0.1, weight_decay=wd)), [p], fused=False)
        p.grad = torch.zeros_like(p)
        opt.step()
        return p.detach()

    assert torch.equal(step(0.0), torch.ones(10))
    decayed = step(0.1)
    assert (decayed < 1).all() and (decayed > 0).all()


def test_adamw_decouples_weight_decay_from_adam():
    grads = torch.linspace(-1, 1, 10)

    def step(name):
        p = torch.nn.Parameter(torch.ones(10))
        opt = build_optimizer(make_config(dict(optimizer=name, lr=0.01, weight_decay=0.1)), [p], fused=False)
        p.grad = grads.clone()
        opt.step()
        return p.detach()

    assert not torch.allclose(step("adam"), step("adamw"))


def test_warmup_lowers_the_lr_at_step_0(tiny_cfg):
    with_warmup = trainer_of(tiny_cfg, lr=1e-3, warmup_epochs=1.0, scheduler="cosine")
    without = trainer_of(tiny_cfg, lr=1e-3, scheduler="cosine")
    assert with_warmup.optimizer.param_groups[0]["lr"] == pytest.approx(1e-5)  # lr / 100
    assert without.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_schedules_have_their_shapes():
    half = {s: lr_factor(make_config(dict(scheduler=s, epochs=10)), 50, 100) for s in ("none", "cosine", "poly")}
    assert half == pytest.approx({"none": 1.0, "cosine": 0.5, "poly": 0.5 ** 0.9})
    cfg = make_config(dict(scheduler="cosine", warmup_epochs=0.3, epochs=10, lr=1e-2, min_lr=1e-4))
    assert lr_factor(cfg, 3, 100) == pytest.approx(1.0) and lr_factor(cfg, 100, 100) == pytest.approx(1e-2)


@pytest.mark.parametrize("scheduler,last_lr", [("none", 1e-3), ("cosine", 1e-5), ("poly", 1e-5)])
def test_trainer_schedule_reaches_min_lr(tiny_cfg, scheduler, last_lr):
    m = list(trainer_of(tiny_cfg, epochs=1, lr=1e-3, min_lr=1e-5, scheduler=scheduler).epochs())
    assert m[-1]["lr"] == pytest.approx(last_lr)


# ---------------------------------------------------------------------------------------------------------------
# loss: dice_weight, label_smoothing
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def logits_target():
    torch.manual_seed(0)
    target = torch.randint(0, 21, (2, 16, 16))
    target[:, :2] = IGNORE_INDEX
    return torch.randn(2, 21, 16, 16), target


def test_dice_weight_adds_weighted_soft_dice(logits_target):
    logits, target = logits_target
    ce = build_loss(make_config(dict()))(logits, target)
    with_dice = build_loss(make_config(dict(dice_weight=0.5)))(logits, target)
    torch.testing.assert_close(with_dice, ce + 0.5 * soft_dice_loss(logits, target))
    assert with_dice > ce


def test_label_smoothing_changes_the_loss(logits_target):
    logits, target = logits_target
    smooth = build_loss(make_config(dict(label_smoothing=0.1)))(logits, target)
    torch.testing.assert_close(smooth, F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX,
                                                       label_smoothing=0.1))
    # a confident, correct prediction: plain CE is ~0, the smoothed target keeps it away from 0
    valid = target.masked_fill(target == IGNORE_INDEX, 0)
    confident = F.one_hot(valid, 21).permute(0, 3, 1, 2).float() * 20
    assert build_loss(make_config(dict()))(confident, target) < 1e-6
    assert build_loss(make_config(dict(label_smoothing=0.1)))(confident, target) > 0.1


def test_trainer_uses_the_configured_loss(tiny_cfg):
    loss = trainer_of(tiny_cfg, dice_weight=0.25, label_smoothing=0.05).loss_fn
    assert loss.dice_weight == 0.25 and math.isclose(loss.label_smoothing, 0.05)
