"""The space file's schema: pydantic models for every section; extra keys are rejected at every level."""
from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")
# What ASHA and Optuna may optimise (mode: max), epoch by epoch; a finished trial is judged by
# search.vocab.objective_key(metric). val_miou_avg5: the mean val mIoU of the last 5 epochs (seg.epoch_metrics).
METRICS = ("val_miou_avg5", "val_miou", "best_val_miou", "val_pixel_acc")
# TrainConfig fields that the `data:` section owns; `defaults`, `params` and fixed trials may not set them.
DATA_FIELDS = ("dataset", "year", "data_root", "download", "image_size", "resize")
SEARCHABLE_DATA_FIELDS = ("image_size",)  # the one data field a search may vary
RESERVED_TRIAL_NAMES = ("include",)


# ---------------------------------------------------------------------------------------------------------------
# The schema (extra keys are rejected at every level)
# ---------------------------------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


DATASET_FIELDS = {  # data.dataset -> TrainConfig's (dataset, year); the registry is seg.data.registry
    "voc2007": ("voc", "2007"), "voc2012": ("voc", "2012"), "folder": ("folder", "2007"),
    "synthetic": ("synthetic", "2007"),
}


class DataSpec(_Strict):
    # voc2007 / voc2012: VOCdevkit/ under root; folder: your own images/ + masks/ + classes.yaml in root
    # (README, "Your own data"); synthetic: generated into root (defaults.synthetic_classes: N for N classes)
    dataset: Literal["voc2007", "voc2012", "folder", "synthetic"] = "voc2007"
    root: str = "data"  # folder that holds VOCdevkit/ or images/ + masks/ (synthetic: generated there); cwd-relative
    image_size: int = Field(224, ge=16, le=1024)  # px, square
    download: bool = False  # torchvision's downloader when VOC is missing (needs network)
    resize: Literal["auto", "squash", "pad"] = "auto"  # seg.data.resize; auto: squash for VOC, pad for folders

    def train_fields(self) -> dict[str, Any]:
        """The TrainConfig fields this section sets."""
        dataset, year = DATASET_FIELDS[self.dataset]
        return {"dataset": dataset, "year": year, "data_root": self.root, "image_size": self.image_size,
                "download": self.download, "resize": self.resize}


class ParamSpec(_Strict):
    """One searched key: exactly one distribution, optionally only `when` other params take given values."""

    loguniform: tuple[float, float] | None = None  # [low, high], low > 0
    uniform: tuple[float, float] | None = None  # [low, high]
    int_: tuple[int, int] | None = Field(None, alias="int")  # [low, high], both inclusive
    choice: list[Any] | None = None  # non-empty list of values
    when: dict[str, Any] | None = None  # {param: value or [values]}: searched only then

    @model_validator(mode="after")
    def _one_distribution(self) -> "ParamSpec":
        given = [d for d in DISTRIBUTIONS if self.bounds(d) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(DISTRIBUTIONS)} (got {given or 'none'}), "
                             f"e.g. {{loguniform: [1.0e-4, 1.0e-2]}} or {{choice: [relu, tanh]}}")
        if self.choice is not None:
            if not self.choice:
                raise ValueError("choice: the list of values is empty; list at least one value")
            if len({json.dumps(v, sort_keys=True) for v in self.choice}) != len(self.choice):
                raise ValueError(f"choice: values repeat ({self.choice}); list each value once")
        else:
            low, high = self.bounds(self.kind)
            if not low < high:
                raise ValueError(f"{self.kind}: low ({low}) must be < high ({high})")
            if self.kind == "loguniform" and low <= 0:
                raise ValueError(f"loguniform: low ({low}) must be > 0 (a log scale); use uniform for ranges from 0")
        return self

    def bounds(self, kind: str):
        return {"loguniform": self.loguniform, "uniform": self.uniform, "int": self.int_, "choice": self.choice}[kind]

    @property
    def kind(self) -> str:
        return next(d for d in DISTRIBUTIONS if self.bounds(d) is not None)

    @property
    def values(self) -> list[Any]:
        """The values that must be valid: the choices, or both ends of a range."""
        return list(self.bounds(self.kind))


class BudgetSpec(_Strict):
    num_samples: int = Field(0, ge=0)  # searched trials (fixed trials come on top)
    max_concurrent: int = Field(1, ge=1)  # trials running at once (per pass)
    max_failures: int = Field(1, ge=0)  # retries of a crashed trial, each from its last epoch checkpoint


class SchedulerSpec(_Strict):
    type: Literal["asha"] = "asha"
    grace_period: int = Field(1, ge=1)  # epochs before a searched trial can be stopped
    reduction_factor: float = Field(2.0, gt=1)  # keep the top 1/reduction_factor at each rung
    max_epochs: int | None = Field(None, ge=1)  # ASHA's max_t; default: the most epochs a searched trial can get


