"""The training loop: learns, is reproducible, reports the best checkpoint, resumes exactly, stops on NaN."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from seg.config import make_config
from seg.evaluate import evaluate
from seg.train import main
from seg.trainer import NonFiniteLossError, Trainer, lr_factor


def run(cfg, n=None):
    t = Trainer(cfg)
    return t, [m for _, m in zip(range(n or cfg.epochs), t.epochs())]


def test_two_epochs_lower_the_loss_and_report_the_vocabulary(tiny_cfg):
    cfg = tiny_cfg.model_copy(update={"epochs": 3, "lr": 3e-3})
    _, hist = run(cfg)
    assert [m["epoch"] for m in hist] == [1, 2, 3]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    keys = {"epoch", "train_loss", "val_loss", "val_miou", "val_pixel_acc", "lr", "images_per_s", "seconds",
            "compile_seconds", "best_epoch", "best_val_miou", "best_val_pixel_acc", "test_miou", "test_pixel_acc",
            "iou_background", "iou_tvmonitor", "pretrained", "val_miou_paper", "val_pixel_acc_paper",
            "best_val_miou_paper", "best_val_pixel_acc_paper", "test_miou_paper", "test_pixel_acc_paper"}
    assert keys <= set(hist[0])
    assert all(0 <= m["val_miou"] <= 1 and 0 <= m["val_pixel_acc"] <= 1 for m in hist)


def test_same_seed_same_metrics_other_seed_differs(tiny_cfg):
    a = run(tiny_cfg)[1]
    b = run(tiny_cfg)[1]
    c = run(tiny_cfg.model_copy(update={"seed": 1}))[1]
    pick = lambda h: [(m["train_loss"], m["val_loss"], m["val_miou"]) for m in h]  # noqa: E731
    assert pick(a) == pick(b)
    assert pick(a) != pick(c)


def test_reported_test_metrics_are_those_of_the_best_val_checkpoint(tiny_cfg):
    cfg = tiny_cfg.model_copy(update={"epochs": 3})
    t, hist = run(cfg)
    best = max(hist, key=lambda m: m["val_miou"])
    assert hist[-1]["best_epoch"] == best["epoch"]
    assert hist[-1]["best_val_miou"] == pytest.approx(best["val_miou"])
    # after the last epoch the trainer holds the best weights (the paper's "load the best model")
    test, _ = evaluate(t.model, t.loss_fn, t.data["test"], t.levers, 32)
    assert test["miou"] == pytest.approx(hist[-1]["test_miou"], abs=1e-6)
    val, _ = evaluate(t.model, t.loss_fn, t.data["val"], t.levers, 32)
    assert val["miou"] == pytest.approx(best["val_miou"], abs=1e-6)


def test_paper_scores_average_each_paper_batch_whatever_the_evaluation_batch(tiny_cfg):
    t, hist = run(tiny_cfg.model_copy(update={"epochs": 1, "paper_metric_batch": 5}))
    data = t.data["val"]  # 12 images: paper batches of 5, 5 and 2
    whole, _ = evaluate(t.model, t.loss_fn, data, t.levers, 32, paper_batch=5)
    assert hist[-1]["val_miou_paper"] == pytest.approx(whole["miou_paper"], abs=1e-6)
    # by hand: each run of 5 images in split order scored alone, then the plain mean over those batches
    per_batch = []
    for start in range(0, len(data), 5):
        chunk = type(data)(data.images[start:start + 5], data.masks[start:start + 5], data.ids[start:start + 5])
        one, _ = evaluate(t.model, t.loss_fn, chunk, t.levers, 5)
        per_batch.append((one["miou"], one["pixel_acc"]))
    assert len(per_batch) == 3 and whole["miou_paper"] != pytest.approx(whole["miou"])
    # evaluation batches of 8 (rounded up to 10: whole paper batches), 32 or 4 all give the same paper scores
    for batch in (4, 8, 32):
        out, _ = evaluate(t.model, t.loss_fn, data, t.levers, batch, paper_batch=5)
        assert out["miou_paper"] == pytest.approx(np.mean([m for m, _ in per_batch]), abs=1e-6)
        assert out["pixel_acc_paper"] == pytest.approx(np.mean([a for _, a in per_batch]), abs=1e-6)
        assert out["miou"] == pytest.approx(whole["miou"], abs=1e-6)


def test_save_and_load_continue_exactly(tiny_cfg, tmp_path):
    cfg = tiny_cfg.model_copy(update={"epochs": 3, "flip": True, "scheduler": "cosine", "scale_max": 1.5})
    _, straight = run(cfg)
    first, hist = run(cfg, n=1)
    first.save(tmp_path / "state.pt")
    second = Trainer(cfg)
    second.load(tmp_path / "state.pt")
    hist += list(second.epochs())
    assert [m["epoch"] for m in hist] == [1, 2, 3]
    for a, b in zip(straight, hist):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["val_miou"] == pytest.approx(b["val_miou"], rel=1e-6)
        # the 5-epoch mean spans the save: the resumed run knows the epochs before it
        assert a["val_miou_avg5"] == pytest.approx(b["val_miou_avg5"], rel=1e-6)
    vals = [m["val_miou"] for m in straight]
    assert hist[-1]["val_miou_avg5"] == pytest.approx(sum(vals) / 3)  # fewer than 5 epochs: all of them
    assert hist[-1]["max_val_miou_avg5"] == pytest.approx(sum(vals) / 3)  # no full window yet: the mean itself


@pytest.mark.parametrize("vals, avg, top", [
    ([0.1], 0.1, 0.1),
    ([0.1, 0.3], 0.2, 0.2),
    ([0.3, 0.1, 0.2], 0.2, 0.2),  # before epoch 5 the top is the mean itself, not a shorter window's
    ([0.5, 0.1, 0.1, 0.1, 0.1, 0.1], 0.1, 0.18),  # a lucky first epoch counts a fifth, in full windows only
    ([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6], 0.4, 0.4),  # the window slides: epochs 3-7
    ([0.2, 0.2, 0.9, 0.2, 0.2, 0.2, 0.2, 0.2], 0.2, (0.2 * 4 + 0.9) / 5),  # one spike moves the mean by a fifth
])
def test_val_miou_avg5_is_the_mean_of_the_last_five_epochs_and_its_maximum(vals, avg, top):
    from seg.epoch_metrics import avg5

    assert avg5(vals) == (pytest.approx(avg), pytest.approx(top))


def test_nan_loss_stops_the_run(tiny_cfg):
    t = Trainer(tiny_cfg)
    with torch.no_grad():
        next(iter(t.model.parameters())).fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="diverged"):
        next(t.epochs())


def test_epoch_hooks_run_before_each_epoch_and_can_stop_it(tiny_cfg):
    seen = []

    def hook(epoch, trainer):
        seen.append((epoch, trainer.epoch))
        if epoch == 2:
            raise RuntimeError("stop at epoch 2")

    t = Trainer(tiny_cfg, hooks=[hook])
    it = t.epochs()
    next(it)
    with pytest.raises(RuntimeError, match="stop at epoch 2"):
        next(it)
    assert seen == [(1, 0), (2, 1)] and t.epoch == 1  # called before the epoch trains; epoch 2 never ran


def test_best_masks_are_kept(tiny_cfg, tmp_path):
    t, hist = run(tiny_cfg)
    assert t.save_masks(tmp_path / "m.npz")
    z = np.load(tmp_path / "m.npz")
    n, s = tiny_cfg.num_masks, tiny_cfg.image_size
    assert z["images"].shape == (n, s, s, 3) and z["gt"].shape == z["pred"].shape == (n, s, s)
    assert int(z["epoch"]) == hist[-1]["best_epoch"]
    assert list(z["ids"]) == t.data["val"].ids[:n]


@pytest.mark.parametrize("scheduler", ["none", "cosine", "poly"])
def test_lr_schedule(scheduler):
    cfg = make_config(dict(lr=1e-2, min_lr=1e-4, scheduler=scheduler, warmup_epochs=1, epochs=10))
    f = [lr_factor(cfg, s, 100) for s in range(100)]
    assert f[0] == pytest.approx(0.01) and f[10] == pytest.approx(1.0)  # warm-up over the first epoch
    if scheduler == "none":
        assert f[-1] == 1.0
    else:
        assert f[-1] < 0.1 and all(a >= b for a, b in zip(f[10:], f[11:]))
        assert f[-1] >= 1e-4 / 1e-2


def test_cli_writes_metrics_and_resumes(tiny_cfg, tmp_path, capsys):
    cfgfile = tmp_path / "c.yaml"
    cfgfile.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in tiny_cfg.model_dump(mode="json").items()))
    out = tmp_path / "run"
    assert main(["--config", str(cfgfile), "--set", "epochs=1", "--out", str(out)]) == 0
    assert main(["--config", str(cfgfile), "--set", "epochs=2", "--out", str(out)]) == 0  # continues
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    summary = json.loads((out / "summary.json").read_text())
    assert math.isfinite(summary["best_val_miou"]) and (out / "best.pt").exists()
    assert "resuming" in capsys.readouterr().out
    # another configuration over the same folder: one line naming the folder and the field, nothing trained
    assert main(["--config", str(cfgfile), "--set", "epochs=3", "--set", "lr=5e-3", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out) in err and "lr 0.001 there, 0.005 here" in err, err
    assert "epochs" not in err and len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_cli_rejects_unknown_key(tmp_path, capsys):
    assert main(["--set", "learning_rate=1"]) == 2
    assert "unknown key 'learning_rate'" in capsys.readouterr().err


@pytest.mark.parametrize("arch,bad,good", [("fcn", 48, 64), ("unet", 40, 48), ("resnet34_fcn", 100, 96)])
def test_image_size_must_fit_the_stride(arch, bad, good):
    from seg.config import ConfigError

    with pytest.raises(ConfigError, match=f"image_size {bad} is not a multiple"):
        make_config(dict(arch=arch, image_size=bad))
    from seg.models import build_model

    model = build_model(make_config(dict(arch=arch, image_size=good, width=0.25)), num_classes=3).eval()
    with torch.no_grad():  # a size the config accepts runs through the model at full resolution
        assert model(torch.zeros(1, 3, good, good)).shape == (1, 3, good, good)
