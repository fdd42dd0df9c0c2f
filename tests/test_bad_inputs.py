"""The bad-input table: each mistake a user can make gets one clear message through the real CLI (file, key or
item, the bad value, the fix), exit code 2 and no traceback (tracebacks only with --debug).

Most cases call `search.run.main` in this process (no Ray is started for them: spaces, data, weights and the results
folder are checked first); the ones marked `subprocess` run `python -m ...` exactly as a user would.
tests/test_space.py covers more space-file mistakes against `load_space` directly; this table runs them end to end.

    SEGTUNE_WRITE_TROUBLESHOOTING=1 pytest tests/test_bad_inputs.py   # regenerates docs/troubleshooting.md
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from helpers import put_mask_value, search_args, truncate_half, widen_by_3

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "troubleshooting.md"

SPACE = """
name: bad
data: {{dataset: voc2007, root: {root}, image_size: 32}}
defaults: {{epochs: 1, batch_size: 4, width: 0.25, device: cpu, cache_dir: {cache}}}
params:
  lr: {{loguniform: [1.0e-4, 1.0e-2]}}
fixed_trials:
  base: {{}}
budget: {{num_samples: 2}}
resources: {{cpus: 1, gpus: 0}}
"""


@dataclass
class Case:
    title: str  # the bad input, as the table says it
    make: Callable[[Path, Path], list[str]]  # (tmp_path, synthetic_root) -> CLI argv (after the program)
    expect: list[str]  # parts of the message: file, key/item, bad value, fix
    fix: str
    program: str = "search.run"
    subprocess: bool = False
    needs_ray: bool = False  # the check needs the cluster's resources
    message: str = field(default="", repr=False)


def space(tmp: Path, root: Path, text: str | None = None, edit: tuple[str, str] | None = None,
          name: str = "space.yaml") -> Path:
    text = text if text is not None else SPACE.format(root=root, cache=tmp / "cache")
    if edit:
        assert edit[0] in text, edit[0]
        text = text.replace(*edit, 1)
    path = tmp / name
    path.write_text(textwrap.dedent(text))
    return path


def run_args(path: Path, tmp: Path, *extra: str) -> list[str]:
    return search_args(path, tmp / "results", *extra, num_cpus=1)


def broken_data(tmp: Path, root: Path, rel: str, breaker: Callable[[Path], None]) -> Path:
    """A copy of the synthetic VOCdevkit with one file broken; returns the copy's root."""
    out = tmp / "voc"
    shutil.copytree(root / "VOCdevkit", out / "VOCdevkit")
    breaker(out / "VOCdevkit" / "VOC2007" / rel)
    return out


def data_case(rel: str, breaker: Callable[[Path], None]) -> Callable[[Path, Path], list[str]]:
    def make(tmp: Path, root: Path) -> list[str]:
        return run_args(space(tmp, broken_data(tmp, root, rel, breaker)), tmp)
    return make


FOLDER_SPACE = """
name: bad
data: {{dataset: folder, root: {root}, image_size: 32}}
defaults: {{epochs: 1, batch_size: 4, width: 0.25, device: cpu, cache_dir: {cache}}}
fixed_trials:
  base: {{}}
resources: {{cpus: 1, gpus: 0}}
"""


def folder_case(breaker: Callable[[Path], None]) -> Callable[[Path, Path], list[str]]:
    """A generated 5-class folder dataset with one thing broken, searched."""
    def make(tmp: Path, root: Path) -> list[str]:
        from seg.data.synthetic import make_synthetic_folder

        data = make_synthetic_folder(tmp / "mydata", 5, counts=(4, 2, 2), size=32)
        (data / ".segtune-synthetic.json").unlink()  # from here on it is the user's own data
        breaker(data)
        return run_args(space(tmp, data, FOLDER_SPACE.format(root=data, cache=tmp / "cache")), tmp)
    return make


def _mask_value_5(data: Path) -> None:
    put_mask_value(data / "masks" / "000001.png", 7)


def model_folder(tmp: Path, classes: int = 21) -> Path:
    """A model folder exported from an untrained tiny fcn (seg.export), for the predict cases."""
    from seg.config import make_config
    from seg.data.classes import VOC
    from seg.export import export_state
    from seg.models import build_model

    cfg = make_config(dict(arch="fcn", width=0.25, image_size=32, device="cpu"))
    state = {"config": cfg.model_dump(mode="json"), "best_state": build_model(cfg, classes).state_dict(),
             "classes": VOC.to_yaml_dict(), "best": {}, "epoch": 1}
    return export_state(state, tmp / "model")


