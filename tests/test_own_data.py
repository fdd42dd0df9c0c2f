"""Your own data and models: folder datasets with any class count, the resize policy, smp models and their
weights, the exported model folder, and predict; one end-to-end search -> export -> predict on a generated 5-class
folder dataset with non-square images, whose predictions reproduce the leaderboard's test mIoU.

    pytest tests/test_own_data.py                 # the fast tests (seconds)
    pytest -m slow tests/test_own_data.py -s      # + the end-to-end search (about a minute; prints both scores)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from seg.config import make_config
from seg.data.classes import IGNORE_INDEX, VOC, column_names
from seg.data.folder import folder_split, read_classes
from seg.data.resize import fit_mask, valid_size
from seg.data.synthetic import make_synthetic_folder
from seg.data.voc import DataError, read_mask
from seg.metrics import ConfusionMatrix
from seg.models.spec import SMP_ARCHS, SMP_ENCODERS
from seg.models.weights import PretrainedWeightsError

REPO = Path(__file__).resolve().parents[1]
NUM = 5  # classes of the generated folder dataset


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory) -> Path:
    """A 5-class folder dataset, images about 60x40 (wider than high), 16/6/6 images."""
    return make_synthetic_folder(tmp_path_factory.mktemp("folder5"), NUM, counts=(16, 6, 6), size=40)


def tiny(root: Path, tmp: Path, **kw):
    return make_config(dict(dataset="folder", data_root=str(root), image_size=32, batch_size=4, epochs=1, width=0.25,
                            device="cpu", cache_dir=str(tmp / "cache"), num_masks=2, **kw))


# ---- classes and the folder layout -------------------------------------------------------------------------
def test_column_names_are_safe_unique_and_leave_voc_alone():
    assert column_names(VOC.names) == VOC.names
    assert column_names(["Traffic light", "traffic-light", "", "Café 2"]) == (
        "traffic_light", "traffic_light_1", "class2", "caf_2")


def test_folder_dataset_reads_its_classes_and_splits(folder_root):
    classes = read_classes(folder_root)
    assert classes.num_classes == NUM and classes.names[0] == "background" and len(classes.palette) == NUM
    sizes = {s: len(folder_split(folder_root, s).ids) for s in ("train", "val", "test", "trainval")}
    assert sizes == {"train": 16, "val": 6, "test": 6, "trainval": 22}
    w, h = Image.open(folder_split(folder_root, "test").images[0]).size
    assert w > h  # non-square on purpose


def test_split_fractions_are_seeded_and_disjoint(folder_root, tmp_path):
    import shutil

    root = tmp_path / "nosplits"
    shutil.copytree(folder_root, root, ignore=shutil.ignore_patterns("splits"))
    a = {s: folder_split(root, s, (0.5, 0.25, 0.25), seed=3).ids for s in ("train", "val", "test")}
    b = {s: folder_split(root, s, (0.5, 0.25, 0.25), seed=3).ids for s in ("train", "val", "test")}
    assert a == b and sum(map(len, a.values())) == 28
    assert not set(a["train"]) & set(a["val"]) and not set(a["val"]) & set(a["test"])
    assert folder_split(root, "train", (0.5, 0.25, 0.25), seed=4).ids != a["train"]


def test_pad_policy_keeps_the_aspect_ratio_and_pads_with_void():
    mask = Image.fromarray(np.ones((40, 60), np.uint8))
    out = fit_mask(mask, 32, "pad")
    w, h = valid_size(60, 40, 32, "pad")
    assert (w, h) == (32, 21) and out.shape == (32, 32)
    assert (out[:h, :w] == 1).all() and (out[h:] == IGNORE_INDEX).all()
    assert (fit_mask(mask, 32, "squash") == 1).all()


def test_a_dataset_void_value_is_remapped_to_255(tmp_path):
    from seg.data.classes import ClassInfo, default_palette

    path = tmp_path / "m.png"
    Image.fromarray(np.array([[0, 1], [9, 2]], np.uint8)).save(path)
    got = np.asarray(read_mask(path, ClassInfo(("a", "b", "c"), default_palette(3), ignore_index=9)))
    assert got.tolist() == [[0, 1], [255, 2]]
    with pytest.raises(DataError, match=r"values \[9\] outside the class indices 0..2 listed in x.yaml"):
        read_mask(path, ClassInfo(("a", "b", "c"), default_palette(3)), "x.yaml")


def test_training_on_a_folder_dataset_reports_its_own_class_columns(folder_root, tmp_path):
    from seg.train import Trainer

    trainer = Trainer(tiny(folder_root, tmp_path, class_weights="background"))
    m = next(trainer.epochs())
    assert trainer.data["train"].images.shape == (16, 3, 32, 32)
    cols = [k for k in m if k.startswith("iou_")]
    assert cols == [f"iou_{c}" for c in column_names(read_classes(folder_root).names)] and len(cols) == NUM
    assert "iou_ellipse_plain" in cols
    assert trainer.state_dict()["classes"]["names"][0] == "background"


def test_the_data_section_names_map_onto_the_registry(tmp_path):
    from search.space.schema import DataSpec
    from seg.data.registry import DATASETS

    fields = {d: DataSpec(dataset=d).train_fields() for d in ("voc2007", "voc2012", "folder", "synthetic")}
    assert {d: (f["dataset"], f["year"]) for d, f in fields.items()} == {
        "voc2007": ("voc", "2007"), "voc2012": ("voc", "2012"), "folder": ("folder", "2007"),
        "synthetic": ("synthetic", "2007")}
    assert {f["dataset"] for f in fields.values()} == set(DATASETS)
    cfg = make_config(dict(dataset="voc", year="2012", data_root=str(tmp_path), test_split=None, image_size=32))
    from seg.data.registry import split_files

    with pytest.raises(DataError, match="(?s)VOCdevkit/VOC2012 does not exist.*download: true"):
        split_files(cfg, "train")  # offline and absent: the layout and the ways to get it


def test_synthetic_with_n_classes_is_a_folder_dataset(tmp_path):
    from seg.data.registry import dataset_classes

    cfg = make_config(dict(dataset="synthetic", synthetic_classes=3, synthetic_counts=(4, 2, 2), synthetic_size=32,
                           data_root=str(tmp_path / "s3"), image_size=32))
    assert dataset_classes(cfg).num_classes == 3 and cfg.effective_resize == "pad"
    assert (tmp_path / "s3" / "classes.yaml").is_file() and (tmp_path / "s3" / "images").is_dir()


# ---- smp models and their weights -----------------------------------------------------------------------------
def test_the_listed_encoders_are_known_to_smp():
    from segmentation_models_pytorch.encoders import get_encoder_names

    assert set(SMP_ENCODERS) <= set(get_encoder_names())


@pytest.mark.parametrize("arch", SMP_ARCHS)
def test_smp_models_give_a_head_per_class(arch):
    from seg.models import build_model

    model = build_model(make_config(dict(arch=arch, image_size=64, width=0.25)), num_classes=NUM).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 64, 96)).shape == (2, NUM, 64, 96)
    assert model.pretrained_loaded is False


def test_smp_pretrained_offline_fails_clearly_and_loads_a_given_file(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from seg.models import build_model
    from seg.models.smp import cached_weights_path

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # an empty cache; SEGTUNE_OFFLINE is set
    cfg = make_config(dict(arch="smp_unet", encoder="resnet18", pretrained=True, image_size=32, width=0.25))
    with pytest.raises(PretrainedWeightsError) as err:
        build_model(cfg, NUM)
    msg = str(err.value)
    assert str(cached_weights_path("resnet18")) in msg and "pretrained=false" in msg and "pretrained_path" in msg
    assert "no download tried" in msg
    # a state_dict of the encoder given as pretrained_path is loaded
    donor = build_model(cfg.model_copy(update={"pretrained": False}), NUM)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in donor.encoder.state_dict().items()}, str(tmp_path / "enc.safetensors"))
    model = build_model(cfg.model_copy(update={"pretrained_path": str(tmp_path / "enc.safetensors")}), NUM)
    assert model.pretrained_loaded is True
    torch.testing.assert_close(model.encoder.conv1.weight, donor.encoder.conv1.weight, rtol=0, atol=0)


def test_resnet34_trunk_downloads_through_torchvision_when_online(tmp_path, monkeypatch):
    """Online, a missing hub file is fetched through torchvision's weights API (a stand-in here: no network)."""
    from torchvision.models import resnet34

    from seg.models import resnet_fcn

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("SEGTUNE_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    class Weights:  # what the real ResNet34_Weights.IMAGENET1K_V1 does: download into the hub cache
        url = resnet_fcn.WEIGHTS.url

        def get_state_dict(self, progress=False):
            path = resnet_fcn.hub_weights_path()
            path.parent.mkdir(parents=True)
            torch.save(resnet34(weights=None).state_dict(), path)

    monkeypatch.setattr(resnet_fcn, "WEIGHTS", Weights())
    assert resnet_fcn.ensure_trunk_weights() == resnet_fcn.hub_weights_path()

    class Unreachable(Weights):
        def get_state_dict(self, progress=False):
            raise OSError("[Errno -3] Temporary failure in name resolution")

    (tmp_path / "hub").rename(tmp_path / "hub-old")
    monkeypatch.setattr(resnet_fcn, "WEIGHTS", Unreachable())
    with pytest.raises(PretrainedWeightsError, match="(?s)downloading it failed.*name resolution.*pretrained=false"):
        resnet_fcn.ensure_trunk_weights()


# ---- export and predict (in process) ----------------------------------------------------------------------------
def test_export_then_predict_writes_masks_at_each_image_size(folder_root, tmp_path, capsys):
    """seg.train's model folder -> predict: one error line for an unreadable image, the others written at their own
    size; the batch size changes nothing but the batches."""
    from seg.export import load_model
    from seg.predict import main as predict
    from seg.train import main as train

    assert train(["--set", "dataset=folder", "--set", f"data_root={folder_root}", "--set", "image_size=32",
                  "--set", "epochs=1", "--set", "batch_size=4", "--set", "width=0.25", "--set", "device=cpu",
                  "--set", f"cache_dir={tmp_path / 'cache'}", "--out", str(tmp_path / "run")]) == 0
    model_dir = tmp_path / "run" / "model"
    m = load_model(model_dir)
    assert m.classes.num_classes == NUM and json.loads((model_dir / "model.json").read_text())["resize"] == "pad"
    assert "test_miou" in (model_dir / "MODEL_CARD.md").read_text()
    test = folder_split(folder_root, "test")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    capsys.readouterr()
    rc = predict([str(model_dir), *test.images[:2], str(broken), "--out", str(tmp_path / "pred")])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("error: ") == 1 and "broken.jpg" in err  # one clear error, the rest written
    for path in test.images[:2]:
        mask = Image.open(tmp_path / "pred" / f"{Path(path).stem}.png")
        assert mask.mode == "P" and mask.size == Image.open(path).size
        assert set(np.unique(np.asarray(mask)).tolist()) <= set(range(NUM))
        assert (tmp_path / "pred" / f"{Path(path).stem}_overlay.jpg").is_file()
    # --batch-size over several batches (4 + 2, then 6 of 1) writes the same masks
    outs = {bs: tmp_path / f"pred-{bs}" for bs in ("4", "1")}
    for bs, out in outs.items():
        assert predict([str(model_dir), *test.images, "--batch-size", bs, "--training-size", "--out", str(out)]) == 0
        assert f"{len(test.ids)} of {len(test.ids)} images" in capsys.readouterr().out
    for i in test.ids:
        for rel in (f"{i}.png", f"training-size/{i}.png"):
            a, b = (np.asarray(Image.open(out / rel)) for out in outs.values())
            assert a.shape == b.shape and np.array_equal(a, b), rel


class ColourModel(torch.nn.Module):
    """A real 1x1-conv model with set weights: red pixels -> class 1, blue -> class 2, the padding's ImageNet-mean
    colour -> class 0. Its prediction is the scene itself, so where predict puts each pixel can be checked."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.copy_(torch.tensor([1.0, 0.0, 0.0]))  # normalised mean colour: (1, 0, 0) -> class 0
            self.conv.weight[1, 0, 0, 0], self.conv.weight[1, 2, 0, 0] = 1.0, -1.0  # red - blue
            self.conv.weight[2, 0, 0, 0], self.conv.weight[2, 2, 0, 0] = -1.0, 1.0  # blue - red

    def forward(self, x):  # (B, 3, S, S) -> (B, 3, S, S)
        return self.conv(x)


def _scene(w: int, h: int, xs: list[int], ys: list[int]) -> tuple[Image.Image, np.ndarray]:
    """A w x h image of red/blue cells split at columns xs and rows ys, and its label map (1 red, 2 blue)."""
    col = np.searchsorted(xs, np.arange(w), side="right")
    row = np.searchsorted(ys, np.arange(h), side="right")
    labels = ((row[:, None] + col[None, :]) % 2 + 1).astype(np.uint8)  # (H, W)
    rgb = np.where(labels[..., None] == 1, np.uint8([255, 0, 0]), np.uint8([0, 0, 255])).astype(np.uint8)
    return Image.fromarray(rgb), labels


def _near_a_boundary(labels: np.ndarray, radius: int) -> np.ndarray:
    t = torch.from_numpy(labels.astype(np.float32))[None, None]
    k = 2 * radius + 1
    return (F.max_pool2d(t, k, 1, radius) != -F.max_pool2d(-t, k, 1, radius))[0, 0].numpy()


@pytest.mark.parametrize("policy", ["pad", "squash"])
def test_predicted_masks_land_on_each_images_own_pixels(policy):
    """The crop of the valid region and the resize back to each image's own size: a model that predicts the scene
    itself must give every pixel its own label, up to one pixel at a cell boundary (two resamplings), for wide,
    tall and square images in one batch. A crop off by one training pixel, or one that keeps the padding, moves
    whole rows or columns of the mask."""
    from seg.data.classes import ClassInfo, default_palette
    from seg.export import ExportedModel
    from seg.levers import resolve_levers
    from seg.predict import predict_images

    cfg = make_config(dict(dataset="folder", image_size=32, resize=policy, device="cpu", width=0.25))
    m = ExportedModel(path=Path("colour"), cfg=cfg, classes=ClassInfo(("pad", "red", "blue"), default_palette(3)),
                      meta={}, model=ColourModel().eval())
    scenes = [_scene(60, 40, [13, 31, 47], [11, 26]), _scene(40, 60, [9, 27], [14, 33, 50]),
              _scene(50, 50, [20, 35], [17])]
    out = predict_images(m, [im for im, _ in scenes], resolve_levers(cfg))
    for (im, labels), (own, train) in zip(scenes, out):
        assert own.shape == labels.shape and train.shape == (32, 32), im.size
        wrong = (own != labels) & ~_near_a_boundary(labels, 1)
        assert not wrong.any(), f"{im.size}: {int(wrong.sum())} pixels away from any boundary got another label"
        w, h = valid_size(*im.size, 32, policy)
        assert (train[h:] == 0).all() and (train[:, w:] == 0).all()  # the padding, left out of the own-size mask
        assert {1, 2} <= set(np.unique(train[:h, :w]).tolist())


# ---- end to end: search -> export -> predict reproduces test_miou ------------------------------------------------
SPACE = """
name: own
data: {{dataset: folder, root: {root}, image_size: 32}}
defaults: {{epochs: 2, batch_size: 8, width: 0.25, device: cpu, num_masks: 2, lr: 3.0e-3, cache_dir: {cache}}}
fixed_trials:
  fcn: {{arch: fcn}}
  unet-r18: {{arch: smp_unet, encoder: resnet18, pretrained: false}}
params:
  arch: {{choice: [fcn, smp_fpn]}}
  lr: {{loguniform: [1.0e-3, 1.0e-2]}}
budget: {{num_samples: 2, max_concurrent: 2}}
scheduler: none
sampler: {{n_startup_trials: 2}}
resources: {{cpus: 1, gpus: 0}}
"""


def _run(*args: str, threads: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if threads:  # the trials trained and scored on one thread (resources.cpus); match it to reproduce them exactly
        env["OMP_NUM_THREADS"] = str(threads)
    out = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _miou(pairs, num_classes: int) -> float:
    cm = ConfusionMatrix(num_classes, IGNORE_INDEX)
    for pred, gt in pairs:
        cm.update(torch.from_numpy(pred.astype(np.int64))[None], torch.from_numpy(gt.astype(np.int64))[None])
    return cm.compute()["miou"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_search_export_predict_reproduces_the_leaderboards_test_miou(tmp_path):
    root = make_synthetic_folder(tmp_path / "data", NUM, counts=(24, 8, 8), size=40)
    space = tmp_path / "own.yaml"
    space.write_text(textwrap.dedent(SPACE.format(root=root, cache=tmp_path / "cache")))
    _run("search.run", str(space), "--results", str(tmp_path / "results"), "--no-dashboard", "--num-cpus", "2")
    exp = tmp_path / "results" / "own"
    board = pd.read_parquet(exp / "leaderboard.parquet")
    classes = read_classes(root)
    iou_cols = [f"iou_{c}" for c in classes.columns]
    assert [c for c in board.columns if c.startswith("iou_")] == iou_cols  # the data's own classes, not VOC's
    assert json.loads((exp / "experiment.json").read_text())["classes"]["names"] == list(classes.names)
    assert set(board["status"]) == {"completed"} and len(board) == 4
    assert (board["arch"] == "smp_unet").any() and (board["kind"] == "searched").sum() == 2
    assert "ellipse plain" in (exp / "report.html").read_text()  # the report's legend / heatmap

    _run("search.export", str(exp), "--out", str(tmp_path / "model"))
    best = board[board["status"] == "completed"].iloc[0]  # the leaderboard is ranked
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["provenance"]["trial"] == best["name"] and meta["num_classes"] == NUM

    test = folder_split(root, "test")
    _run("seg.predict", str(tmp_path / "model"), *test.images, "--out", str(tmp_path / "pred"), "--training-size",
         threads=1)
    train_size, own_size = [], []
    for i, mask_path in zip(test.ids, test.masks):
        gt = read_mask(mask_path, classes)
        pred_train = np.asarray(Image.open(tmp_path / "pred" / "training-size" / f"{i}.png"))
        train_size.append((pred_train, fit_mask(gt, 32, "pad")))  # as training scored its test split
        own_size.append((np.asarray(Image.open(tmp_path / "pred" / f"{i}.png")), np.asarray(gt)))
    at_training_size, at_own_size = _miou(train_size, NUM), _miou(own_size, NUM)
    print(f"\n{best['name']} ({best['arch']}): leaderboard test_miou {best['test_miou']:.6f}; predicted masks at the "
          f"training size {at_training_size:.6f}, at each image's own size {at_own_size:.6f}")
    assert abs(at_training_size - best["test_miou"]) <= 1e-4
    # the own-size figure is informative only (other pixels, other resampling); where each own-size pixel lands
    # is checked exactly by test_predicted_masks_land_on_each_images_own_pixels
    # an smp trial exports and predicts the same way (the commands' main() in this process: the subprocesses
    # above already ran them as `python -m`)
    from search.export import main as export
    from seg.predict import main as predict

    smp = board[board["arch"] == "smp_unet"].iloc[0]
    assert export([str(exp), "--trial", smp["name"], "--out", str(tmp_path / "model-smp")]) == 0
    assert predict([str(tmp_path / "model-smp"), str(test.images[0]), "--out", str(tmp_path / "pred-smp")]) == 0
    assert Image.open(tmp_path / "pred-smp" / f"{test.ids[0]}.png").size == Image.open(test.images[0]).size
