"""Reading a space file: YAML (floats as floats), the schema, then every value a trial can receive checked by
`TrainConfig` itself, conditions ordered parents-first, fixed trials resolved (with `include:`) into complete
configs. Every problem raises SpaceError naming the file, the key path, the bad value and the fix."""
from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from search.space.errors import SpaceError, _did_you_mean, format_space_errors, format_train_errors
from search.space.model import Param, Space, _most_epochs
from search.space.schema import DATA_FIELDS, SEARCHABLE_DATA_FIELDS, ParamSpec, SpaceFile
from seg.config import TrainConfig


# ---------------------------------------------------------------------------------------------------------------
# YAML loading: `1e-3` is a float (PyYAML's YAML 1.1 resolver reads it as a string)
# ---------------------------------------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in a YAML file, or SpaceError naming the file and the line."""
    if not path.is_file():
        raise SpaceError(f"{path}: space file not found (cwd: {Path.cwd()})")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as e:
        raise SpaceError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        raise SpaceError(f"{path}: the file is empty; it needs at least `name:` and `defaults:`")
    if not isinstance(data, dict):
        raise SpaceError(f"{path}: expected a mapping (name:, data:, defaults:, params: ...) at the top level, "
                         f"got {type(data).__name__}")
    return data


# ---------------------------------------------------------------------------------------------------------------
# Loading and validation
# ---------------------------------------------------------------------------------------------------------------
def load_space(path: str | Path, _stack: tuple[Path, ...] = ()) -> Space:
    """Read and validate a space file (and the files it includes). Raises SpaceError."""
    path = Path(path).expanduser()
    where = _shown(path)
    raw = read_yaml(path)
    try:
        spec = SpaceFile.model_validate(raw)
    except ValidationError as err:
        raise SpaceError(format_space_errors(err, where)) from None

    data_fields = spec.data.train_fields()
    defaults = _train_config({**_without_data_fields(spec.defaults, where, "defaults"), **data_fields},
                             where, "defaults")
    params = _validate_params(spec.params, defaults, where)
    fixed, sources, includes = _resolve_fixed_trials(spec, defaults, data_fields, path, (*_stack, path.resolve()))
    space = Space(
        name=spec.name, source=path, description=spec.description, data=spec.data, defaults=defaults,
        params=params, fixed=fixed, fixed_sources=sources, metric=spec.metric, budget=spec.budget,
        scheduler=spec.scheduler, sampler=spec.sampler, resources=spec.resources, storage=spec.storage,
        seed=spec.seed, includes=includes, seeds=spec.seeds, tracking=spec.tracking,
    )
    _check_scheduler(space, where)
    _check_seeds(space, where)
    if not space.fixed and space.budget.num_samples == 0:
        raise SpaceError(f"{where}: budget.num_samples is 0 and there are no fixed_trials: nothing would run; "
                         f"add fixed_trials or set budget.num_samples")
    if space.budget.num_samples and not space.params:
        raise SpaceError(f"{where}: budget.num_samples is {space.budget.num_samples} but params is empty: "
                         f"add searched params or set budget.num_samples: 0")
    return space