def _five_classes(folder: Path) -> None:
    (folder / "classes.yaml").write_text("names: [background, road, car, person, sky]\n")


def _predict(tmp: Path, folder: Path) -> list[str]:
    image = tmp / "photo.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(image)
    return [str(folder), str(image), "--out", str(tmp / "pred")]


def _include_cycle(tmp: Path, root: Path) -> list[str]:
    base = SPACE.format(root=root, cache=tmp / "cache")
    space(tmp, root, base.replace("name: bad", "name: b").replace("  base: {}", "  include: a.yaml\n  b1: {}"),
          name="b.yaml")
    a = space(tmp, root, base.replace("name: bad", "name: a").replace("  base: {}", "  include: b.yaml\n  a1: {}"),
              name="a.yaml")
    return run_args(a, tmp)


def _unwritable_results(tmp: Path, root: Path) -> list[str]:
    (tmp / "results-file").write_text("a file, not a folder")
    return [str(space(tmp, root)), "--results", str(tmp / "results-file" / "results"), "--no-dashboard"]


CASES: dict[str, Case] = {
    "missing-space-file": Case(
        "space file that does not exist", lambda t, r: run_args(t / "nope.yaml", t),
        ["nope.yaml", "space file not found"], "check the path (relative to the current directory)",
        subprocess=True),
    "invalid-yaml": Case(
        "YAML syntax error", lambda t, r: run_args(space(t, r, "name: [unclosed\n"), t),
        ["space.yaml", "not valid YAML", "line"], "fix the line the message names"),
    "unknown-key": Case(
        "unknown key (a typo)",
        lambda t, r: run_args(space(t, r, edit=("budget: {num_samples: 2}", "budget: {num_sample: 2}")), t),
        ["space.yaml", "budget.num_sample", "unknown key", "did you mean 'num_samples'"],
        "use the suggested key; the message lists the keys allowed there", subprocess=True),
    "unknown-train-field": Case(
        "unknown training field in defaults / a fixed trial",
        lambda t, r: run_args(space(t, r, edit=("  base: {}", "  base: {lrr: 0.1}")), t),
        ["space.yaml", "fixed_trials.base.lrr", "did you mean 'lr'"], "use the suggested TrainConfig field"),
    "wrong-type": Case(
        "wrong type", lambda t, r: run_args(space(t, r, edit=("num_samples: 2", "num_samples: many")), t),
        ["space.yaml", "budget.num_samples", "integer", "'many'"], "give a value of the type the message names"),
    "low-above-high": Case(
        "range with low > high",
        lambda t, r: run_args(space(t, r, edit=("[1.0e-4, 1.0e-2]", "[0.1, 0.01]")), t),
        ["space.yaml", "params.lr", "low (0.1) must be < high (0.01)"], "swap the bounds"),
    "empty-choice": Case(
        "empty choice list",
        lambda t, r: run_args(space(t, r, edit=("params:\n", "params:\n  activation: {choice: []}\n")), t),
        ["space.yaml", "params.activation", "empty", "at least one value"], "list at least one value"),
    "unknown-arch": Case(
        "unknown architecture",
        lambda t, r: run_args(space(t, r, edit=("params:\n", "params:\n  arch: {choice: [fcn, resnet]}\n")), t),
        ["space.yaml", "params.arch.choice[1]", "unknown arch 'resnet'", "did you mean 'resnet34_fcn'"],
        "use one of the registered architectures (fcn, fcn_dilated, resnet34_fcn, unet)"),
    "unknown-activation": Case(
        "unknown activation",
        lambda t, r: run_args(space(t, r, edit=("epochs: 1,", "epochs: 1, activation: swish,")), t),
        ["space.yaml", "defaults.activation", "'relu'", "'gelu'", "(got 'swish')"], "use one of the listed values"),
    "include-missing": Case(
        "`include:` of a missing file",
        lambda t, r: run_args(space(t, r, edit=("  base: {}", "  include: nowhere.yaml\n  base: {}")), t),
        ["space.yaml", "fixed_trials.include", "'nowhere.yaml' not found", "relative to"],
        "include paths are relative to the including file"),
    "include-cycle": Case(
        "a cycle of includes", _include_cycle, ["a.yaml", "fixed_trials.include", "include cycle", "b.yaml"],
        "remove one of the includes"),
    "missing-data-root": Case(
        "missing data root", lambda t, r: run_args(space(t, t / "nowhere"), t),
        ["space.yaml", "data:", "nowhere", "does not exist", "VOCdevkit/VOC2007/JPEGImages", "download: true",
         "dataset: synthetic"], "point data.root at the folder holding VOCdevkit/, or use dataset: synthetic",
        subprocess=True),
    "missing-split": Case(
        "missing split file", data_case("ImageSets/Segmentation/train.txt", Path.unlink),
        ["space.yaml", "'train' split", "train.txt does not exist"], "restore the split file the message names"),
    "empty-split": Case(
        "empty split file", data_case("ImageSets/Segmentation/train.txt", lambda p: p.write_text("\n")),
        ["space.yaml", "train.txt is empty", "one image id per line"], "list one image id per line"),
    "id-without-image": Case(
        "an id in a split with no image",
        data_case("ImageSets/Segmentation/train.txt", lambda p: p.write_text(p.read_text() + "999999\n")),
        ["space.yaml", "train.txt names files that do not exist", "999999.jpg", "remove their ids"],
        "restore the files or remove the ids from the split file"),
    "truncated-jpeg": Case(
        "a truncated JPEG", data_case("JPEGImages/000000.jpg", truncate_half),
        ["space.yaml", "cannot decode image", "000000.jpg", "corrupt or truncated, replace it"],
        "replace the file (re-copy the data set)"),
    "mask-labels": Case(
        "a mask PNG with labels outside {0..20, 255}", data_case("SegmentationClass/000000.png", put_mask_value),
        ["space.yaml", "000000.png has values [37]", "0..20 and 255"],
        "masks must be class-index PNGs (palette or grayscale), not colour images"),
    "size-mismatch": Case(
        "image / mask size mismatch", data_case("SegmentationClass/000000.png", widen_by_3),
        ["space.yaml", "SegmentationClass/000000.png is", "JPEGImages/000000.jpg is", "(WxH)", "must match pixel for pixel"],
        "re-export the mask at the image's size"),
    "no-weights": Case(
        "`pretrained: true` with no weights reachable",
        lambda t, r: run_args(space(t, r, edit=("  base: {}", "  base: {arch: resnet34_fcn, pretrained: true}")), t),
        ["space.yaml", "fixed_trials.base: pretrained: true", "resnet34-b627a593.pth", "pretrained: false",
         "--allow-missing-weights"], "put the weights file in the torch hub cache (or set pretrained_path), set "
        "pretrained: false, or pass --allow-missing-weights", subprocess=True),
    "unwritable-results": Case(
        "unwritable results folder", _unwritable_results,
        ["results folder", "results-file", "Not a directory", "pass --results"], "pass --results with a writable "
        "folder"),
    "gpus-per-trial": Case(
        "`gpus` per trial larger than any node has", lambda t, r: run_args(space(t, r), t, "--gpus", "8"),
        ["space.yaml", "resources.gpus", "asks for 8 GPU", "--gpus"],
        "lower resources.gpus / --gpus to what one node has (0 on a CPU machine)", subprocess=True, needs_ray=True),
    "too-many-cpus": Case(
        "`cpus` per trial larger than any node has",
        lambda t, r: run_args(space(t, r, edit=("cpus: 1", "cpus: 64")), t),
        ["space.yaml", "resources.cpus", "asks for 64 CPUs", "lower resources.cpus"], "lower resources.cpus",
        subprocess=True, needs_ray=True),
    "folder-mask-value": Case(
        "folder dataset: a mask value outside classes.yaml",
        folder_case(_mask_value_5),
        ["space.yaml", "data:", "mydata/masks/000001.png", "values [7]", "0..4", "mydata/classes.yaml"],
        "masks hold the indices of the names in classes.yaml (and its ignore_index)"),
    "folder-mask-no-image": Case(
        "folder dataset: a mask with no image", folder_case(lambda d: (d / "images" / "000001.jpg").unlink()),
        ["space.yaml", "mydata/masks/000001.png", "has no image", "000001.*"], "add the image or remove the mask"),
    "folder-image-no-mask": Case(
        "folder dataset: an image with no mask", folder_case(lambda d: (d / "masks" / "000002.png").unlink()),
        ["space.yaml", "mydata/images/000002.jpg", "has no mask", "masks/000002.png"],
        "add the mask or remove the image"),
    "folder-no-classes": Case(
        "folder dataset: classes.yaml missing", folder_case(lambda d: (d / "classes.yaml").unlink()),
        ["space.yaml", "mydata/classes.yaml does not exist", "names: [background, ...]"],
        "write classes.yaml: names (index = position), optional palette and ignore_index"),
    "folder-bad-classes": Case(
        "folder dataset: classes.yaml malformed",
        folder_case(lambda d: (d / "classes.yaml").write_text("names: background\npalette: [[0, 0, 0]]\n")),
        ["space.yaml", "mydata/classes.yaml: names", "expected a list of class names", "'background'"],
        "list the names: names: [background, road, ...]"),
    "unknown-encoder": Case(
        "unknown smp encoder",
        lambda t, r: run_args(space(t, r, edit=("  base: {}", "  base: {arch: smp_unet, encoder: resnet19}")), t),
        ["space.yaml", "fixed_trials.base.encoder", "unknown encoder 'resnet19'", "did you mean 'resnet18'",
         "tu-<timm model name>"], "use a listed encoder, or tu-<timm model name>"),
    "no-smp-weights": Case(
        "`pretrained: true` for an smp encoder with no weights reachable",
        lambda t, r: run_args(space(t, r, edit=("  base: {}", f"  base: {{arch: smp_unet, encoder: resnet18, "
                                                              f"pretrained: true, pretrained_path: {t / 'enc.pt'}}}")), t),
        ["space.yaml", "fixed_trials.base: pretrained: true", "smp_unet (resnet18)", "enc.pt does not exist",
         "pretrained: false", "--allow-missing-weights"],
        "put the encoder's weights where the message says (or fix pretrained_path), set pretrained: false, or pass "
        "--allow-missing-weights"),
    "predict-not-a-model": Case(
        "`seg.predict`: a folder that is not a model", lambda t, r: _predict(t, t),
        ["is not a segtune model folder (no model.json)", "python -m search.export"],
        "pass the folder search.export (or seg.train's <out>/model) wrote", program="seg.predict"),
    "predict-no-weights": Case(
        "`seg.predict`: an export folder without weights",
        lambda t, r: _predict(t, _unlinked(model_folder(t), "weights.safetensors")),
        ["model has no weights.safetensors", "re-export it", "python -m search.export"],
        "re-export the trial with python -m search.export", program="seg.predict"),
    "predict-class-count": Case(
        "`seg.predict`: a model trained for another class count",
        lambda t, r: _predict(t, _edited(model_folder(t), _five_classes)),
        ["model/classes.yaml lists 5 classes", "trained for 21"],
        "use the classes.yaml the model was exported with, or a model trained for these classes",
        program="seg.predict"),
    "train-bad-value": Case(
        "`seg.train`: a bad value", lambda t, r: ["--set", "lr=fast"],
        ["--set", "lr", "valid number", "'fast'"], "give a number", program="seg.train", subprocess=True),
    "train-unknown-key": Case(
        "`seg.train`: an unknown field", lambda t, r: ["--set", "archh=unet"],
        ["--set", "archh", "did you mean 'arch'"], "use the suggested field", program="seg.train", subprocess=True),
    "train-missing-config": Case(
        "`seg.train`: a missing config file", lambda t, r: ["--config", str(t / "none.yaml")],
        ["none.yaml", "config file not found"], "check the path", program="seg.train", subprocess=True),
    "train-missing-data": Case(
        "`seg.train`: missing data", lambda t, r: ["--set", f"data_root={t / 'nowhere'}", "--set", "image_size=32",
                                                   "--out", str(t / "out")],
        ["nowhere", "does not exist", "VOCdevkit"], "point data_root at the folder holding VOCdevkit/",
        program="seg.train", subprocess=True),
    "warm-start-not-an-experiment": Case(
        "`--warm-start` of a folder that is not an experiment",
        lambda t, r: run_args(space(t, r), t, "--warm-start", str(t / "old")),
        ["--warm-start", "old", "no experiment.json there", "results/<name>"],
        "pass the folder (or URI) of a finished experiment"),
    "status-not-an-experiment": Case(
        "`search.status`: a folder that is not an experiment", lambda t, r: [str(t / "results" / "nothing")],
        ["nothing", "no experiment.json there", "results/<name>"],
        "pass the experiment folder or URI search.run printed", program="search.status"),
}
RAY_CASES = [c for c, case in CASES.items() if case.needs_ray]


