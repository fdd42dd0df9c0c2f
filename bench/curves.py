"""The learning-curve table of the search-efficiency benchmark: build it (a segtune experiment), snapshot its
records into the repository, export the compact per-epoch table that `bench.efficiency` replays.

    python -m bench.curves build                      # spaces/curves_cpu64.yaml: resumes, then snapshot + export
    python -m bench.curves build --image-size 224 -- --gpus 0.25     # the full-size table on a GPU machine
    python -m bench.curves export results/curves-cpu64 --out bench/data/curves_cpu64.parquet

`build` is resumable like any search (segtune's records decide), and also from a fresh clone: the experiment's
records (experiment.json, trials/*.json, the Optuna journal; no checkpoints, a few MB) are committed under
`bench/data/<experiment>/`, and `build` copies them into `results/<experiment>/` when that folder does not exist.
A trial that was running when the snapshot was taken restarts from scratch there (its checkpoint stayed on the
machine that trained it); finished trials are never trained again.

The table (`CURVES_SCHEMA`): one row per trial and epoch with the trial's configuration, so a replay can cut any
trial's curve at any epoch. `test_miou` at epoch e is the test score of the best-by-validation checkpoint among
epochs 1..e: what a search that stopped the trial at e would report.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from search.folder import EXPERIMENT_FILE, NotAnExperimentError, experiment_folder
from search.provenance import cpu_model, now_iso
from search.tables import build_tables

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SPACE = REPO / "spaces" / "curves_cpu64.yaml"
DATA_DIR = REPO / "bench" / "data"
SNAPSHOT_FILES = ("experiment.json", "optuna-journal.log")  # plus trials/*.json

# The compact table, in order: column -> (pandas dtype, meaning). Config columns follow: every TrainConfig field
# the space searches, plus arch/width/skips/epochs/seed (`config_columns`).
CURVES_SCHEMA: dict[str, tuple[str, str]] = {
    "trial_id": ("string", "segtune's trial id"),
    "name": ("string", "trial name: a fixed trial's own, search-NNNN, or <name>@seed<s>"),
    "kind": ("string", "fixed | searched | seed"),
    "status": ("string", "completed | pruned | failed (the table is built unpruned: completed or failed)"),
    "config_key": ("string", "the configuration without its seed: seed reruns share it with their original"),
    "epoch": ("Int64", "1-based epoch"),
    "train_loss": ("float64", "mean training loss of the epoch"),
    "val_miou": ("float64", "validation mIoU of this epoch (what ASHA compares at a rung)"),
    "best_val_miou": ("float64", "best validation mIoU among epochs 1..epoch"),
    "best_epoch": ("Int64", "the epoch of that best checkpoint"),
    "test_miou": ("float64", "test mIoU of the best-validation checkpoint among epochs 1..epoch"),
    "val_miou_paper": ("float64", "the paper's per-batch-mean validation mIoU of this epoch"),
    "test_miou_paper": ("float64", "the paper's per-batch-mean test mIoU of that best checkpoint"),
    "seconds": ("float64", "wall time of the epoch incl. evaluation (noisy when other jobs share the CPU)"),
}
ALWAYS_CONFIG = ("arch", "width", "skips", "epochs", "seed")


def config_columns(space: dict[str, Any]) -> list[str]:
    """The configuration columns of a table built from an experiment with this resolved space."""
    return list(dict.fromkeys([*ALWAYS_CONFIG, *space.get("params", {})]))


# ---------------------------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------------------------
def curves_table(exp_dir: Path) -> pd.DataFrame:
    """The compact per-epoch table of an experiment folder, from its records (Ray-free)."""
    exp = json.loads((Path(exp_dir) / "experiment.json").read_text())
    board, history = build_tables(Path(exp_dir))
    cfg_cols = config_columns(exp.get("space", {}))
    configs = [json.loads(c) for c in board["config_json"]]
    trials = pd.DataFrame({
        "trial_id": board["trial_id"].to_numpy(), "kind": board["kind"].to_numpy(),
        "status": board["status"].to_numpy(),
        "config_key": [json.dumps({k: v for k, v in c.items() if k != "seed"}, sort_keys=True) for c in configs],
        **{col: [c.get(col) for c in configs] for col in cfg_cols}})
    per_epoch = [c for c in CURVES_SCHEMA if c in history.columns]  # (history's own `lr` is the schedule's)
    table = history[per_epoch].merge(trials, on="trial_id", how="inner")
    table = table[[*CURVES_SCHEMA, *cfg_cols]].sort_values(["trial_id", "epoch"], kind="stable")
    for col, (dtype, _) in CURVES_SCHEMA.items():
        table[col] = table[col].astype(dtype)
    return table.reset_index(drop=True)


def provenance(exp_dir: Path, table: pd.DataFrame) -> dict[str, Any]:
    """Where the table came from: the experiment's commit(s), versions, the CPU, the command, what it holds."""
    exp = json.loads((Path(exp_dir) / "experiment.json").read_text())
    trials = table.drop_duplicates("trial_id")
    epochs = trials.set_index("trial_id")["epochs"]
    done = table.groupby("trial_id")["epoch"].max()
    return {
        "experiment": exp.get("name"), "space_file": exp.get("space_file"), "image_size": exp.get("image_size"),
        "git_commit": exp.get("git_commit"), "versions": exp.get("versions", {}), "cpu": cpu_model(),
        "hardware": exp.get("hardware"), "command": "python -m bench.curves build", "exported_at": now_iso(),
        "started_at": exp.get("started_at"),
        "trials": {kind: int(n) for kind, n in trials["kind"].value_counts().items()},
        "trials_complete": int((done >= epochs.reindex(done.index)).sum()),
        "rows": len(table), "epoch_seconds_total": float(table["seconds"].sum()),
        "space_params": exp.get("space", {}).get("params", {}),  # what bench.efficiency's searchers propose over
    }


