"""Loss and metric tests on hand-computed examples."""
from __future__ import annotations

import math

import pytest
import torch

from seg.config import make_config
from seg.losses import build_loss, class_weights, inverse_frequency_weights, soft_dice_loss
from seg.metrics import BatchMeanScores, ConfusionMatrix, constant_prediction_scores

C = 21


def test_confusion_matrix_hand_example():
    # classes 0, 1, 2 appear; 3..20 never (NaN IoU, left out of the mIoU); two void pixels are not counted
    target = torch.tensor([[[0, 0, 1, 1], [2, 2, 255, 255]]])
    pred = torch.tensor([[[0, 1, 1, 1], [2, 0, 5, 7]]])
    cm = ConfusionMatrix(num_classes=C)
    cm.update(pred[:, :1], target[:, :1])  # accumulate over two updates
    cm.update(pred[:, 1:], target[:, 1:])
    m = cm.matrix
    assert m.shape == (C, C) and m.dtype == torch.int64 and m.sum() == 6
    assert m[0, 0] == 1 and m[0, 1] == 1 and m[1, 1] == 2 and m[2, 2] == 1 and m[2, 0] == 1
    out = cm.compute()
    assert out["pixel_acc"] == pytest.approx(4 / 6)
    # IoU: class 0: tp 1 / (2 + 2 - 1) = 1/3; class 1: 2 / (2 + 3 - 2) = 2/3; class 2: 1 / (2 + 1 - 1) = 1/2
    iou = out["iou"]
    assert iou.shape == (C,)
    torch.testing.assert_close(iou[:3], torch.tensor([1 / 3, 2 / 3, 1 / 2]))
    assert torch.isnan(iou[3:]).all()  # 5 and 7 were predicted only at void pixels: not counted
    assert out["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    cm.reset()
    assert cm.matrix.sum() == 0 and math.isnan(cm.compute()["miou"])


def test_paper_scores_are_the_mean_over_batches_of_each_batch_miou():
    # three 1x4 images, batches of 2: batch A = images 0-1, batch B = image 2 (the last batch counts as one)
    target = torch.tensor([[[0, 0, 1, 1]], [[0, 0, 0, 255]], [[2, 2, 0, 0]]])
    pred = torch.tensor([[[0, 1, 1, 1]], [[0, 0, 0, 3]], [[2, 0, 0, 0]]])
    # A: 7 valid pixels, 6 right. IoU 0: tp 4 / (5 + 4 - 4) = 4/5; class 1: 2 / (2 + 3 - 2) = 2/3 -> mIoU 11/15
    # B: 4 pixels, 3 right. IoU 0: 2 / (2 + 3 - 2) = 2/3; class 2: 1 / (2 + 1 - 1) = 1/2 -> mIoU 7/12
    scores = BatchMeanScores(num_classes=C, batch_size=2)
    scores.update(pred[:2], target[:2])  # an evaluation batch holding one whole paper batch
    scores.update(pred[2:], target[2:])
    out = scores.compute()
    assert out["miou"] == pytest.approx((11 / 15 + 7 / 12) / 2)
    assert out["pixel_acc"] == pytest.approx((6 / 7 + 3 / 4) / 2)
    # one update over all three images splits them into the same batches
    whole = BatchMeanScores(num_classes=C, batch_size=2)
    whole.update(pred, target)
    assert whole.compute() == pytest.approx(out)
    # the dataset-level mIoU of the same predictions is a different number: one matrix for the split
    cm = ConfusionMatrix(num_classes=C)
    cm.update(pred, target)
    assert cm.compute()["miou"] == pytest.approx((6 / 8 + 2 / 3 + 1 / 2) / 3)
    assert math.isnan(BatchMeanScores(num_classes=C).compute()["miou"])


def test_background_everywhere_scores_higher_per_batch_than_over_the_split():
    # four images, each with background and one object class of its own (1..4); the model predicts background
    masks = torch.zeros(4, 4, 4, dtype=torch.int64)
    for i in range(4):
        masks[i, :2, :2] = i + 1  # 4 object pixels of 16
    out = constant_prediction_scores(masks, label=0, num_classes=C, paper_batch=1)
    # split: IoU background 48/64, classes 1-4 zero -> 0.75 / 5; per image: background 12/16, one class 0 -> 0.375
    assert out["miou"] == pytest.approx(0.75 / 5) and out["pixel_acc"] == pytest.approx(0.75)
    assert out["miou_paper"] == pytest.approx(0.375) and out["pixel_acc_paper"] == pytest.approx(0.75)
    assert constant_prediction_scores(masks, num_classes=C, paper_batch=4)["miou_paper"] == pytest.approx(0.15)


def test_inverse_frequency_weights_hand_counts():
    counts = torch.zeros(C, dtype=torch.long)
    counts[0], counts[1], counts[2], counts[3] = 1000, 1, 4, 0  # class 3 absent from the training set
    counts[4:] = 2
    w = inverse_frequency_weights(counts, bg_weight=0.15)
    assert w.dtype == torch.float32 and w.shape == (C,)
    assert w[0].item() == pytest.approx(0.15)  # background fixed
    assert w[1].item() == pytest.approx(1.0)  # 2 - 1/1
    assert w[2].item() == pytest.approx(1.75)  # 2 - 1/4
    assert w[3].item() == pytest.approx(2.0)  # absent class
    assert torch.allclose(w[4:], torch.tensor(1.5))


def test_class_weight_strategies():
    counts = torch.full((C,), 10)
    assert class_weights(make_config(dict(class_weights="none")), counts) is None
    w = class_weights(make_config(dict(class_weights="background")), counts)
    assert w[0].item() == pytest.approx(0.1) and torch.all(w[1:] == 1)
    w = class_weights(make_config(dict(class_weights="background", bg_weight=0.3)), None)
    assert w[0].item() == pytest.approx(0.3)
    w = class_weights(make_config(dict(class_weights="inverse_frequency")), counts)
    assert w[0].item() == pytest.approx(0.15) and torch.allclose(w[1:], torch.tensor(1.9))


def random_batch(seed=0, b=2, h=8, w=8):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, C, h, w, generator=g)
    target = torch.randint(0, C, (b, h, w), generator=g)
    target[:, :2] = 255  # void rows
    return logits, target


