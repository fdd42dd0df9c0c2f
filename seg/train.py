"""The command line of one training run: `python -m seg.train [--config FILE] [--set KEY=VALUE ...] --out DIR`.

    python -m seg.train --config my.yaml --set lr=5e-4 --set epochs=30 --out results/one-run

The run's folder holds `state.pt` (the Trainer state after the last epoch), `metrics.jsonl` (one metrics dict per
line), `best.pt` (the best-val weights), `masks.npz`, `summary.json` and `model/` (the model folder, seg.export: the
same format `python -m search.export` writes for a trial). Rerunning the same command continues the run; a folder
holding another configuration's state is refused (raising `epochs` or changing a RUN_FIELDS field is allowed).
The loop itself is seg.trainer, evaluation seg.evaluate.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from seg.atomic import atomic_write, atomic_write_text
from seg.config import RUN_FIELDS, ConfigError, TrainConfig, load_config_file, parse_overrides
from seg.export import export_state
# build_optimizer, lr_factor, train_one_epoch, NonFiniteLossError: importable from here too (bench.throughput)
from seg.trainer import NonFiniteLossError, Trainer, build_optimizer, lr_factor, train_one_epoch  # noqa: F401

RUN_STATE_FILE = "state.pt"  # in the run's folder
RESUMABLE_CHANGES = RUN_FIELDS | {"epochs"}  # what may differ from the folder's state when a run continues


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m seg.train", description="Train one segmentation model.")
    ap.add_argument("--config", help="YAML file of TrainConfig fields")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field (repeatable)")
    ap.add_argument("--out", default=None, help="output folder (default results/train/<arch>-seed<seed>)")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    args = ap.parse_args(argv)
    try:
        cfg = load_config_file(args.config, parse_overrides(args.set)).resolved()
        out = Path(args.out or f"results/train/{cfg.arch}-seed{cfg.seed}")
        check_same_run(out, cfg)
        return run_cli(cfg, out)
    except (ConfigError, ValueError, RuntimeError, OSError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


def check_same_run(out: Path, cfg: TrainConfig) -> None:
    """Refuse a folder whose state belongs to another configuration, naming the fields that differ."""
    state = out / RUN_STATE_FILE
    if not state.is_file():
        return
    theirs: dict[str, Any] = torch.load(state, map_location="cpu", weights_only=True).get("config") or {}
    ours = cfg.model_dump(mode="json")
    differ = [f"{k} {theirs.get(k)!r} there, {ours.get(k)!r} here" for k in sorted(set(ours) | set(theirs))
              if k not in RESUMABLE_CHANGES and theirs.get(k) != ours.get(k)]
    if differ:
        raise ConfigError(f"{out} holds the checkpoint of another configuration ({state}: {'; '.join(differ)}); "
                          f"pass another --out, or delete {out} to start afresh")


def run_cli(cfg: TrainConfig, out: Path) -> int:
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg)
    state = out / RUN_STATE_FILE
    if state.exists():  # rerunning the same command continues the run
        trainer.load(state)
        print(f"resuming from {state} at epoch {trainer.epoch}")
    print(f"training {cfg.arch} on {trainer.device_name} with {trainer.levers.describe()}")
    m = None
    with open(out / "metrics.jsonl", "a") as log, tqdm(total=cfg.epochs, initial=trainer.epoch, unit="epoch") as bar:
        for m in trainer.epochs():
            log.write(json.dumps(m) + "\n")
            log.flush()
            trainer.save(state)
            if m["best_epoch"] == m["epoch"]:
                atomic_write(out / "best.pt", lambda tmp, s=trainer.best_state: torch.save(s, tmp))
                trainer.save_masks(out / "masks.npz")
            bar.set_postfix(loss=f"{m['train_loss']:.3f}", val_miou=f"{m['val_miou']:.3f}",
                            best=f"{m['best_val_miou']:.3f}", ips=f"{m['images_per_s']:.0f}")
            bar.update(1)
    if m is None:
        print(f"{out} already holds all {cfg.epochs} epochs; nothing to do (delete it or raise epochs to train more)")
        return 0
    summary = {"config": cfg.model_dump(mode="json"), "levers": trainer.levers.describe(),
               "device_name": trainer.device_name, **{k: v for k, v in m.items()}}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    model_dir = export_state(trainer.state_dict(), out / "model", {"source": str(state.resolve())})
    print(f"best epoch {m['best_epoch']}: val mIoU {m['best_val_miou']:.4f}, pixel acc {m['best_val_pixel_acc']:.4f}; "
          f"test mIoU {m['test_miou']:.4f}, pixel acc {m['test_pixel_acc']:.4f}  -> {out} (model folder {model_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