def _unlinked(folder: Path, name: str) -> Path:
    (folder / name).unlink()
    return folder


def _edited(folder: Path, edit: Callable[[Path], None]) -> Path:
    edit(folder)
    return folder


def run_case(case: Case, tmp_path: Path, synthetic_root: Path, capsys) -> tuple[int, str, str]:
    argv = case.make(tmp_path, synthetic_root)
    if case.subprocess:
        out = subprocess.run([sys.executable, "-m", case.program, *argv], cwd=tmp_path, capture_output=True,
                             text=True, timeout=180, env={**os.environ, "PYTHONPATH": str(REPO)})
        return out.returncode, out.stdout, out.stderr
    import importlib

    main = importlib.import_module(case.program).main
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        rc = main(argv)
    finally:
        os.chdir(cwd)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.parametrize("name", [pytest.param(c, marks=pytest.mark.slow) if c in RAY_CASES else c for c in CASES])
@pytest.mark.timeout(240)
def test_bad_input_gives_one_clear_message(name, tmp_path, synthetic_root, capsys):
    case = CASES[name]
    rc, out, err = run_case(case, tmp_path, synthetic_root, capsys)
    assert rc == 2, (rc, err[-2000:])  # the README: exit code 2 for every bad input, search.run included
    assert "Traceback" not in out + err, err
    if case.needs_ray:  # Ray's own start-up lines come first
        err = err[err.index("\nerror: ") + 1:] if "\nerror: " in err else err
    assert err.startswith("error: "), err
    assert err.count("error: ") == 1, err  # one message (it may span a few lines: the fix, the expected layout)
    for part in case.expect:
        assert part in err, f"{part!r} not in:\n{err}"
    if not case.needs_ray:
        assert "Ray" not in out, out  # refused before Ray starts
    if name not in ("unwritable-results",):
        assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
    case.message = _portable(err, tmp_path, synthetic_root)


