"""Growing a search: an existing experiment whose space file changed only in `budget` continues, with the same
Optuna study, instead of being refused.

    updates = budget_change(stored, space, exp_dir)   # None: something besides the budget changed (refused as before)

More `num_samples` reopens the searched pass: its new trials are named after the last one (`search-0013`, ...),
TPE asks them from the study that holds every earlier trial, ASHA compares them with every recorded result, and
nothing already recorded runs again (the records decide; search.tune.passes). Other concurrency or more failures
allowed take effect on the next Tune run. Fewer samples than the searched trials already run is refused: those
trials exist and stay. With a `seeds:` section, reopening the search also reopens the seed reruns with a fresh plan
(made once the grown search ends); reruns already recorded under the same names are not run again.

The change and the reopened passes go into experiment.json in one atomic write, so a crash during growth resumes
like any other run. Ray-free.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from search.provenance import now_iso
from search.records import pass_records
from search.space import Space, SpaceError, changed_keys
from search.space.model import read_with_current_code

GROWABLE = "budget"  # the one section of the space an existing experiment may change


def budget_change(stored: dict[str, Any], space: Space, exp_dir: Path) -> dict[str, Any] | None:
    """The experiment.json fields that continue experiment `stored` (its experiment.json) with `space`, when the two
    differ only in `budget`; None when anything else differs. SpaceError when the budget shrinks below what ran."""
    old, new = read_with_current_code(stored.get("space") or {}), space.to_json()  # fields added since: defaults
    rest = lambda s: {k: v for k, v in s.items() if k != GROWABLE}  # noqa: E731
    if changed_keys(rest(old), rest(new)):
        return None
    diff = changed_keys({GROWABLE: old.get(GROWABLE) or {}}, {GROWABLE: new[GROWABLE]})
    if not diff:
        return None  # the hash differs for another reason: refused, naming the hash
    final, unfinished = pass_records(exp_dir, "search")
    ran = len(final) + len(unfinished)
    wanted = space.budget.num_samples
    if wanted < ran:
        raise SpaceError(
            f"{space.source}: budget.num_samples: {(old.get(GROWABLE) or {}).get('num_samples')} -> {wanted}, but "
            f"experiment {stored.get('name')!r} has already run {ran} searched trials; a search keeps what it ran. "
            f"Set budget.num_samples to {ran} or more to continue it, or pass --fresh to start a new experiment "
            f"(the old one is kept)")
    passes = dict(stored.get("passes") or {})
    updates: dict[str, Any] = {}
    reopened = []
    if wanted > len(final) and passes.get("search") == "done":
        reopened.append(passes.pop("search") and "search")
        if "seeds" in passes:  # the seed plan came from the smaller search: planned again once this one ends
            reopened.append(passes.pop("seeds") and "seeds")
            updates["seed_plan"] = None
    grown = [*stored.get("budget_changes", []), {"at": now_iso(), "changes": diff, "searched_trials_before": ran,
                                                  "reopened": reopened}]
    return {**updates, "space": new, "space_hash": space.hash, "passes": passes, "budget_changes": grown}


def describe(updates: dict[str, Any]) -> str:
    """One console line about an accepted budget change."""
    change = updates["budget_changes"][-1]
    return (f"budget changed ({'; '.join(change['changes'])}): the experiment continues with the same study"
            + (f"; reopened: {', '.join(change['reopened'])} (after {change['searched_trials_before']} searched "
               f"trials)" if change["reopened"] else ""))
