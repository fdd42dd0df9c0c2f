"""Search efficiency on real segmentation learning curves: each strategy replayed (bench.replay) over the committed
table (bench.curves) for many seeds, at W parallel workers, at equal compute.

    python -m bench.efficiency                          # bench/data/curves_cpu64.parquet, W = 4 and 16, 30 seeds
    python -m bench.efficiency --seeds 5 --workers 4    # a quicker look

Strategies: random search (full budget), random + ASHA, TPE (full budget), TPE + ASHA with the older searcher
protocol (a pruned trial told its last score as a full result, no intermediate values, no constant liar, trials
ranked on their best single epoch: segtune before this benchmark), TPE + ASHA as segtune searches now (Optuna's
pruning protocol, constant liar, the space's default metric val_miou_avg5: trials ranked on their best 5-epoch
mean of val mIoU), each change on its own (so that each default is kept on its own measurement), the random
baselines on the 5-epoch mean as well, and the paper's seven trials (best checkpoint by validation, its own rule).
Compute is simulated seconds of training (the sum over workers), the budget a number of average full-budget
trials of the table (default: half as many as the table has sampled configurations, so that no search can afford
the whole table). Writes bench/results/efficiency.json (every figure below, per seed) and
bench/results/efficiency.html (anytime curves: the incumbent's test mIoU against compute, median and quartiles),
and prints the README's table.

What the table says, per strategy and W (medians over seeds):
  - reach: compute until the incumbent (the highest objective so far) reaches random search's final test mIoU, as a
    share of the budget (random search itself spends the whole budget; inf: not reached);
  - test mIoU at the paper's compute (what the paper's seven trials cost on W workers) and at the full budget.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bench.replay import Anytime, Strategy, Table, replay
from search.provenance import now_iso, versions
from search.report import replace_between_markers
from search.space.schema import SamplerSpec, SpaceFile
from seg.atomic import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "bench" / "data" / "curves_cpu64.parquet"
OUT = REPO / "bench" / "results" / "efficiency.json"
TPE = SamplerSpec(kind="tpe", n_startup_trials=10)
AVG5 = "val_miou_avg5"
SEGTUNE_METRIC = SpaceFile.model_fields["metric"].default  # what a space searches on unless it says otherwise
OLDER = TPE.model_copy(update={"constant_liar": False})
STRATEGIES = (
    Strategy("random", SamplerSpec(kind="random")),
    Strategy("random, 5-epoch mean", SamplerSpec(kind="random"), metric=AVG5),
    Strategy("random + ASHA", SamplerSpec(kind="random"), asha=True),
    Strategy("random + ASHA, 5-epoch mean", SamplerSpec(kind="random"), asha=True, metric=AVG5),
    Strategy("TPE", TPE),
    Strategy("TPE + ASHA, older protocol", OLDER, asha=True, prune_aware=False),
    Strategy("TPE + ASHA (segtune)", TPE, asha=True, metric=SEGTUNE_METRIC),
    # one change at a time, so each default is kept (or dropped) on its own measurement: the metric against
    # segtune's searcher, the two protocol changes against the older protocol
    Strategy("TPE + ASHA, best single epoch", TPE, asha=True),
    Strategy("TPE + ASHA, pruning protocol only", OLDER, asha=True),
    Strategy("TPE + ASHA, constant liar only", TPE.model_copy(update={"constant_liar": True}), asha=True,
             prune_aware=False),
    Strategy("paper's seven", None),
)
PAPER = STRATEGIES[-1].name
DEFAULT = "TPE + ASHA (segtune)"
GRID = 200  # points of the anytime curves on the page
MARKERS = ("<!-- efficiency:start -->", "<!-- efficiency:end -->")  # around the table in README.md
MIN_CONFIGS = 4  # sampled configurations a replay needs to mean anything at all
BUDGET_SHARE = 0.5  # the default budget, in full trials per sampled configuration of the table


def run(table: Table, workers: int, seeds: int, budget_s: float, grace: int, reduction: float) -> dict[str, Any]:
    """Every strategy, `seeds` times, on `workers` workers: the anytime curves and the table's figures."""
    runs: dict[str, list[Anytime]] = {}
    for s in STRATEGIES:
        n = 1 if s.sampler is None else seeds  # the paper's trials are the same every time
        runs[s.name] = [replay(table, s, workers, budget_s, seed, grace, reduction) for seed in range(n)]
    paper = runs[PAPER][0]
    paper_s, paper_test = sum_epochs_cost(table), paper.at(math.inf)
    target = float(np.median([r.at(budget_s) for r in runs["random"]]))
    grid = np.linspace(0, budget_s, GRID)
    out: dict[str, Any] = {"workers": workers, "budget_s": budget_s, "random_final_test_miou": target,
                           "paper_compute_s": paper_s, "paper_best_test_miou": paper_test, "strategies": {}}
    for name, rs in runs.items():
        reach = [r.reach(target) / budget_s for r in rs]
        # past the budget a search has stopped: no figure rather than its budget's result under another name
        past = paper_s > budget_s and name != PAPER
        at_paper = [math.nan if past else r.at(paper_s) for r in rs]
        at_budget = [r.at(budget_s) for r in rs]
        curves = np.array([[r.at(x) for x in grid] for r in rs])  # nan before a run's first epoch
        out["strategies"][name] = {
            "seeds": len(rs), "reach_share_median": _median(reach), "reach_share": reach,
            "test_at_paper_compute": _quartiles(at_paper), "test_at_budget": _quartiles(at_budget),
            # the goal as a rate, steadier than a median that jumps between the table's few good configurations
            "beats_paper_share": _share_above(at_paper, paper_test),
            "trials_median": float(np.median([r.trials for r in rs])),
            "epochs_median": float(np.median([r.epochs for r in rs])),
            # the nearest-configuration approximation's effect: how far proposals lay from what they trained, and
            # how often a trial trained a table configuration the same search had already trained
            "mapped_distance_median": _median([float(np.mean(r.distances)) for r in rs if r.distances]),
            "retrained_share_median": _median([1 - len(set(r.neighbours)) / len(r.neighbours) for r in rs
                                               if r.neighbours]),
            "curve": {"compute_s": grid.tolist(), **_bands(curves)},
        }
    return out


