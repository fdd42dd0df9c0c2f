"""Searchers replayed over a recorded learning-curve table in simulated time (syne-tune's simulated backend, with
segtune's own objects): the table (bench.curves) holds every epoch of a fixed set of configurations; a replay
runs W asynchronous workers whose trials' epochs take their recorded cost, asks the searcher for a configuration
whenever a worker frees up, and lets the scheduler decide after each reported epoch, through the calls Tune makes:

    searcher.suggest -> scheduler.on_trial_add -> per epoch: scheduler.on_trial_result, searcher.on_trial_result
    -> at the last epoch or a STOP: searcher.on_trial_complete, scheduler.on_trial_complete

The searcher is `search.tune.searchers.RecordedFirstSearcher` over an in-memory Optuna study, the scheduler
`RecordedASHA`: the classes a real search builds, not reimplementations.

The approximation: a proposed configuration is trained as its nearest configuration in the table (`Table.nearest`:
the architecture must match where the table has it; then the mean over the searched params of a normalised
distance: 0/1 for a categorical or conditional mismatch, |a - b| over the range for a number, on a log scale for
loguniform). The searcher is told the curve of that neighbour for its own proposal, so it learns a piecewise
constant landscape with as many levels as the table has configurations; it can propose the same neighbour twice
and is charged for training it again, as a real search would be. Where the table has a configuration under several
seeds, each training draws one of its curves, so seed noise stays in the replay.

The cost model: recorded epoch seconds are inflated whenever other jobs share the CPU (load only ever adds time),
so an epoch costs a low quantile (`COST_QUANTILE`) of the epoch seconds of its shape (architecture, width, skips,
batch size) over the whole table, not its own recording: one quiet stretch of a shape sets its price. A shape
recorded only under load (the paper's fcn_dilated and unet width 1.0 rows of the CPU table) has only that price;
the README says how it compares with epoch times measured side by side.

The metric: a strategy searches on a space's `metric` as segtune does (ASHA's rungs and the study's intermediate
values follow it epoch by epoch, a finished trial is told `objective_key(metric)`), and its incumbent is the trial
with the highest such objective so far. `val_miou_avg5` and `max_val_miou_avg5` are computed from each curve's
val_miou by the trainer's own function (seg.epoch_metrics.avg5_curve), so tables recorded before they existed replay too.
"""
from __future__ import annotations

import heapq
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from search.space.model import OptunaSpace, Param
from search.space.schema import SamplerSpec
from search.tune.searchers import RecordedASHA, RecordedFirstSearcher, build_sampler
from search.vocab import objective_key
from seg.epoch_metrics import avg5_curve

SHAPE = ("arch", "width", "skips", "batch_size")  # what an epoch's cost depends on
CURVE_KEYS = ("epoch", "val_miou", "best_val_miou", "test_miou", "val_miou_avg5", "max_val_miou_avg5")
COST_QUANTILE = 0.1  # of a shape's recorded epoch seconds: its price (see the module's docstring)


def optuna_space(params: dict[str, Any]) -> OptunaSpace:
    """The searched space, from the params a resolved space stores (experiment.json, the table's provenance)."""
    return OptunaSpace(tuple(Param(n, p["kind"], tuple(p["values"]), tuple((k, tuple(v)) for k, v in p["when"].items()))
                             for n, p in params.items()))