class SamplerSpec(_Strict):
    """How searched configurations are proposed: Optuna's TPE (`kind: tpe`, the default) or plain random sampling
    (`kind: random`: the baseline every search should beat, and how the learning-curve table is sampled)."""

    kind: Literal["tpe", "random"] = "tpe"
    n_startup_trials: int = Field(10, ge=0)  # TPE: random trials (fixed trials count) before TPE models the space
    # TPE: treat trials still running as if they had scored badly, so parallel workers do not all propose the
    # same region (Optuna's constant_liar). None = on when budget.max_concurrent > 1.
    constant_liar: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _type_is_kind(cls, v: Any) -> Any:  # `type: tpe`, the key before random sampling existed
        if isinstance(v, dict) and "type" in v and "kind" not in v:
            v = {("kind" if k == "type" else k): val for k, val in v.items()}
        return v


class ResourcesSpec(_Strict):
    cpus: float = Field(1.0, gt=0)  # per trial
    gpus: float = Field(0.0, ge=0)  # per trial; fractions pack several trials on one GPU

    @field_validator("gpus")
    @classmethod
    def _whole_above_one(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError(f"gpus above 1 must be a whole number (got {v}); use e.g. 0.25, 0.5, 1 or 2")
        return v


class SeedsSpec(_Strict):
    """Seed-robust ranking: after the search, rerun the best configurations with other seeds (pass 3)."""

    top_k: int = Field(0, ge=0)  # the best completed searched trials (by best_val_miou) to rerun
    seeds: list[int] = Field(min_length=1)  # TrainConfig.seed of each rerun; the original run keeps its own
    include_fixed: bool = False  # also rerun every completed fixed trial

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds repeat ({v}); list each seed once")
        return v

    @model_validator(mode="after")
    def _something(self) -> "SeedsSpec":
        if self.top_k == 0 and not self.include_fixed:
            raise ValueError("nothing would be rerun: set top_k >= 1 and/or include_fixed: true "
                             "(or leave the seeds section out)")
        return self


class MLflowSpec(_Strict):
    # an MLflow tracking URI (http://host:5000, sqlite:///...), or a local database file (SQLite; relative to the
    # cwd): MLflow 3 no longer accepts its old folder store
    tracking_uri: str = "mlflow.db"
    experiment_name: str | None = None  # default: the space's name


class TrackingSpec(_Strict):
    """Where else to send each trial's params and per-epoch metrics (TensorBoard event files are always written
    by Tune under the trials' folders)."""

    mlflow: MLflowSpec | None = None
    progress_s: float = Field(30.0, gt=0)  # seconds between the console's progress tables while trials train
    report_s: float = Field(300.0, gt=0)  # seconds: report.html is rebuilt at most this often while the search runs


class SpaceFile(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # the experiment folder results/<name>/
    description: str | None = None
    data: DataSpec = DataSpec()
    defaults: dict[str, Any] = {}  # TrainConfig fields; the rest keep TrainConfig's defaults
    params: dict[str, ParamSpec] = {}
    fixed_trials: dict[str, Any] = {}  # name -> {TrainConfig field: value}; `include: file.yaml` (or a list)
    # maximised; val_miou_avg5 (the mean of 5 epochs) since one epoch's val mIoU on 213 images is too noisy to
    # rank configurations by (README "Search efficiency": bench.efficiency measured it)
    metric: Literal[METRICS] = "val_miou_avg5"  # one of METRICS (Literal of a tuple: each name)
    budget: BudgetSpec = BudgetSpec()
    scheduler: SchedulerSpec | None = SchedulerSpec()  # `scheduler: none`: searched trials run all epochs
    sampler: SamplerSpec = SamplerSpec()
    resources: ResourcesSpec = ResourcesSpec()
    storage: str = "results"  # local folder, or a URI (s3://bucket/path, gs://...) for a cluster
    seed: int = 0  # of the Optuna sampler; each trial's own seed is the TrainConfig field `seed`
    seeds: SeedsSpec | None = None  # seed reruns of the best trials (pass 3); `seeds: none` or absent: off
    tracking: TrackingSpec = TrackingSpec()  # MLflow, the progress table; not part of what a trial computes

    @field_validator("scheduler", "seeds", mode="before")
    @classmethod
    def _none_word(cls, v: Any) -> Any:
        return None if isinstance(v, str) and v.strip().lower() in ("none", "off", "null") else v

    @field_validator("fixed_trials", mode="before")
    @classmethod
    def _names_as_strings(cls, v: Any) -> Any:  # `5: {...}` in YAML is an int key
        return {str(k): val for k, val in v.items()} if isinstance(v, dict) else v
