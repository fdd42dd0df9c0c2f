"""Incremental tables: a finished trial adds its rows as one Parquet fragment; the two files are compacted now and
then, so the driver's cost per finished trial stays flat however many trials the experiment already has.

    fragments/leaderboard/<trial_id>.parquet    one row, search.tables.leaderboard_schema (seed columns null)
    fragments/history/<trial_id>.parquet        the trial's epochs, search.tables.history_schema

Each fragment is written atomically (seg.atomic: a `.`-prefixed tmp file, which pyarrow.dataset skips, then a
rename). The live table is `leaderboard.parquet` with the fragments laid over it (a fragment replaces the row, and
the history rows, of its trial) and the seed columns and ranking recomputed: `read_tables(exp_dir)`, which the
report reads. Compaction folds the fragments into the two files (atomically, then deletes the fragments it
folded in), at most every `COMPACT_S` seconds, at the end of a pass and at exit, so `pd.read_parquet(
"leaderboard.parquet")` (or DuckDB) lags by at most that. A kill at any moment leaves files that read cleanly
and a union equal to the full rebuild: a fragment and the compacted row of a final trial hold the same values.
The first compaction of each Tune run is a full rebuild from the records (search.tables.write_tables), which
repairs whatever an earlier crash left behind (a trial recorded as final whose fragment was never written).
Ray-free and torch-free.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import math

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from search.tables import (FRAGMENTS_DIR, HISTORY_FILE, LEADERBOARD_FILE, add_seed_columns, experiment_iou_columns,
                           fragment_files, history_schema, leaderboard_row, leaderboard_schema, provenance_of, ranked,
                           remove_files, typed_frame, write_tables)
from search.vocab import IOU_PREFIX
from seg.atomic import atomic_write

COMPACT_S = 30.0  # seconds: the longest leaderboard.parquet lags behind the finished trials during a pass
TABLES = ("leaderboard", "history")
Schemas = dict[str, tuple[str, dict[str, tuple[str, str]]]]  # table -> (file name, column -> (dtype, description))


def table_schemas(exp_dir: Path, rec: dict[str, Any] | None = None) -> Schemas:
    """Both tables' files and schemas for this experiment's classes (search.tables.experiment_iou_columns)."""
    iou_cols = experiment_iou_columns(Path(exp_dir), {rec["trial_id"]: rec} if rec else {})
    return {"leaderboard": (LEADERBOARD_FILE, leaderboard_schema(iou_cols)),
            "history": (HISTORY_FILE, history_schema(iou_cols))}


def fragment_path(exp_dir: Path, table: str, trial_id: str) -> Path:
    return Path(exp_dir) / FRAGMENTS_DIR / table / f"{trial_id}.parquet"


def write_fragments(exp_dir: Path, rec: dict[str, Any], provenance: dict[str, Any], schemas: Schemas) -> list[Path]:
    """The trial's leaderboard row and history rows, one atomic fragment each (history first: a fragment pair
    is complete once its leaderboard row exists). Built with pyarrow, not pandas: a few milliseconds a trial."""
    hist_rows = [{"trial_id": rec["trial_id"], "name": rec.get("name"), **h} for h in rec.get("history", [])]
    board_schema = schemas["leaderboard"][1]
    iou_cols = tuple(c for c in board_schema if c.startswith(IOU_PREFIX))
    tables = {"history": arrow_table(hist_rows, schemas["history"][1]),
              "leaderboard": arrow_table([leaderboard_row(rec, provenance, iou_cols)], board_schema)}
    return [atomic_write(fragment_path(exp_dir, t, rec["trial_id"]), lambda tmp, tb=tb: pq.write_table(tb, tmp))
            for t, tb in tables.items()]


# the schemas' pandas dtypes as Arrow types, and back (nullable pandas dtypes, as search.tables.typed_frame makes)
ARROW_TYPES = {"float64": pa.float64(), "Int64": pa.int64(), "boolean": pa.bool_(), "string": pa.string()}
PANDAS_TYPES = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype(), pa.string(): pd.StringDtype()}


def _cell(v: Any, dtype: str) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v) and dtype != "float64"):
        return None
    if dtype == "string":
        return v if isinstance(v, str) else str(v)
    if dtype == "boolean":
        return bool(v)
    try:  # what typed_frame's pd.to_numeric(errors="coerce") makes of it
        return int(v) if dtype == "Int64" else float(v)
    except (TypeError, ValueError):
        return None


def arrow_table(rows: list[dict[str, Any]], schema: dict[str, tuple[str, str]]) -> pa.Table:
    """Rows as an Arrow table with exactly the schema's columns and types (missing values as nulls)."""
    types = pa.schema([(c, ARROW_TYPES[d]) for c, (d, _) in schema.items()])
    return pa.table({c: pa.array([_cell(r.get(c), d) for r in rows], ARROW_TYPES[d])
                     for c, (d, _) in schema.items()}, schema=types)


def _read_file(path: Path, schema: dict[str, tuple[str, str]], notes: list[str] | None = None) -> pd.DataFrame:
    """The file, or an empty table when it is missing; with `notes`, a file that cannot be read is one too and
    each gap is noted."""
    if not path.is_file():
        if notes is not None:
            notes.append(f"{path.name} does not exist yet.")
        return typed_frame([], schema)
    try:
        return pd.read_parquet(path)
    except Exception as e:  # a damaged file
        if notes is None:
            raise
        notes.append(f"{path.name} could not be read ({type(e).__name__}: {e}).")
        return typed_frame([], schema)


