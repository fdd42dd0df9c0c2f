"""The report's numbers, with no Plotly and no HTML: parameter importances, the Pareto front, search efficiency.

Each function takes the prepared leaderboard (`search.report.load`) or plain arrays and returns plain numbers,
so the tests check them directly. Optuna is imported only inside `param_importances`: `import search.report`
stays light (no Optuna, no Ray, no torch), and a report without enough trials never loads it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from search.report.load import hyperparameter_columns, varying
from search.report.values import labels, scalar
from search.vocab import COMPLETED, PRUNED, RUNNING

MIN_IMPORTANCE_TRIALS = 4  # fANOVA's forest needs a few points
LOG_AXIS_RATIO = 100  # a positive numeric parameter spanning this factor is searched / shown on a log axis
TARGET = "best_val_miou"  # what the importances explain


# ==== parameter importance (fANOVA) =========================================================================
def numeric_param(s: pd.Series) -> bool:
    """A numeric (not bool) hyperparameter with a value in every row."""
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s) and s.notna().all()


def log_axis(s: pd.Series) -> bool:
    return numeric_param(s) and (s > 0).all() and s.max() / s.min() >= LOG_AXIS_RATIO


def _distribution(s: pd.Series):
    """The Optuna distribution a column's values could have come from, and the values in its terms."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if numeric_param(s):
        lo, hi = s.min(), s.max()
        if pd.api.types.is_integer_dtype(s) or (s == s.round()).all() and not pd.api.types.is_float_dtype(s):
            return IntDistribution(int(lo), int(hi)), s.astype(int).tolist()
        return FloatDistribution(float(lo), float(hi), log=log_axis(s)), s.astype(float).tolist()
    vals = labels(s).tolist()
    return CategoricalDistribution(sorted(set(vals))), vals


def _study(done: pd.DataFrame, hp: list[str]):
    """An in-memory Optuna study holding one finished trial per leaderboard row."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists, values = {}, {}
    for c in hp:
        dists[c], values[c] = _distribution(done[c])
    study = optuna.create_study(direction="maximize")
    study.add_trials(
        [
            optuna.trial.create_trial(value=float(v), params={c: values[c][i] for c in hp}, distributions=dists)
            for i, v in enumerate(done[TARGET])
        ]
    )
    return study


def _evaluator() -> tuple[Any, str]:
    import optuna

    try:
        import sklearn  # noqa: F401  fANOVA's random forest

        return optuna.importance.FanovaImportanceEvaluator(seed=0), "fANOVA"
    except ImportError:
        method = "PED-ANOVA (fANOVA needs scikit-learn, which is not installed)"
        return optuna.importance.PedAnovaImportanceEvaluator(), method


def param_importances(lb: pd.DataFrame) -> tuple[dict[str, float], str]:
    """fANOVA importances of the varying hyperparameters over completed trials, or ({}, why not)."""
    done = lb[(lb["status"] == COMPLETED) & lb[TARGET].notna()]
    if len(done) < MIN_IMPORTANCE_TRIALS:
        return {}, (
            f"Importance needs at least {MIN_IMPORTANCE_TRIALS} completed trials with a score "
            f"({len(done)} so far)."
        )
    hp = varying(done, hyperparameter_columns(done))
    if not hp:
        return {}, "No hyperparameter varies across the completed trials."
    import optuna

    evaluator, method = _evaluator()
    try:
        imp = optuna.importance.get_param_importances(_study(done, hp), evaluator=evaluator)
    except Exception as e:
        return {}, f"{method} failed: {type(e).__name__}: {e}"
    return dict(imp), f"{method} over {len(done)} completed trials, target: best val mIoU."


# ==== cost ==================================================================================================
def pareto_front(cost: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Indices of points no other point beats on both lower cost and higher score, by increasing cost."""
    front, best = [], -np.inf
    for i in np.lexsort((-score, cost)):
        if score[i] > best:
            front.append(i)
            best = score[i]
    return np.array(front, dtype=int)


# ==== search efficiency =====================================================================================
class EfficiencySeries(NamedTuple):
    """The finished trials in the order they finished, with running totals (one entry per trial)."""

    label: list[str]
    status: list[str]
    cum_epochs: list[float]  # epochs run by this trial and every one that finished before it
    cum_trial_hours: list[float]  # the same trials' training + evaluation time, pruned ones included
    cum_gpu_hours: list[float]
    best_so_far: list[float]  # the best val mIoU found up to this trial (NaN before the first score)
    best_val_miou: list[float]  # this trial's own


class StatusTotal(NamedTuple):
    status: str
    trials: int
    epochs: float | None
    wall_seconds: float


def finished(lb: pd.DataFrame) -> pd.DataFrame:
    """The trials that are not still running."""
    return lb[lb["status"] != RUNNING]


def finish_order(lb: pd.DataFrame) -> pd.DataFrame:
    """By finished_at (started_at where missing), unknown times last."""
    fin = pd.to_datetime(lb["finished_at"], errors="coerce", utc=True, format="ISO8601")
    fin = fin.fillna(pd.to_datetime(lb["started_at"], errors="coerce", utc=True, format="ISO8601"))
    return lb.assign(_t=fin).sort_values("_t", na_position="last", kind="stable").drop(columns="_t")


def efficiency_series(lb: pd.DataFrame) -> EfficiencySeries:
    """Best val mIoU so far against cumulative epochs, trial-hours and GPU-hours, over the finished trials."""
    d = finish_order(finished(lb))
    return EfficiencySeries(
        label=d["label"].tolist(),
        status=d["status"].tolist(),
        cum_epochs=d["epochs_run"].fillna(0).cumsum().tolist(),
        cum_trial_hours=(d["wall_seconds"].fillna(0).cumsum() / 3600).tolist(),
        cum_gpu_hours=(d["gpu_seconds"].fillna(0).cumsum() / 3600).tolist(),
        best_so_far=d[TARGET].cummax().tolist(),
        best_val_miou=d[TARGET].tolist(),
    )


def status_totals(lb: pd.DataFrame, statuses: tuple[str, ...]) -> list[StatusTotal]:
    """Trials, epochs run and training seconds per status."""
    counts = lb["status"].value_counts()
    return [
        StatusTotal(
            s,
            int(counts.get(s, 0)),
            scalar(lb.loc[lb["status"] == s, "epochs_run"].sum()),
            scalar(lb.loc[lb["status"] == s, "wall_seconds"].sum()),
        )
        for s in statuses
    ]


def pruning_savings(lb: pd.DataFrame) -> tuple[float, float] | None:
    """(epochs the pruned trials did not run, that as a share of the full budget), or None without `epochs`."""
    if "epochs" not in lb.columns:
        return None
    pr = lb[lb["status"] == PRUNED]
    skipped = scalar((pd.to_numeric(pr["epochs"], errors="coerce") - pr["epochs_run"]).clip(lower=0).sum())
    total = lb["epochs_run"].sum()
    return skipped, scalar(skipped / max(skipped + total, 1))