@dataclass
class Table:
    """The learning-curve table: sampled configurations (their curves, one per seed) and the paper's fixed rows."""

    params: tuple[Param, ...]
    configs: list[dict[str, Any]]  # one per distinct searched configuration (without its seed)
    curves: list[list[np.ndarray]]  # per config: one (epochs x CURVE_KEYS) array per seed
    cost: list[float]  # per config: seconds per epoch (the cost model)
    fixed: dict[str, tuple[np.ndarray, float]] = field(default_factory=dict)  # name -> (curve, seconds per epoch)

    @classmethod
    def load(cls, path: Path) -> "Table":
        table = pd.read_parquet(path)
        meta = json.loads(Path(path).with_suffix(".json").read_text())
        params = optuna_space(meta["space_params"]).params
        table = table[table["status"] == "completed"]
        shape = table[list(SHAPE)].astype(str).agg("|".join, axis=1)
        per_epoch = table.groupby(shape)["seconds"].quantile(COST_QUANTILE)
        table = table.assign(_shape=shape)
        configs, curves, cost, fixed = [], [], [], {}
        keyed: dict[str, int] = {}
        for tid, t in table.groupby("trial_id", sort=True):
            t = t.sort_values("epoch")
            curve = with_avg5(t[list(CURVE_KEYS[:4])].to_numpy(dtype=float))
            seconds = float(per_epoch[t["_shape"].iloc[0]])
            if t["kind"].iloc[0] == "fixed":
                fixed[str(t["name"].iloc[0])] = (curve, seconds)
                continue
            key = t["config_key"].iloc[0]
            if key not in keyed:
                keyed[key] = len(configs)
                configs.append(active_config(params, t.iloc[0]))
                curves.append([])
                cost.append(seconds)
            curves[keyed[key]].append(curve)
        return cls(params, configs, curves, cost, fixed)

    def nearest(self, point: dict[str, Any]) -> int:
        """The index of the table configuration closest to a proposed one (see the module's docstring)."""
        arch = point.get("arch")
        pool = [i for i, c in enumerate(self.configs) if c.get("arch") == arch] or range(len(self.configs))
        return min(pool, key=lambda i: (self.distance(point, self.configs[i]), i))

    def distance(self, a: dict[str, Any], b: dict[str, Any]) -> float:
        total = 0.0
        for p in self.params:
            va, vb = (c.get(p.name) if p.active(c) else None for c in (a, b))
            if va is None or vb is None:
                total += float((va is None) != (vb is None))
            elif p.kind == "choice":
                total += float(va != vb)
            else:
                lo, hi = (math.log(v) for v in p.values) if p.kind == "loguniform" else p.values
                f = math.log if p.kind == "loguniform" else float
                total += abs(f(va) - f(vb)) / ((hi - lo) or 1.0)
        return total / max(1, len(self.params))

    def full_cost(self) -> float:
        """Mean seconds of one sampled configuration's whole budget: the unit of the benchmark's budgets."""
        return float(np.mean([len(c[0]) * s for c, s in zip(self.curves, self.cost)]))


def with_avg5(curve: np.ndarray) -> np.ndarray:
    """A curve (rows: epochs; columns CURVE_KEYS[:4]) with val_miou_avg5 and max_val_miou_avg5 appended."""
    return np.hstack([curve, np.array(avg5_curve(curve[:, 1].tolist()), dtype=float).reshape(len(curve), 2)])


def active_config(params: tuple[Param, ...], row: pd.Series) -> dict[str, Any]:
    """A table row's values of the searched params that are active for it (parents come first), as a proposal
    would carry them: no `width` for an FCN."""
    cfg: dict[str, Any] = {}
    for p in params:
        if p.name in row and p.active(cfg):
            cfg[p.name] = _plain(row[p.name])
    return cfg


def _plain(v: Any) -> Any:
    if isinstance(v, (np.generic,)):
        v = v.item()
    return None if isinstance(v, float) and math.isnan(v) else v


@dataclass(frozen=True)
class Strategy:
    name: str
    sampler: SamplerSpec | None  # None: the paper's fixed trials instead of a search
    asha: bool = False
    prune_aware: bool = True  # the searcher's pruning protocol (False: the older one)
    metric: str = "val_miou"  # the space's `metric` (search.space.schema.METRICS): what it searches and ranks on


class _Trial:
    """What the scheduler sees of a Tune trial."""

    def __init__(self, trial_id: str, config: dict[str, Any]):
        self.trial_id, self.config = trial_id, config