def signal_and_noise(table: Table) -> dict[str, Any]:
    """Does the table carry signal? The spread of the final test mIoU (of the best-validation checkpoint) between
    configurations against the spread between seeds of one configuration."""
    finals = [[float(c[-1][3]) for c in cs] for cs in table.curves]
    seeded = [np.std(f, ddof=1) for f in finals if len(f) > 1]
    return {"configurations_sd": float(np.std([f[0] for f in finals], ddof=1)) if len(finals) > 1 else math.nan,
            "seed_sd_mean": float(np.mean(seeded)) if seeded else math.nan, "seeded_configurations": len(seeded),
            "final_test_miou": {"min": float(np.min([f[0] for f in finals])),
                                "median": float(np.median([f[0] for f in finals])),
                                "max": float(np.max([f[0] for f in finals]))}}


def sum_epochs_cost(table: Table) -> float:
    """The compute of the paper's seven trials: every epoch of each, at the cost model's price."""
    return float(sum(len(curve) * cost for curve, cost in table.fixed.values()))


QUARTILES = (("q25", 25), ("median", 50), ("q75", 75))


def _bands(curves: np.ndarray) -> dict[str, list[float]]:
    with warnings.catch_warnings():  # columns before every run's first epoch are all nan: so is their band
        warnings.simplefilter("ignore", RuntimeWarning)
        return {k: np.nanpercentile(curves, q, axis=0).tolist() for k, q in QUARTILES}


def _median(xs: list[float]) -> float:
    return float(np.median(xs)) if xs else math.nan


def _share_above(xs: list[float], bar: float) -> float:
    """The share of seeds whose figure is above the bar (nan where no seed has a figure)."""
    a = np.array(xs, dtype=float)
    return math.nan if np.isnan(a).all() else float(np.mean(a[~np.isnan(a)] > bar))


def _quartiles(xs: list[float]) -> dict[str, float]:
    a = np.array(xs, dtype=float)
    if np.isnan(a).all():
        return {k: math.nan for k, _ in QUARTILES}
    return {k: float(np.nanpercentile(a, q)) for k, q in QUARTILES}


# ---------------------------------------------------------------------------------------------------------------
# The README table and the page
# ---------------------------------------------------------------------------------------------------------------
def markdown(result: dict[str, Any]) -> str:
    sn = result["signal_and_noise"]
    lines = [f"The table: {result['configurations']} configurations ({sn['seeded_configurations']} under several "
             f"seeds) and the paper's rows {', '.join(result['fixed'])}. Final test mIoU across configurations: "
             f"{sn['final_test_miou']['min']:.4f} to {sn['final_test_miou']['max']:.4f}, sd {sn['configurations_sd']:.4f}; "
             f"between seeds of one configuration: sd {sn['seed_sd_mean']:.4f}.", ""]
    for w in result["by_workers"]:
        lines += [f"W = {w['workers']} workers; budget {w['budget_s'] / 3600:.1f} h of compute "
                  f"({result['budget_trials']} average full trials); random search's final test mIoU "
                  f"{w['random_final_test_miou']:.4f}; the paper's seven: {w['paper_best_test_miou']:.4f} in "
                  f"{w['paper_compute_s'] / 3600:.1f} h", "",
                  "| strategy | compute to reach random's final (share of budget) | test mIoU at the paper's compute "
                  "| seeds above the paper's best at its compute | test mIoU at the budget | trials started |",
                  "|---|---|---|---|---|---|"]
        for name, s in w["strategies"].items():
            reach = s["reach_share_median"]
            lines.append(f"| {name} | {'not reached' if not math.isfinite(reach) else f'{reach:.2f}'} | "
                         f"{_cell(s['test_at_paper_compute'])} | {_pct(s['beats_paper_share'])} | "
                         f"{_cell(s['test_at_budget'])} | "
                         f"{s['trials_median']:.0f} |")
        ours = w["strategies"][DEFAULT]
        lines += ["", f"The nearest-configuration approximation at W = {w['workers']}: a proposal of {DEFAULT} lay at "
                      f"a median normalised distance of {ours['mapped_distance_median']:.3f} from the table "
                      f"configuration it trained, and {ours['retrained_share_median']:.0%} of its trials retrained a "
                      f"configuration the same search had trained before.", ""]
    return "\n".join(lines)