def _read_fragments(paths: list[Path], schema: dict[str, tuple[str, str]]) -> pd.DataFrame:
    if not paths:
        return typed_frame([], schema)
    # the fragments' own columns, unified: one written before a column was added reads it as nulls
    types = pa.unify_schemas([pq.read_schema(p) for p in paths])
    table = pads.dataset([str(p) for p in paths], format="parquet", schema=types).to_table()
    df = table.to_pandas(types_mapper=PANDAS_TYPES.get)
    return df[[c for c in schema if c in df.columns] + [c for c in df.columns if c not in schema]]


def read_tables(exp_dir: Path, notes: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(leaderboard, history) as one table each, whatever they are made of: the compacted files with the fragments
    laid over them; the leaderboard ranked (search.tables.ranked) with its seed columns recomputed, the history by
    trial and epoch. The one reader of the tables. With `notes` (the report) nothing raises: a missing or damaged
    file reads as empty, fragments that cannot be merged are left out, and each gap is noted."""
    exp_dir = Path(exp_dir)
    frags = {t: fragment_files(exp_dir, t) for t in TABLES}
    if notes is None or not any(frags.values()):
        return _merge(exp_dir, frags, table_schemas(exp_dir), notes)
    try:
        return _merge(exp_dir, frags, table_schemas(exp_dir))
    except Exception as e:  # fall back to the compacted files
        notes.append(f"the trials finished since the last compaction could not be read ({type(e).__name__}: {e}).")
        return _merge(exp_dir, {t: [] for t in TABLES}, table_schemas(exp_dir), notes)


def _merge(exp_dir: Path, frags: dict[str, list[Path]], schemas: Schemas,
           notes: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not any(frags.values()):  # nothing to lay over the files: they are the table, as written
        board, history = (_read_file(exp_dir / name, schema, notes) for name, schema in schemas.values())
        return board, history
    out = []
    for table, (name, schema) in schemas.items():
        base, new = _read_file(exp_dir / name, schema), _read_fragments(frags[table], schema)
        # a fragment replaces its trial's rows; history fragments whose leaderboard row is not written yet too
        base = base[~base["trial_id"].isin(set(new["trial_id"]))]
        both = pd.concat([df for df in (base, new) if len(df)], ignore_index=True) if len(base) + len(new) else base
        out.append(both.reset_index(drop=True))
    board, history = out
    if len(board):
        board = ranked(add_seed_columns(board))
    history = history.sort_values(["trial_id", "epoch"], kind="stable").reset_index(drop=True)
    return board, history


def compact(exp_dir: Path) -> tuple[Path, Path]:
    """Fold the fragments into leaderboard.parquet and history.parquet (atomically), then delete them."""
    exp_dir = Path(exp_dir)
    frags = {t: fragment_files(exp_dir, t) for t in TABLES}
    board, history = _merge(exp_dir, frags, table_schemas(exp_dir))
    paths = []
    for df, name in ((history, HISTORY_FILE), (board, LEADERBOARD_FILE)):
        paths.append(atomic_write(exp_dir / name, lambda tmp, df=df: df.to_parquet(tmp, index=False)))
    remove_files([p for ps in frags.values() for p in ps])
    return paths[1], paths[0]


class TableWriter:
    """What the search's recorder is handed to keep the tables current: `trial_finished` after each trial's end
    (one fragment pair, and a compaction when the last is COMPACT_S old), `close` at the end of a pass. The first
    compaction is a full rebuild from the records. A failure to write is reported, never raised: the search goes
    on and the tables are rebuilt from the records at the end (or with `python -m search.leaderboard`)."""

    def __init__(self, exp_dir: str | Path, publish: Callable[[Path], None] = lambda path: None,
                 unpublish: Callable[[Path], None] = lambda path: None, compact_s: float = COMPACT_S,
                 clock: Callable[[], float] = time.monotonic):
        self.exp_dir = Path(exp_dir)
        self.publish = publish  # pushes a written file to the experiment's storage URI (a no-op locally)
        self.unpublish = unpublish  # removes a deleted fragment's copy there
        self.compact_s = compact_s
        self.clock = clock  # bench.scale drives it at a simulated rate of finished trials
        self._compacted_at: float | None = None  # clock time of the last compaction; None: rebuild first
        self._provenance = provenance_of(self.exp_dir)
        self._schemas: Schemas | None = None  # from experiment.json's classes, or the first trial's iou_* keys
        self.seconds = 0.0  # time spent writing tables (bench.scale reads it)

    def trial_finished(self, rec: dict[str, Any]) -> None:
        self._guarded(self._add, rec)

    def close(self) -> None:
        self._guarded(self._compact)

    def _add(self, rec: dict[str, Any]) -> None:
        if self._schemas is None:
            self._schemas = table_schemas(self.exp_dir, rec)
        for path in write_fragments(self.exp_dir, rec, self._provenance, self._schemas):
            self.publish(path)
        if self._compacted_at is None or self.clock() - self._compacted_at >= self.compact_s:
            self._compact()

    def _compact(self) -> None:
        before = {t: fragment_files(self.exp_dir, t) for t in TABLES}
        paths = write_tables(self.exp_dir) if self._compacted_at is None else compact(self.exp_dir)
        self._compacted_at = self.clock()
        for path in paths:
            self.publish(path)
        for path in (p for ps in before.values() for p in ps):
            self.unpublish(path)

    def _guarded(self, step: Callable[..., None], *args: Any) -> None:
        start = time.perf_counter()
        try:
            step(*args)
        except Exception as e:  # a table problem must not stop the search; they are regenerated at the end
            print(f"[segtune] could not update the leaderboard: {type(e).__name__}: {e}", flush=True)
        finally:
            self.seconds += time.perf_counter() - start