@dataclass
class Anytime:
    """The incumbent over simulated compute: after each reported epoch, the test mIoU (of its best checkpoint) of
    the trial with the highest objective so far, and the seconds of compute spent until then."""

    compute: list[float] = field(default_factory=list)
    test: list[float] = field(default_factory=list)
    val: list[float] = field(default_factory=list)
    trials: int = 0
    epochs: int = 0
    neighbours: list[int] = field(default_factory=list)  # per started trial: the table configuration it trained
    distances: list[float] = field(default_factory=list)  # per started trial: its proposal's distance to that one

    def note(self, compute: float, best_val: float, test: float) -> None:
        if not self.val or best_val > self.val[-1]:
            self.compute.append(compute)
            self.val.append(best_val)
            self.test.append(test)

    def at(self, compute: float) -> float:
        """The incumbent's test mIoU once `compute` seconds were spent (nan before the first epoch)."""
        i = np.searchsorted(self.compute, compute, side="right") - 1
        return float(self.test[i]) if i >= 0 else float("nan")

    def reach(self, target: float) -> float:
        """The compute after which the incumbent's test mIoU first reaches `target` (inf if never)."""
        for c, t in zip(self.compute, self.test):
            if t >= target:
                return c
        return math.inf


def replay(table: Table, strategy: Strategy, workers: int, budget_s: float, seed: int,
           grace: int = 6, reduction: float = 3.0) -> Anytime:
    """One simulated search of `budget_s` seconds of compute on `workers` workers."""
    if strategy.sampler is None:
        return replay_fixed(table, workers)
    rng = random.Random(seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=build_sampler(strategy.sampler, workers, seed))
    space = OptunaSpace(table.params)
    epochs = len(table.curves[0][0])
    searcher = RecordedFirstSearcher(space, study, strategy.metric, [], epochs, prune_aware=strategy.prune_aware)
    objective = objective_key(strategy.metric)
    asha = RecordedASHA(time_attr="epoch", metric=strategy.metric, mode="max", max_t=epochs, grace_period=grace,
                        reduction_factor=reduction) if strategy.asha else None
    out, events, spent, n = Anytime(), [], 0.0, 0

    def start(now: float) -> None:
        nonlocal n
        tid = f"t{n:05d}"
        n += 1
        config = searcher.suggest(tid)
        i = table.nearest(config)
        out.neighbours.append(i)
        out.distances.append(table.distance(config, table.configs[i]))
        curve = rng.choice(table.curves[i])
        trial = _Trial(tid, config)
        if asha:
            asha.on_trial_add(None, trial)
        out.trials += 1
        heapq.heappush(events, (now + table.cost[i], tid, trial, curve, table.cost[i], 0))

    for _ in range(workers):
        start(0.0)
    while events:
        now, tid, trial, curve, cost, row = heapq.heappop(events)
        spent += cost
        if spent > budget_s:
            break
        result = dict(zip(CURVE_KEYS, curve[row]))
        result["epoch"] = int(result["epoch"])
        out.epochs += 1
        out.note(spent, result[objective], result["test_miou"])
        stop = asha is not None and asha.on_trial_result(None, trial, result) == "STOP"
        searcher.on_trial_result(tid, result)
        if stop or row + 1 == len(curve):
            searcher.on_trial_complete(tid, result)
            if asha:
                asha.on_trial_complete(None, trial, result)
            start(now)
        else:
            heapq.heappush(events, (now + cost, tid, trial, curve, cost, row + 1))
    return out


def replay_fixed(table: Table, workers: int) -> Anytime:
    """The paper's fixed trials, all epochs, `workers` at a time in the table's order; the incumbent is the best
    checkpoint by validation (best_val_miou), the paper's own rule."""
    out, events, spent = Anytime(), [], 0.0
    queue = list(table.fixed.items())
    for w in range(min(workers, len(queue))):
        name, (curve, cost) = queue.pop(0)
        heapq.heappush(events, (cost, name, curve, cost, 0))
    while events:
        now, name, curve, cost, row = heapq.heappop(events)
        spent += cost
        out.epochs += 1
        r = dict(zip(CURVE_KEYS, curve[row]))
        out.note(spent, r["best_val_miou"], r["test_miou"])
        if row + 1 < len(curve):
            heapq.heappush(events, (now + cost, name, curve, cost, row + 1))
        elif queue:
            nxt, (c2, k2) = queue.pop(0)
            heapq.heappush(events, (now + k2, nxt, c2, k2, 0))
    out.trials = len(table.fixed)
    return out