def _cell(q: dict[str, float]) -> str:
    if not math.isfinite(q["median"]):
        return "—"
    return f"{q['median']:.4f} ({q['q25']:.4f}–{q['q75']:.4f})"


def _pct(share: float) -> str:
    return f"{share:.0%}" if math.isfinite(share) else "—"


def page(result: dict[str, Any]) -> str:
    from plotly.subplots import make_subplots

    ws = result["by_workers"]
    fig = make_subplots(rows=1, cols=len(ws), subplot_titles=[f"W = {w['workers']}" for w in ws], shared_yaxes=True)
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#d62728", "#e377c2", "#17becf", "#7f7f7f"]  # paper's last
    for col, w in enumerate(ws, start=1):
        for (name, s), colour in zip(w["strategies"].items(), colours):
            x = [c / 3600 for c in s["curve"]["compute_s"]]
            show = col == 1
            fig.add_scatter(x=x, y=s["curve"]["q75"], line={"width": 0}, showlegend=False, hoverinfo="skip",
                            legendgroup=name, row=1, col=col)
            fig.add_scatter(x=x, y=s["curve"]["q25"], line={"width": 0}, fill="tonexty", fillcolor=_alpha(colour),
                            showlegend=False, hoverinfo="skip", legendgroup=name, row=1, col=col)
            fig.add_scatter(x=x, y=s["curve"]["median"], name=name, line={"color": colour}, legendgroup=name,
                            showlegend=show, row=1, col=col)
        fig.add_vline(x=w["paper_compute_s"] / 3600, line_dash="dot", row=1, col=col)
        fig.add_hline(y=w["paper_best_test_miou"], line_dash="dot", row=1, col=col)
    fig.update_xaxes(title_text="simulated compute, hours (all workers)")
    fig.update_yaxes(title_text="test mIoU of the best-by-validation trial so far", col=1)
    fig.update_layout(title="Search efficiency on VOC2007 learning curves (median and quartiles over seeds; dotted: "
                            "the paper's seven trials)", height=560)
    return fig.to_html(include_plotlyjs=True, full_html=True)


def _alpha(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},0.15)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.efficiency", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", type=Path, default=TABLE)
    ap.add_argument("--workers", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--budget-trials", type=float, default=None,
                    help="the compute budget, in average full-budget trials of the table (default: half the "
                         "table's sampled configurations, 24 for the full table)")
    ap.add_argument("--grace", type=int, default=6, help="ASHA's first rung, epochs")
    ap.add_argument("--reduction", type=float, default=3.0, help="ASHA's reduction factor")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--into", type=Path, metavar="FILE", help=f"also replace the lines between {MARKERS[0]} and "
                    f"{MARKERS[1]} in FILE (README.md) with the printed table")
    args = ap.parse_args(argv)
    if not args.table.is_file():
        print(f"{args.table}: no learning-curve table; build it with `python -m bench.curves build` (README, "
              f"'Search efficiency')", file=sys.stderr)
        return 2
    table = Table.load(args.table)
    if len(table.configs) < MIN_CONFIGS:
        print(f"{args.table}: {len(table.configs)} finished sampled configurations so far (and {len(table.fixed)} "
              f"fixed rows); a replay needs at least {MIN_CONFIGS}. Resume the build: python -m bench.curves build",
              file=sys.stderr)
        return 2
    if args.budget_trials is None:  # a search that could afford the whole table would only measure its size
        args.budget_trials = len(table.configs) * BUDGET_SHARE
    budget_s = args.budget_trials * table.full_cost()
    start = time.perf_counter()
    by_workers = [run(table, w, args.seeds, budget_s, args.grace, args.reduction) for w in args.workers]
    result = {"table": str(args.table.relative_to(REPO) if args.table.is_relative_to(REPO) else args.table),
              "table_provenance": json.loads(args.table.with_suffix(".json").read_text()),
              "configurations": len(table.configs), "with_seeds": sum(len(c) > 1 for c in table.curves),
              "fixed": list(table.fixed), "signal_and_noise": signal_and_noise(table),
              "budget_trials": args.budget_trials, "seeds": args.seeds,
              "asha": {"grace_period": args.grace, "reduction_factor": args.reduction}, "default": DEFAULT,
              "created_at": now_iso(), "versions": versions(), "seconds": round(time.perf_counter() - start, 1),
              "by_workers": by_workers}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=1, allow_nan=True) + "\n")
    atomic_write_text(args.out.with_suffix(".html"), page(result))
    print(markdown(result))
    if args.into is not None:
        try:
            text = replace_between_markers(args.into.read_text(), markdown(result) + "\n", str(args.into), MARKERS)
        except (OSError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        atomic_write_text(args.into, text)
    print(f"{args.out} and {args.out.with_suffix('.html')} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
