"""Predict masks with an exported model folder (seg.export): `python -m seg.predict MODEL_DIR IMAGES... --out DIR`.

Inputs are image files and folders (their images, sorted by name). Each image is fitted to the model's training
size by its resize policy (seg.data.resize, exactly as training fitted its splits), batched on the device, and the
logits of the valid region are resized (bilinear) back to the image's own size before the argmax, so
`<out>/<name>.png` (a palette PNG of class indices, the model's classes.yaml colours) and `<out>/<name>_overlay.jpg`
have each image's own size. `--training-size` also writes `<out>/training-size/<name>.png`: the prediction at the
training size, which scores exactly as training scored its splits. A folder that is not a model stops the command
with one error; an unreadable image gets one error line and the others are still written (exit code 1).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from seg.data.augment import normalize
from seg.data.classes import IGNORE_INDEX, ClassInfo
from seg.data.resize import fit_image, valid_size
from seg.data.voc import DataError, read_image
from seg.export import ExportedModel, ModelFolderError, load_model
from seg.evaluate import eval_batch_size
from seg.levers import Levers, autocast, resolve_levers

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm")
OVERLAY_ALPHA = 0.55  # weight of the class colour over the image
TRAINING_SIZE_DIR = "training-size"


def collect_images(inputs: list[str]) -> tuple[list[Path], list[str]]:
    """(image files, errors): folders give their image files sorted by name; a missing path is an error."""
    files, errors = [], []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            files += found
            if not found:
                errors.append(f"{item}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        elif item.is_file():
            files.append(item)
        else:
            errors.append(f"{item} does not exist")
    return files, errors


def batches(files: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(files), size):
        yield files[start:start + size]


@torch.inference_mode()
def predict_images(m: ExportedModel, images: list[Image.Image],
                   levers: Levers) -> list[tuple[np.ndarray, np.ndarray]]:
    """(mask at the image's own size (H, W), mask at the training size (S, S)) per image, uint8 class indices."""
    size, policy = m.cfg.image_size, m.cfg.effective_resize
    x = torch.from_numpy(np.stack([fit_image(im, size, policy) for im in images])).permute(0, 3, 1, 2)
    x = normalize(x.to(levers.device))  # (B, 3, S, S), as training evaluated
    if levers.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(levers):
        logits = m.model(x).float()  # (B, C, S, S)
    out = []
    for i, im in enumerate(images):
        w, h = valid_size(*im.size, size, policy)
        own = F.interpolate(logits[i:i + 1, :, :h, :w], size=(im.size[1], im.size[0]), mode="bilinear",
                            align_corners=False)  # (1, C, H, W)
        out.append((own.argmax(1)[0].to(torch.uint8).cpu().numpy(), logits[i].argmax(0).to(torch.uint8).cpu().numpy()))
    return out


def palette_png(mask: np.ndarray, classes: ClassInfo) -> Image.Image:
    img = Image.fromarray(mask)  # "L"; putpalette makes it "P" with the same indices
    img.putpalette([v for rgb in classes.palette_256() for v in rgb])
    return img


def overlay(image: Image.Image, mask: np.ndarray, classes: ClassInfo) -> Image.Image:
    """The class colour of every non-background, non-void pixel blended into the image."""
    colour = np.array(classes.palette_256(), np.float32)[mask]  # (H, W, 3)
    rgb = np.asarray(image, np.float32)
    on = ((mask != 0) & (mask != IGNORE_INDEX))[..., None]
    return Image.fromarray(np.where(on, (1 - OVERLAY_ALPHA) * rgb + OVERLAY_ALPHA * colour, rgb).round()
                           .clip(0, 255).astype(np.uint8))


def write_outputs(out: Path, path: Path, image: Image.Image, own: np.ndarray, train: np.ndarray,
                  classes: ClassInfo, training_size: bool) -> None:
    palette_png(own, classes).save(out / f"{path.stem}.png")
    overlay(image, own, classes).save(out / f"{path.stem}_overlay.jpg", quality=90)
    if training_size:
        palette_png(train, classes).save(out / TRAINING_SIZE_DIR / f"{path.stem}.png")


def read_batch(paths: list[Path], errors: list[str]) -> list[tuple[Path, Image.Image]]:
    """The readable images of a batch; each unreadable one adds one error line."""
    good = []
    for p in paths:
        try:
            good.append((p, read_image(p)))
        except DataError as e:
            errors.append(str(e))
    return good


def run(model_dir: str, inputs: list[str], out: Path, batch_size: int | None, device: str,
        training_size: bool) -> int:
    """Predict every image; returns the exit code (0: all written, 1: some inputs failed)."""
    from tqdm import tqdm

    levers = resolve_levers(_config_for(model_dir, device))
    m = load_model(model_dir, levers.device)
    files, errors = collect_images(inputs)
    out.mkdir(parents=True, exist_ok=True)
    if training_size:
        (out / TRAINING_SIZE_DIR).mkdir(exist_ok=True)
    batch_size = batch_size or eval_batch_size(m.cfg)  # as training evaluated its splits
    written = 0
    with tqdm(total=len(files), unit="image") as bar:
        for paths in batches(files, batch_size):
            good = read_batch(paths, errors)
            if good:
                masks = predict_images(m, [im for _, im in good], levers)
                for (p, im), (own, train) in zip(good, masks):
                    write_outputs(out, p, im, own, train, m.classes, training_size)
                written += len(good)
            bar.update(len(paths))
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    print(f"{written} of {len(files)} images -> {out} ({m.cfg.arch}, {m.classes.num_classes} classes, "
          f"{m.cfg.image_size} px, resize {m.cfg.effective_resize}, {levers.device})")
    return 1 if errors else 0


def _config_for(model_dir: str, device: str):
    """The model's config with the device asked for (its levers: channels_last, bf16 where native)."""
    from seg.export import read_model_folder

    _, cfg, _ = read_model_folder(model_dir)
    return cfg.model_copy(update={"device": device, "compile": "off"})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m seg.predict", description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", help="an exported model folder (python -m search.export, or seg.train's <out>/model)")
    ap.add_argument("inputs", nargs="+", metavar="IMAGES_OR_FOLDER", help="image files and/or folders of images")
    ap.add_argument("--out", required=True, help="output folder for <name>.png masks and <name>_overlay.jpg")
    ap.add_argument("--batch-size", type=int, default=None, help="images per forward pass (default: as training "
                                                                 "evaluated its splits)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--training-size", action="store_true",
                    help=f"also write the masks at the training size into <out>/{TRAINING_SIZE_DIR}/")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    args = ap.parse_args(argv)
    try:
        return run(args.model_dir, args.inputs, Path(args.out), args.batch_size, args.device, args.training_size)
    except (ModelFolderError, OSError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