@pytest.mark.parametrize("weights", ["none", "inverse_frequency", "background"])
def test_loss_ignores_void_pixels(weights):
    loss_fn = build_loss(make_config(dict(class_weights=weights, dice_weight=0.5, label_smoothing=0.1)),
                         torch.arange(1, C + 1))
    logits, target = random_batch()
    other = logits.clone()
    other[:, :, :2] = torch.randn_like(other[:, :, :2]) * 10  # new predictions only where the label is void
    a, b = loss_fn(logits, target), loss_fn(other, target)
    assert a.ndim == 0 and torch.isfinite(a)
    torch.testing.assert_close(a, b)


def test_loss_matches_weighted_cross_entropy():
    cfg = make_config(dict(class_weights="background"))
    logits, target = random_batch()
    weight = class_weights(cfg, None)
    expected = torch.nn.functional.cross_entropy(logits, target, weight=weight, ignore_index=255)
    torch.testing.assert_close(build_loss(cfg, None)(logits, target), expected)


def test_dice_term_increases_loss_on_bad_prediction():
    _, target = random_batch()
    bad = torch.nn.functional.one_hot((target.clamp(max=C - 1) + 1) % C, C).permute(0, 3, 1, 2).float() * 5
    ce = build_loss(make_config({}), None)(bad, target)
    both = build_loss(make_config(dict(dice_weight=1.0)), None)(bad, target)
    assert both > ce
    assert soft_dice_loss(bad, target).item() > 0.9  # almost no overlap
    good = torch.nn.functional.one_hot(target.clamp(max=C - 1), C).permute(0, 3, 1, 2).float() * 20
    assert soft_dice_loss(good, target).item() < 1e-3


def test_loss_under_bf16_autocast():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, C, 1)
    x, (_, target) = torch.randn(2, 3, 8, 8), random_batch()
    loss_fn = build_loss(make_config(dict(class_weights="background", dice_weight=0.5)), None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = conv(x)
        assert logits.dtype == torch.bfloat16
        loss = loss_fn(logits, target)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(conv.weight.grad).all()
    torch.testing.assert_close(loss, loss_fn(conv(x), target), rtol=0.05, atol=0.05)
