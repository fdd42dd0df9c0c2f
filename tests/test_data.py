"""seg.data: synthetic round-trip, split cache, device augmentation, bad-data errors, the real VOC2007 set."""

from __future__ import annotations

import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from helpers import put_mask_value, truncate_half, widen_by_3
from seg.data import augment, cache
from seg.data.augment import augment_batch, batch_indices, normalize
from seg.data.cache import class_pixel_counts, load_split
from seg.data.synthetic import MARKER, make_synthetic_voc
from seg.data.voc import (
    IGNORE_INDEX,
    NUM_CLASSES,
    VOC_CLASSES,
    VOC_PALETTE,
    DataError,
    read_mask,
    read_split_ids,
    voc_dataset,
    voc_dir,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# ---- synthetic generator -----------------------------------------------------------------------------------
def test_synthetic_round_trips_through_voc_reader(synthetic_root):
    assert len(VOC_CLASSES) == NUM_CLASSES == 21 and VOC_CLASSES[0] == "background"
    assert VOC_PALETTE.shape == (256, 3) and VOC_PALETTE.dtype == np.uint8
    assert tuple(VOC_PALETTE[15]) == (192, 128, 128) and tuple(VOC_PALETTE[255]) == (224, 224, 192)
    sizes = {s: len(read_split_ids(synthetic_root, "2007", s)) for s in ("train", "val", "trainval", "test")}
    assert sizes == {"train": 24, "val": 12, "trainval": 36, "test": 12}
    ds = voc_dataset(synthetic_root, "2007", "train")
    counts = np.zeros(256, np.int64)
    for path in ds.masks:
        counts += np.bincount(np.asarray(read_mask(path)).ravel(), minlength=256)
    assert set(np.flatnonzero(counts).tolist()) <= set(range(NUM_CLASSES)) | {IGNORE_INDEX}
    assert counts[IGNORE_INDEX] > 0  # void borders exist
    assert 0.55 < counts[0] / counts[:NUM_CLASSES].sum() < 0.85
    assert (counts[:NUM_CLASSES] > 0).all(), "every class appears in train"
    assert Image.open(ds.masks[0]).mode == "P"


def test_synthetic_is_deterministic_and_idempotent(tmp_path):
    a, b = (
        make_synthetic_voc(tmp_path / "a", (3, 2, 2), 48, seed=1),
        make_synthetic_voc(tmp_path / "b", (3, 2, 2), 48, seed=1),
    )
    files = sorted(p.relative_to(voc_dir(a)) for p in voc_dir(a).rglob("*") if p.is_file())
    assert len(files) == 2 * 7 + 4 + 1  # images, masks, split files, marker
    assert all((voc_dir(a) / f).read_bytes() == (voc_dir(b) / f).read_bytes() for f in files)
    marker = voc_dir(a) / MARKER
    mtime = marker.stat().st_mtime_ns
    make_synthetic_voc(a, (3, 2, 2), 48, seed=1)
    assert marker.stat().st_mtime_ns == mtime, "an identical set is not rewritten"
    make_synthetic_voc(a, (3, 2, 2), 48, seed=2)  # different parameters: regenerated in place
    assert (voc_dir(a) / "JPEGImages/000000.jpg").read_bytes() != (
        voc_dir(b) / "JPEGImages/000000.jpg"
    ).read_bytes()
    assert not list(voc_dir(a).parent.glob(".VOC2007.*")), "no temporary folders left behind"


def test_synthetic_refuses_to_overwrite_real_data(tmp_path):
    (voc_dir(tmp_path) / "JPEGImages").mkdir(parents=True)
    with pytest.raises(DataError, match="not a segtune synthetic set"):
        make_synthetic_voc(tmp_path, (2, 1, 1), 32)


# ---- split cache -------------------------------------------------------------------------------------------
def test_cache_hit_is_identical_and_size_changes_key(tiny_cfg, monkeypatch):
    first = load_split(tiny_cfg, "val", "cpu")
    assert first.images.shape == (12, 3, 32, 32) and first.images.dtype == torch.uint8
    assert first.masks.shape == (12, 32, 32) and len(first) == 12
    monkeypatch.setattr(cache, "decode_split", lambda *a: pytest.fail("cache miss on an unchanged split"))
    again = load_split(tiny_cfg, "val", "cpu")
    assert (
        torch.equal(first.images, again.images)
        and torch.equal(first.masks, again.masks)
        and first.ids == again.ids
    )
    monkeypatch.undo()
    load_split(tiny_cfg.model_copy(update={"image_size": 48}), "val", "cpu")
    assert len(list(Path(tiny_cfg.cache_dir).glob("*.pt"))) == 2


def test_synthetic_dataset_is_generated_on_first_load(tiny_cfg, tmp_path):
    cfg = tiny_cfg.model_copy(
        update={"dataset": "synthetic", "data_root": str(tmp_path / "gen"), "synthetic_counts": (3, 2, 2)}
    )
    data = load_split(cfg, "trainval", "cpu")
    assert len(data) == 5 and data.images.shape == (5, 3, 32, 32)
    assert (voc_dir(tmp_path / "gen") / MARKER).is_file()


def test_corrupt_cache_is_rebuilt_with_warning(tiny_cfg):
    first = load_split(tiny_cfg, "val", "cpu")
    (path,) = Path(tiny_cfg.cache_dir).glob("*.pt")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        again = load_split(tiny_cfg, "val", "cpu")
    assert torch.equal(first.images, again.images)
    assert torch.load(path, weights_only=True)["images"].shape == first.images.shape  # rewritten whole


def test_class_pixel_counts_ignores_void():
    masks = torch.tensor([[[0, 0, 255], [20, 3, 255]]], dtype=torch.uint8)
    counts = class_pixel_counts(masks)
    assert counts.dtype == torch.long and counts.shape == (NUM_CLASSES,)
    assert counts.sum() == 4 and counts[0] == 2 and counts[3] == 1 and counts[20] == 1


# ---- augmentation ------------------------------------------------------------------------------------------
def _cfg(tiny_cfg, **kw):
    return tiny_cfg.model_copy(update=kw)


def _derived_batch(device, block=1, b=8, s=32):
    """Images whose red channel encodes the label (mask = red // 12), in constant blocks of `block` px."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, NUM_CLASSES, (b, s // block, s // block), generator=g)
    labels = labels.repeat_interleave(block, 1).repeat_interleave(block, 2)  # (B, S, S)
    images = torch.randint(0, 256, (b, 3, s, s), generator=g, dtype=torch.uint8)
    images[:, 0] = (labels * 12).to(torch.uint8)
    return images.to(device), labels.to(torch.uint8).to(device)


def _label_from(x):
    """Invert normalize() on the red channel and decode the label."""
    red = (x[:, 0] * augment.IMAGENET_STD[0] + augment.IMAGENET_MEAN[0]) * 255
    return (red / 12).round().long()


@pytest.mark.parametrize("device", DEVICES)
def test_no_augmentation_is_exactly_normalize(tiny_cfg, device):
    images, masks = _derived_batch(device)
    x, y = augment_batch(images, masks, tiny_cfg, torch.Generator().manual_seed(0))
    assert torch.equal(x, normalize(images)) and torch.equal(y, masks.long())
    assert x.dtype == torch.float32 and y.dtype == torch.long and x.device.type == device


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kw", [{"flip": True}, {"flip": True, "scale_min": 0.7, "scale_max": 1.6}])
def test_geometry_keeps_image_and_mask_aligned(tiny_cfg, device, kw):
    images, masks = _derived_batch(device, block=8)
    x, y = augment_batch(images, masks, _cfg(tiny_cfg, **kw), torch.Generator().manual_seed(3))
    scored = y != IGNORE_INDEX
    if "scale_min" in kw:  # bilinear image vs nearest mask may differ next to a label change: score the rest
        y3 = y[:, None].float()
        scored &= (F.max_pool2d(y3, 3, 1, 1) == -F.max_pool2d(-y3, 3, 1, 1))[:, 0]
        scored[:, [0, -1]] = scored[:, :, [0, -1]] = False  # the edge cannot see the label beyond it
    assert scored.float().mean() > 0.3
    assert torch.equal(_label_from(x)[scored], y[scored])
    changed = ~(x == normalize(images)).flatten(1).all(1)
    if "scale_min" in kw:  # every sample draws its own zoom (never exactly 1)
        assert changed.all(), changed
    else:  # flip only: some samples mirrored, others left exactly as they were
        assert 0 < changed.sum() < len(changed), changed


@pytest.mark.parametrize("device", DEVICES)
def test_zoom_out_fills_void_and_black(tiny_cfg, device):
    images, masks = _derived_batch(device)
    x, y = augment_batch(
        images, masks, _cfg(tiny_cfg, scale_min=0.5, scale_max=0.5), torch.Generator().manual_seed(0)
    )
    outside = y == IGNORE_INDEX
    assert 0.7 < outside.float().mean().item() < 0.8  # a half-size image leaves 3/4 of the output empty
    black = normalize(torch.zeros(1, 3, 1, 1, dtype=torch.uint8, device=device))
    assert torch.allclose(x.permute(0, 2, 3, 1)[outside], black.view(1, 3).expand(int(outside.sum()), 3))


@pytest.mark.parametrize("device", DEVICES)
def test_same_seed_same_batch(tiny_cfg, device):
    images, masks = _derived_batch(device)
    cfg = _cfg(tiny_cfg, flip=True, scale_min=0.5, scale_max=2.0, color_jitter=0.4)
    a, b, c = (augment_batch(images, masks, cfg, torch.Generator().manual_seed(s)) for s in (7, 7, 8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_color_jitter_changes_image_only(tiny_cfg):
    images, masks = _derived_batch("cpu")
    x, y = augment_batch(images, masks, _cfg(tiny_cfg, color_jitter=0.5), torch.Generator().manual_seed(0))
    assert torch.equal(y, masks.long()) and not torch.allclose(x, normalize(images))
    lo, hi = normalize(torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 1, 1)).flatten(
        1
    )
    assert (x >= lo.view(1, 3, 1, 1) - 1e-5).all() and (x <= hi.view(1, 3, 1, 1) + 1e-5).all()


@pytest.mark.parametrize(
    "n,bs,drop_last,sizes", [(10, 4, True, [4, 4]), (10, 4, False, [4, 4, 2]), (8, 4, True, [4, 4])]
)
def test_batch_indices(n, bs, drop_last, sizes):
    batches = list(batch_indices(n, bs, torch.Generator().manual_seed(0), shuffle=True, drop_last=drop_last))
    assert [len(b) for b in batches] == sizes and len(set(torch.cat(batches).tolist())) == sum(sizes)
    again = list(batch_indices(n, bs, torch.Generator().manual_seed(0), shuffle=True, drop_last=drop_last))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
    assert torch.equal(
        torch.cat(list(batch_indices(n, bs, None, shuffle=False, drop_last=False))), torch.arange(n)
    )


# ---- bad data: every case is a DataError that names the file -----------------------------------------------
def _garble(p: Path):
    data = bytearray(p.read_bytes())
    data[60:] = bytes(len(data) - 60)  # keep the PNG signature and IHDR, zero the compressed data
    p.write_bytes(bytes(data))


BAD_CASES = {
    "truncated_jpeg": ("JPEGImages/000000.jpg", truncate_half, "000000.jpg"),
    "corrupt_png": ("SegmentationClass/000000.png", _garble, "000000.png"),
    "size_mismatch": ("SegmentationClass/000000.png", widen_by_3, "000000.png"),
    "mask_value_37": ("SegmentationClass/000000.png", put_mask_value, r"000000.png has values \[37\]"),
    "missing_split": ("ImageSets/Segmentation/train.txt", Path.unlink, "train.txt does not exist"),
    "empty_split": ("ImageSets/Segmentation/train.txt", lambda p: p.write_text("\n"), "train.txt is empty"),
    "id_without_image": (
        "ImageSets/Segmentation/train.txt",
        lambda p: p.write_text(p.read_text() + "999999\n"),
        "999999.jpg",
    ),
}


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_data_raises_data_error_naming_the_file(tiny_cfg, synthetic_root, tmp_path, case):
    rel, breaker, message = BAD_CASES[case]
    root = tmp_path / "broken"
    shutil.copytree(synthetic_root / "VOCdevkit", root / "VOCdevkit")
    breaker(voc_dir(root) / rel)
    with pytest.raises(DataError, match=message):
        load_split(tiny_cfg.model_copy(update={"data_root": str(root)}), "train", "cpu")


def test_missing_root_explains_layout(tiny_cfg, tmp_path):
    with pytest.raises(
        DataError, match=r"(?s)nowhere.*JPEGImages.*SegmentationClass.*ImageSets/Segmentation.*download: true"
    ):
        load_split(tiny_cfg.model_copy(update={"data_root": str(tmp_path / "nowhere")}), "train", "cpu")


def test_download_without_network_says_so(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torchvision.datasets.voc.download_and_extract_archive", offline)
    with pytest.raises(DataError, match="(?s)network may be unreachable.*VOCdevkit/VOC2007/JPEGImages"):
        voc_dataset(tmp_path, "2007", "train", download=True)


# ---- the real VOC2007 set ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def voc_train(voc_root, tmp_path_factory):
    from seg.config import make_config

    cfg = make_config(
        dict(data_root=str(voc_root), image_size=64, cache_dir=str(tmp_path_factory.mktemp("voc-cache")))
    )
    return load_split(cfg, "train", "cpu")


@pytest.mark.voc
def test_real_voc2007_splits(voc_root):
    ids = {s: read_split_ids(voc_root, "2007", s) for s in ("train", "val", "trainval", "test")}
    assert {s: len(v) for s, v in ids.items()} == {"train": 209, "val": 213, "trainval": 422, "test": 210}
    assert set(ids["trainval"]) == set(ids["train"]) | set(ids["val"]) and not set(ids["trainval"]) & set(
        ids["test"]
    )
    assert len(voc_dataset(voc_root, "2007", "test")) == 210


@pytest.mark.voc
def test_real_voc2007_train_loads(voc_train):
    assert voc_train.images.shape == (209, 3, 64, 64) and voc_train.masks.shape == (209, 64, 64)
    assert voc_train.ids[:3] == ["000032", "000033", "000042"]
    assert set(voc_train.masks.unique().tolist()) <= set(range(NUM_CLASSES)) | {IGNORE_INDEX}
    counts = class_pixel_counts(voc_train.masks)
    assert (counts > 0).all()
    assert abs(counts[0].item() / counts.sum().item() - 0.72) < 0.01