def test_debug_shows_the_traceback(tmp_path, synthetic_root, capsys):
    from search.run import main

    argv = run_args(space(tmp_path, synthetic_root, edit=("num_samples: 2", "num_samples: many")), tmp_path)
    assert main([*argv, "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def _portable(err: str, tmp: Path, root: Path) -> str:
    text = err.strip().replace(str(tmp), "~/work").replace(str(root), "~/data")
    return text.replace(str(REPO), "~/segtune").replace(Path.home().as_posix(), "~")


@pytest.fixture(scope="module", autouse=True)
def _write_troubleshooting():
    """With SEGTUNE_WRITE_TROUBLESHOOTING=1, docs/troubleshooting.md is rewritten from the messages just seen."""
    yield
    if not os.environ.get("SEGTUNE_WRITE_TROUBLESHOOTING"):
        return
    seen = [c for c in CASES.values() if c.message]
    if len(seen) < len(CASES):
        return  # a partial run (-k, failures, slow cases deselected) leaves the document alone
    rows = []
    for c in seen:
        msg = c.message.removeprefix("error: ").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        msg = msg.replace("|", "\\|").replace("\n", "<br>")
        rows.append(f"| {c.title} | `{'python -m ' + c.program}`: {msg} | {c.fix} |")
    text = DOC.read_text() if DOC.exists() else ""
    start, end = "<!-- bad-input table: generated by tests/test_bad_inputs.py -->", "<!-- end of table -->"
    table = "\n".join([start, "", "| bad input | message (exit code 2, no traceback) | fix |", "|---|---|---|",
                       *rows, "", end])
    if start in text and end in text:
        text = text[:text.index(start)] + table + text[text.index(end) + len(end):]
    else:
        text = text + "\n" + table + "\n"
    DOC.write_text(text)
