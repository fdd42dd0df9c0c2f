"""The validated space as data: the searched params, the Optuna define-by-run space over them, and `Space` (complete
configs for the defaults and every fixed trial). Picklable: Tune checkpoints the searcher that holds the space."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.space.schema import (BudgetSpec, DataSpec, ResourcesSpec, SamplerSpec, SchedulerSpec, SeedsSpec,
                                 TrackingSpec)
from seg.config import TrainConfig


# ---------------------------------------------------------------------------------------------------------------
# The validated space
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # loguniform | uniform | int | choice
    values: tuple  # (low, high) or the choices, as TrainConfig coerced them
    when: tuple[tuple[str, tuple], ...] = ()  # ((param, allowed values), ...)

    def active(self, chosen: dict[str, Any]) -> bool:
        return all(k in chosen and chosen[k] in allowed for k, allowed in self.when)

    def contains(self, v: Any) -> bool:
        """Whether a (fixed trial's) value lies in this param's distribution."""
        if self.kind == "choice":
            return any(v == c and isinstance(v, bool) == isinstance(c, bool) for c in self.values)  # True != 1
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if self.kind == "int" and v != int(v):
            return False
        return self.values[0] <= v <= self.values[1]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "values": list(self.values), "when": {k: list(v) for k, v in self.when}}


@dataclass(frozen=True)
class OptunaSpace:
    """Optuna define-by-run space (picklable: Tune checkpoints the searcher). Parents come before children."""

    params: tuple[Param, ...]

    def __call__(self, trial) -> None:
        chosen: dict[str, Any] = {}
        for p in self.params:
            if p.active(chosen):
                chosen[p.name] = _suggest(trial, p)
        return None  # OptunaSearch records every suggest_* call as the trial's config

    def point(self, config: dict[str, Any]) -> dict[str, Any]:
        """The searched values of a complete config, for seeding the sampler with a fixed trial's result: keys
        outside the searched params, values outside their ranges and params whose condition fails are left out."""
        chosen: dict[str, Any] = {}
        for p in self.params:
            if p.active(chosen) and p.name in config and p.contains(config[p.name]):
                chosen[p.name] = config[p.name]
        return chosen

    def distributions(self, point: dict[str, Any]) -> dict[str, Any]:
        """Optuna distributions of the params present in `point`."""
        return {p.name: _distribution(p) for p in self.params if p.name in point}


def _distribution(p: Param):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if p.kind == "choice":
        return CategoricalDistribution(list(p.values))
    if p.kind == "int":
        return IntDistribution(int(p.values[0]), int(p.values[1]))
    return FloatDistribution(float(p.values[0]), float(p.values[1]), log=p.kind == "loguniform")


def _suggest(trial, p: Param) -> Any:
    if p.kind == "choice":
        return trial.suggest_categorical(p.name, list(p.values))
    if p.kind == "int":
        return trial.suggest_int(p.name, int(p.values[0]), int(p.values[1]))
    return trial.suggest_float(p.name, float(p.values[0]), float(p.values[1]), log=p.kind == "loguniform")


@dataclass
class Space:
    """A validated space: complete configs for the defaults and every fixed trial, plus the searched params."""

    name: str
    source: Path
    description: str | None
    data: DataSpec
    defaults: TrainConfig  # data section applied
    params: tuple[Param, ...]
    fixed: dict[str, TrainConfig]  # name -> complete config, in file order (includes first)
    fixed_sources: dict[str, str]  # name -> file that defined it
    metric: str
    budget: BudgetSpec
    scheduler: SchedulerSpec | None
    sampler: SamplerSpec
    resources: ResourcesSpec
    storage: str
    seed: int
    includes: tuple[str, ...] = field(default=())
    seeds: SeedsSpec | None = None
    tracking: TrackingSpec = field(default_factory=TrackingSpec)

    @property
    def optuna_space(self) -> OptunaSpace:
        return OptunaSpace(self.params)

    @property
    def searched_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def max_epochs(self) -> int:
        """ASHA's max_t: configured, or the most epochs a searched trial can be given."""
        if self.scheduler and self.scheduler.max_epochs:
            return self.scheduler.max_epochs
        return _most_epochs(self.params, self.defaults)

    def to_json(self) -> dict[str, Any]:
        """The resolved space: what an experiment was started with (stored in experiment.json, hashed)."""
        return {
            "name": self.name, "data": self.data.model_dump(), "defaults": self.defaults.model_dump(mode="json"),
            "params": {p.name: p.to_json() for p in self.params},
            "fixed_trials": {n: c.model_dump(mode="json") for n, c in self.fixed.items()},
            "metric": self.metric, "budget": self.budget.model_dump(),
            "scheduler": self.scheduler.model_dump() if self.scheduler else None,
            "sampler": self.sampler.model_dump(), "seed": self.seed,
            # only when set: experiments started before the seeds section existed keep their hash
            **({"seeds": self.seeds.model_dump()} if self.seeds else {}),
        }  # resources, storage and tracking are left out: they say where trials run and report, not what they compute

    @property
    def hash(self) -> str:
        return space_hash(self.to_json())


def space_hash(resolved: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_with_current_code(stored: dict[str, Any]) -> dict[str, Any]:
    """A resolved space stored by an earlier version, read with this version's models: fields added since take
    their defaults (a new TrainConfig lever, a new sampler setting), renamed keys their new names. An experiment
    started before a field existed then resumes, since a field at its default computes what the old code did;
    a field the old space set to something else still differs. Returns `stored` unchanged where it does not
    validate (the caller then reports the difference as it is)."""
    out = dict(stored)
    try:
        for key in ("defaults",):
            if isinstance(stored.get(key), dict):
                out[key] = TrainConfig.model_validate(stored[key]).model_dump(mode="json")
        if isinstance(stored.get("fixed_trials"), dict):
            out["fixed_trials"] = {n: TrainConfig.model_validate(c).model_dump(mode="json")
                                   for n, c in stored["fixed_trials"].items()}
        for key, spec in (("data", DataSpec), ("budget", BudgetSpec), ("scheduler", SchedulerSpec),
                          ("sampler", SamplerSpec), ("seeds", SeedsSpec)):
            if isinstance(stored.get(key), dict):
                out[key] = spec.model_validate(stored[key]).model_dump()
    except ValueError:  # pydantic's ValidationError: a field was removed or changed meaning
        return stored
    return out


def changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Key paths whose values differ between two resolved spaces, as `path: old -> new` lines."""
    out = []
    for k in sorted(set(old) | set(new), key=str):
        path = f"{prefix}{k}"
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, path + ".")
        elif a != b:
            out.append(f"{path}: {a!r} -> {b!r}")
    return out


def _most_epochs(params: tuple[Param, ...], defaults: TrainConfig) -> int:
    for p in params:
        if p.name == "epochs":
            return int(max(p.values))
    return defaults.epochs