def _shown(path: Path) -> str:
    """The path as the user would recognise it: relative to the cwd when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _without_data_fields(d: dict[str, Any], where: str, section: str) -> dict[str, Any]:
    for k in d:
        if k in DATA_FIELDS:
            target = {"dataset": "data.dataset", "year": "data.dataset (voc2007 or voc2012)", "data_root": "data.root",
                      "download": "data.download", "image_size": "data.image_size", "resize": "data.resize"}[k]
            raise SpaceError(f"{where}: {section}.{k}: the data section sets this for the whole experiment; "
                             f"set {target} instead")
    return d


def _train_config(d: dict[str, Any], where: str, section: str) -> TrainConfig:
    try:
        return TrainConfig(**d)
    except ValidationError as err:
        raise SpaceError(format_train_errors(err, where, section)) from None


def _validate_params(params: dict[str, ParamSpec], defaults: TrainConfig, where: str) -> tuple[Param, ...]:
    fields = TrainConfig.model_fields
    out: dict[str, Param] = {}
    for name, spec in params.items():
        key = f"params.{name}"
        if name not in fields:
            raise SpaceError(f"{where}: {key}: unknown parameter {name!r}; params are TrainConfig fields"
                             + _did_you_mean(name, fields))
        if name in DATA_FIELDS and name not in SEARCHABLE_DATA_FIELDS:
            raise SpaceError(f"{where}: {key}: {name} belongs to the data section and cannot be searched")
        _check_kind_fits_field(name, spec.kind, fields[name].annotation, where, key)
        base = defaults.model_dump()
        coerced = []
        for i, v in enumerate(spec.values):
            loc = f"{key}.{spec.kind}" + (f"[{i}]" if spec.kind == "choice" else f" ({'low' if i == 0 else 'high'})")
            cfg = _train_config({**base, name: v}, where, loc)
            coerced.append(_plain(getattr(cfg, name)))
        out[name] = Param(name, spec.kind, tuple(coerced))
    # conditions refer to searched choices; order parents before children for define-by-run sampling
    for name, spec in params.items():
        when = []
        for parent, allowed in (spec.when or {}).items():
            loc = f"params.{name}.when.{parent}"
            if parent not in out:
                raise SpaceError(f"{where}: {loc}: conditions may only refer to searched params "
                                 f"({sorted(out) or 'none'})" + _did_you_mean(parent, out))
            allowed = tuple(allowed) if isinstance(allowed, list) else (allowed,)
            pv = out[parent]
            for a in allowed:
                ok = a in pv.values if pv.kind == "choice" else (
                    isinstance(a, (int, float)) and pv.values[0] <= a <= pv.values[1])
                if not ok:
                    raise SpaceError(f"{where}: {loc}: {a!r} is not a value {parent} can take; "
                                     f"allowed: {list(pv.values)}")
            when.append((parent, allowed))
        out[name] = Param(name, out[name].kind, out[name].values, tuple(when))
    return _parents_first(out, where)


def _check_kind_fits_field(name: str, kind: str, annotation: Any, where: str, key: str) -> None:
    types_ = {a for a in (typing.get_args(annotation) or (annotation,)) if a is not type(None)}
    if kind == "choice":
        return
    if types_ <= {int}:
        if kind != "int":
            raise SpaceError(f"{where}: {key}: {name} is an integer field; use int: [low, high] or choice: [...]"
                             f" instead of {kind}")
    elif not types_ <= {float, int}:
        raise SpaceError(f"{where}: {key}: {name} is not numeric ({_type_name(annotation)}); use choice: [...]")


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _parents_first(params: dict[str, Param], where: str) -> tuple[Param, ...]:
    ordered: list[Param] = []
    done: set[str] = set()

    def visit(p: Param, chain: tuple[str, ...]) -> None:
        if p.name in done:
            return
        if p.name in chain:
            raise SpaceError(f"{where}: params.{p.name}.when: conditions form a cycle: {' -> '.join((*chain, p.name))}")
        for parent, _ in p.when:
            visit(params[parent], (*chain, p.name))
        done.add(p.name)
        ordered.append(p)

    for p in params.values():
        visit(p, ())
    return tuple(ordered)


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _check_scheduler(space: Space, where: str) -> None:
    if not space.scheduler or not space.scheduler.max_epochs:
        return
    most = _most_epochs(space.params, space.defaults)
    if space.scheduler.max_epochs < most:
        raise SpaceError(f"{where}: scheduler.max_epochs ({space.scheduler.max_epochs}) is below the {most} epochs a "
                         f"searched trial can get: ASHA would stop every such trial there; raise max_epochs or "
                         f"leave it out")
    if space.scheduler.grace_period > space.scheduler.max_epochs:
        raise SpaceError(f"{where}: scheduler.grace_period ({space.scheduler.grace_period}) must be <= max_epochs "
                         f"({space.scheduler.max_epochs})")


def _check_seeds(space: Space, where: str) -> None:
    s = space.seeds
    if s is None:
        return
    if s.top_k > space.budget.num_samples:
        raise SpaceError(f"{where}: seeds.top_k: {s.top_k} searched trials cannot be rerun when budget.num_samples "
                         f"is {space.budget.num_samples}; lower top_k to at most {space.budget.num_samples}")
    if s.include_fixed and not space.fixed:
        raise SpaceError(f"{where}: seeds.include_fixed: true, but there are no fixed_trials; "
                         f"set include_fixed: false or add fixed trials")
    if space.defaults.seed in s.seeds:  # (a fixed trial with its own seed just skips that rerun)
        raise SpaceError(f"{where}: seeds.seeds: {space.defaults.seed} is the defaults' seed, which the searched "
                         f"trials already ran with: a rerun with it would repeat the original run; choose other "
                         f"seeds (e.g. {[v for v in range(1, len(s.seeds) + 2) if v != space.defaults.seed][:len(s.seeds)]})")


# ---------------------------------------------------------------------------------------------------------------
# Fixed trials and includes
# ---------------------------------------------------------------------------------------------------------------
def _resolve_fixed_trials(spec: SpaceFile, defaults: TrainConfig, data_fields: dict[str, Any], path: Path,
                          stack: tuple[Path, ...]) -> tuple[dict[str, TrainConfig], dict[str, str], tuple[str, ...]]:
    """name -> complete config. Included trials keep their meaning: each is resolved against the included
    file's defaults (so `4a` is the paper's 4a wherever it is included); this file's data section then applies."""
    where = _shown(path)
    fixed: dict[str, TrainConfig] = {}
    sources: dict[str, str] = {}
    includes: list[str] = []
    for name, overrides in spec.fixed_trials.items():
        if name == "include":
            for inc in _include_list(overrides, where):
                inc_path = (path.parent / inc).resolve()
                if inc_path in stack:
                    chain = " -> ".join(_shown(p) for p in (*stack, inc_path))
                    raise SpaceError(f"{where}: fixed_trials.include: include cycle: {chain}")
                if not inc_path.is_file():
                    raise SpaceError(f"{where}: fixed_trials.include: {inc!r} not found (looked for {inc_path}; "
                                     f"include paths are relative to {path.parent})")
                included = load_space(inc_path, stack)
                includes.append(str(inc))
                for n, cfg in included.fixed.items():
                    _add_trial(fixed, sources, n, cfg.model_copy(update=data_fields), included.fixed_sources[n], where)
            continue
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", name):
            raise SpaceError(f"{where}: fixed_trials.{name}: trial names use letters, digits, '.', '_' and '-'")
        if overrides is None:
            overrides = {}
        if not isinstance(overrides, dict):
            raise SpaceError(f"{where}: fixed_trials.{name}: expected a mapping of TrainConfig fields to override "
                             f"(e.g. {{lr: 5.0e-4, epochs: 30}}, or {{}} for the defaults), got {overrides!r}")
        section = f"fixed_trials.{name}"
        cfg = _train_config({**defaults.model_dump(), **_without_data_fields(overrides, where, section)},
                            where, section)
        _add_trial(fixed, sources, name, cfg, where, where)
    return fixed, sources, tuple(includes)


def _include_list(v: Any, where: str) -> list[str]:
    items = v if isinstance(v, list) else [v]
    if not items or not all(isinstance(i, str) and i for i in items):
        raise SpaceError(f"{where}: fixed_trials.include: expected a file name or a list of file names "
                         f"(relative to this file), got {v!r}")
    return items


def _add_trial(fixed: dict, sources: dict, name: str, cfg: TrainConfig, source: str, where: str) -> None:
    if name in fixed:
        raise SpaceError(f"{where}: fixed_trials.{name}: defined twice (in {sources[name]} and {source}); "
                         f"rename one of them")
    fixed[name], sources[name] = cfg, source