def export(exp_dir: Path, out: Path) -> tuple[Path, Path]:
    """Write `out` (Parquet) and `out` with .json (its provenance) from an experiment folder."""
    table = curves_table(exp_dir)
    prov = provenance(exp_dir, table)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out, index=False)
    meta = out.with_suffix(".json")
    meta.write_text(json.dumps({**prov, "schema": {c: d for c, (_, d) in CURVES_SCHEMA.items()}}, indent=1) + "\n")
    return out, meta


# ---------------------------------------------------------------------------------------------------------------
# Snapshot and restore of the records
# ---------------------------------------------------------------------------------------------------------------
def snapshot(exp_dir: Path, dest: Path) -> int:
    """Copy an experiment's records (no checkpoints) to `dest`; returns the number of trial records."""
    (dest / "trials").mkdir(parents=True, exist_ok=True)
    for name in SNAPSHOT_FILES:
        if (exp_dir / name).is_file():
            shutil.copy2(exp_dir / name, dest / name)
    records = sorted((exp_dir / "trials").glob("*.json"))
    for rec in records:
        shutil.copy2(rec, dest / "trials" / rec.name)
    return len(records)


def restore(snap: Path, exp_dir: Path) -> bool:
    """Seed a missing experiment folder from a committed snapshot; False when there is nothing to do."""
    if (exp_dir / "experiment.json").exists() or not (snap / "experiment.json").is_file():
        return False
    shutil.copytree(snap, exp_dir)
    return True


# ---------------------------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------------------------
def sized_space(space_file: Path, image_size: int | None, workdir: Path) -> tuple[Path, str]:
    """The space file to run and its experiment name: the file itself, or a copy at another image size."""
    spec = yaml.safe_load(space_file.read_text())
    if image_size is None or image_size == spec["data"]["image_size"]:
        return space_file, spec["name"]
    spec["data"]["image_size"] = image_size
    spec["name"] = f"{spec['name'].rsplit('64', 1)[0]}{image_size}"
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path, spec["name"]


def build(space_file: Path, image_size: int | None, results: Path, run_args: list[str], data_dir: Path = DATA_DIR) -> int:
    """Restore the snapshot if the folder is missing, run (or resume) the search, snapshot and export it."""
    space_path, name = sized_space(space_file, image_size, results)
    exp_dir, snap = results / name, data_dir / name
    if restore(snap, exp_dir):
        print(f"restored the records of {name!r} from {snap}")
    cmd = [sys.executable, "-m", "search.run", str(space_path), "--results", str(results), "--no-dashboard",
           *run_args]
    print("$", " ".join(cmd), flush=True)
    rc = subprocess.call(cmd)
    if (exp_dir / "experiment.json").is_file():
        n = snapshot(exp_dir, snap)
        table, meta = export(exp_dir, table_path(name, data_dir))
        print(f"snapshot: {n} trial records in {snap}; table: {table} ({meta.name})")
    return rc


def table_path(experiment: str, data_dir: Path = DATA_DIR) -> Path:
    """bench/data/curves_cpu64.parquet for experiment curves-cpu64."""
    return data_dir / f"{experiment.replace('-', '_')}.parquet"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.curves", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="run (or resume) the table's experiment, then snapshot and export it")
    b.add_argument("--space", type=Path, default=DEFAULT_SPACE)
    b.add_argument("--image-size", type=int, default=None, help="px (default: the space's, 64)")
    b.add_argument("--results", type=Path, default=Path("results"))
    b.add_argument("--data-dir", type=Path, default=DATA_DIR, help="where the snapshot and the table go")
    b.add_argument("run_args", nargs="*", help="after --: passed on to search.run (e.g. --gpus 0.25)")
    e = sub.add_parser("export", help="the compact table of an experiment folder")
    e.add_argument("exp_dir", type=Path)
    e.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("snapshot", help="copy an experiment's records (no checkpoints) into bench/data/<name>/")
    s.add_argument("exp_dir", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        return build(args.space, args.image_size, args.results, args.run_args, args.data_dir)
    try:
        experiment_folder(args.exp_dir)
        if not (args.exp_dir / EXPERIMENT_FILE).is_file():
            raise NotAnExperimentError(f"{args.exp_dir}: no {EXPERIMENT_FILE}, which the table's provenance needs")
    except NotAnExperimentError as err:
        print(err, file=sys.stderr)
        return 2
    if args.cmd == "export":
        table, meta = export(args.exp_dir, args.out)
        print(f"{table} and {meta}: {len(pd.read_parquet(table))} rows")
    else:
        print(f"{snapshot(args.exp_dir, DATA_DIR / args.exp_dir.name)} trial records -> bench/data/{args.exp_dir.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
