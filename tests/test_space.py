"""Search-space files: the shipped spaces validate, and every kind of mistake gets a message naming file and key.

Fast: no Ray. Optuna is used for real (in memory) to check conditional sampling and seeding.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from search.space import SpaceError, changed_keys, load_space

REPO = Path(__file__).resolve().parents[1]
SPACES = sorted((REPO / "spaces").glob("*.yaml"))

MINIMAL = """
name: t
data: {dataset: synthetic, root: data/synthetic, image_size: 32}
defaults: {epochs: 3, batch_size: 4, device: cpu}
params:
  lr: {loguniform: [1.0e-4, 1.0e-2]}
fixed_trials:
  base: {}
budget: {num_samples: 2}
"""


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(SpaceError) as e:
        load_space(path)
    return str(e.value)


# ---------------------------------------------------------------------------------------------------------------
# The shipped spaces
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", SPACES, ids=[p.name for p in SPACES])
def test_every_shipped_space_validates(path):
    space = load_space(path)
    assert space.fixed or space.budget.num_samples
    assert len(space.hash) == 16


def test_shipped_spaces_are_the_three_expected():
    assert {p.name for p in SPACES} >= {"paper.yaml", "full.yaml", "quick.yaml"}


def test_paper_space_is_the_seven_experiments():
    space = load_space(REPO / "spaces" / "paper.yaml")
    assert list(space.fixed) == ["baseline", "4a", "4b", "4c", "5a", "5b", "5b-scratch", "5c"]
    assert space.budget.num_samples == 0 and not space.params
    f = {n: c for n, c in space.fixed.items()}
    for c in f.values():
        assert (c.dataset, c.year, c.image_size) == ("voc", "2007", 224)
        assert c.optimizer == "adam" and c.batch_size == 16
        assert c.amp == "off" and c.paper_metric_batch == 16  # fp32 as in the paper; the paper's batch of 16
    assert f["5b-scratch"].model_dump(exclude={"pretrained"}) == f["5b"].model_dump(exclude={"pretrained"})
    assert not f["5b-scratch"].pretrained
    b = f["baseline"]
    assert (b.arch, b.activation, b.class_weights, b.lr, b.scheduler, b.epochs, b.flip) == (
        "fcn", "relu", "none", 1e-3, "none", 20, False)
    assert (f["4a"].epochs, f["4a"].lr, f["4a"].scheduler, f["4a"].min_lr, f["4a"].class_weights) == (
        30, 5e-4, "cosine", 1e-4, "none")
    assert (f["4b"].class_weights, f["4b"].effective_bg_weight, f["4b"].epochs, f["4b"].lr, f["4b"].scheduler,
            f["4b"].flip) == ("inverse_frequency", 0.15, 50, 5e-4, "none", False)
    assert f["4c"].flip and f["4c"].model_dump(exclude={"flip"}) == f["4b"].model_dump(exclude={"flip"})
    assert (f["5a"].arch, f["5a"].activation, f["5a"].class_weights, f["5a"].effective_bg_weight, f["5a"].epochs,
            f["5a"].lr) == ("fcn_dilated", "tanh", "background", 0.1, 50, 5e-4)
    assert (f["5b"].arch, f["5b"].pretrained, f["5b"].class_weights, f["5b"].effective_bg_weight, f["5b"].epochs,
            f["5b"].lr) == ("resnet34_fcn", True, "background", 0.1, 50, 5e-4)
    assert (f["5c"].arch, f["5c"].class_weights, f["5c"].effective_bg_weight, f["5c"].epochs, f["5c"].lr) == (
        "unet", "background", 0.1, 50, 1e-4)
    assert all(c.scheduler == "none" for n, c in f.items() if n != "4a")


def test_full_space_includes_the_paper_and_searches_the_key_params():
    full, paper = load_space(REPO / "spaces" / "full.yaml"), load_space(REPO / "spaces" / "paper.yaml")
    assert list(full.fixed) == list(paper.fixed)
    assert all(full.fixed[n] == paper.fixed[n] for n in paper.fixed)  # included trials keep their meaning
    assert {"lr", "epochs", "bg_weight", "activation", "arch"} <= set(full.searched_names)
    assert full.scheduler is not None and full.metric == "val_miou_avg5"
    assert 0 < full.resources.gpus < 1  # several trials per GPU
    assert (full.defaults.dataset, full.defaults.image_size) == ("voc", 224)
    width = next(p for p in full.params if p.name == "width")
    assert width.when == (("arch", ("unet",)),)


def test_full_space_searches_the_result_quality_options():
    full = load_space(REPO / "spaces" / "full.yaml")
    params = {p.name: p for p in full.params}
    assert {"skips", "optimizer", "weight_decay", "warmup_epochs", "scheduler", "dice_weight", "label_smoothing",
            "scale_min", "scale_max", "color_jitter", "flip"} <= set(params)
    assert params["skips"].when == (("arch", ("fcn", "resnet34_fcn")),)
    assert "train_split" not in params  # ranked on val: training on trainval would score trials on their own images
    assert full.seeds is not None and full.seeds.top_k >= 1


def test_voc_cpu_space_is_the_calibrated_recipe_plus_a_search_and_seed_reruns():
    v = load_space(REPO / "spaces" / "voc_cpu.yaml")
    assert v.defaults.dataset == "voc" and v.defaults.data_root == "../shared/data" and v.defaults.image_size <= 96
    assert v.resources.gpus == 0 and v.resources.cpus * v.budget.max_concurrent <= 2
    recipe = v.fixed["recipe"]
    assert (recipe.arch, recipe.skips, recipe.pretrained, recipe.optimizer, recipe.lr, recipe.weight_decay,
            recipe.scheduler, recipe.class_weights, recipe.flip, recipe.scale_min, recipe.scale_max,
            recipe.color_jitter) == ("resnet34_fcn", True, False, "adamw", 2e-3, 1e-4, "cosine", "none", True, 0.8,
                                     1.6, 0.3)
    assert recipe.warmup_epochs == pytest.approx(0.03 * recipe.epochs)
    assert v.fixed["recipe-trainval"].model_dump(exclude={"train_split"}) == recipe.model_dump(exclude={"train_split"})
    assert v.fixed["recipe-trainval"].train_split == "trainval" and v.fixed["recipe-fcn"].arch == "fcn"
    assert v.budget.num_samples > 0 and v.scheduler is not None
    assert (v.seeds.top_k, v.seeds.seeds) == (2, [1, 2])


def test_quick_space_is_small_and_synthetic():
    q = load_space(REPO / "spaces" / "quick.yaml")
    assert q.defaults.dataset == "synthetic" and q.defaults.image_size <= 64
    assert len(q.fixed) >= 3 and q.budget.num_samples >= 4 and q.scheduler is not None
    assert q.resources.gpus == 0


# ---------------------------------------------------------------------------------------------------------------
# Mistakes and their messages
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("edit, expected", [
    # unknown keys, at every level, with a did-you-mean hint
    (("budget: {num_samples: 2}", "budget: {num_samples: 2}\nschedular: none"),
     ["schedular", "did you mean 'scheduler'"]),
    (("budget: {num_samples: 2}", "budget: {num_sample: 2}"), ["budget.num_sample", "did you mean 'num_samples'"]),
    (("lr: {loguniform: [1.0e-4, 1.0e-2]}", "lr: {log_uniform: [1.0e-4, 1.0e-2]}"),
     ["params.lr.log_uniform", "did you mean 'loguniform'"]),
    (("defaults: {epochs: 3,", "defaults: {epoch: 3,"), ["defaults.epoch", "did you mean 'epochs'"]),
    (("  base: {}", "  base: {lrr: 0.1}"), ["fixed_trials.base.lrr", "did you mean 'lr'"]),
    (("  lr: {loguniform", "  activaton: {choice: [relu]}\n  lr: {loguniform"),
     ["params.activaton", "unknown parameter", "did you mean 'activation'"]),
    # wrong types and values
    (("budget: {num_samples: 2}", "budget: {num_samples: many}"), ["budget.num_samples", "integer", "'many'"]),
    (("dataset: synthetic", "dataset: voc"), ["data.dataset", "'voc2007'", "'synthetic'"]),
    (("defaults: {epochs: 3,", "defaults: {epochs: -3,"), ["defaults.epochs", "greater than or equal to 1"]),
    (("  lr: {loguniform", "  activation: {choice: []}\n  lr: {loguniform"), ["params.activation", "empty"]),
    (("[1.0e-4, 1.0e-2]", "[0.1, 0.01]"), ["params.lr", "low (0.1) must be < high (0.01)"]),
    (("[1.0e-4, 1.0e-2]", "[0.0, 0.01]"), ["params.lr", "must be > 0"]),
    (("  lr: {loguniform", "  arch: {choice: [fcn, resnet]}\n  lr: {loguniform"),
     ["params.arch.choice[1]", "unknown arch 'resnet'", "resnet34_fcn"]),
    (("  lr: {loguniform", "  activation: {choice: [relu, swish]}\n  lr: {loguniform"),
     ["params.activation.choice[1]", "'relu'", "'tanh'", "swish"]),
    (("  lr: {loguniform", "  epochs: {uniform: [2, 5]}\n  lr: {loguniform"), ["params.epochs", "int: [low, high]"]),
    (("  lr: {loguniform", "  lr2: {uniform: [1, 2]}\n  lr: {loguniform"), ["params.lr2", "did you mean 'lr'"]),
    (("  lr: {loguniform", "  width: {uniform: [0.5, 1.0], when: {arch: unet}}\n  lr: {loguniform"),
     ["params.width.when.arch", "only refer to searched params"]),
    (("  lr: {loguniform", "  lr: {loguniform: [1.0e-4, 1.0e-2], uniform: [0.1, 0.2]}\n  xx: {loguniform"),
     ["params.lr", "exactly one of"]),
    (("defaults: {epochs: 3,", "defaults: {image_size: 64, epochs: 3,"), ["defaults.image_size", "data.image_size"]),
    (("  lr: {loguniform", "  lr: 0.1\n  xx: {loguniform"), ["params.lr", "expected a mapping"]),
    (("budget: {num_samples: 2}", "budget: {num_samples: 2}\nscheduler: {grace_period: 5, max_epochs: 2}"),
     ["scheduler.max_epochs", "below the 3 epochs"]),
    (("budget: {num_samples: 2}", "budget: {num_samples: 2}\nresources: {gpus: 1.5}"),
     ["resources.gpus", "whole number"]),
    # selecting the best epoch on (or training on) the split that reports the test score
    (("defaults: {epochs: 3,", "defaults: {val_split: test, epochs: 3,"),
     ["defaults", "val_split 'test' selects the best epoch on the test split", "use val_split: val"]),
    (("defaults: {epochs: 3,", "defaults: {test_split: val, epochs: 3,"),
     ["defaults", "val_split and test_split are both 'val'", "test_split: test"]),
    (("  base: {}", "  base: {train_split: trainval, test_split: val, val_split: train}"),
     ["fixed_trials.base", "test_split 'val' is inside trainval"]),
    # the seeds section (seed reruns of the best trials)
    (("budget: {num_samples: 2}", "budget: {num_samples: 2}\nseeds: {top_k: 1, seed: [1, 2]}"),
     ["seeds.seed", "did you mean 'seeds'"]),
    (("budget: {num_samples: 2}", "budget: {num_samples: 2}\nseeds: {top_k: 1}"), ["seeds.seeds", "required"]),
    (("budget: {num_samples: 2}", "budget: {num_samples: 2}\nseeds: {top_k: 1, seeds: []}"),
     ["seeds.seeds", "at least 1"]),
    (("budget: {num_samples: 2}", "budget: {num_samples: 2}\nseeds: {top_k: 1, seeds: [1, 1]}"),
     ["seeds.seeds", "repeat"]),
    (("budget: {num_samples: 2}", "budget: {num_samples: 2}\nseeds: {top_k: -1, seeds: [1]}"),
     ["seeds.top_k", "greater than or equal to 0"]),
    (("budget: {num_samples: 2}", "budget: {num_samples: 2}\nseeds: {seeds: [1]}"),
     ["seeds", "nothing would be rerun", "include_fixed"]),
    (("budget: {num_samples: 2}", "budget: {num_samples: 2}\nseeds: {top_k: 3, seeds: [1]}"),
     ["seeds.top_k", "num_samples is 2", "at most 2"]),
    (("budget: {num_samples: 2}", "budget: {num_samples: 2}\nseeds: {top_k: 1, seeds: [0, 1]}"),
     ["seeds.seeds", "0 is the defaults' seed", "choose other seeds"]),
])
def test_mistakes_name_the_file_and_the_key(tmp_path, edit, expected):
    old, new = edit
    assert old in MINIMAL, old
    path = write(tmp_path, MINIMAL.replace(old, new, 1))
    msg = error_of(path)
    assert "space.yaml" in msg, msg
    for part in expected:
        assert part in msg, f"{part!r} not in:\n{msg}"


def test_seeds_section_is_optional_and_part_of_the_hash(tmp_path):
    plain = load_space(write(tmp_path, MINIMAL, "a.yaml"))
    assert plain.seeds is None and "seeds" not in plain.to_json()  # older experiments keep their hash
    off = load_space(write(tmp_path, MINIMAL + "seeds: none\n", "b.yaml"))
    assert off.seeds is None and off.hash == plain.hash
    on = load_space(write(tmp_path, MINIMAL + "seeds: {top_k: 2, seeds: [1, 2], include_fixed: true}\n", "c.yaml"))
    assert (on.seeds.top_k, on.seeds.seeds, on.seeds.include_fixed) == (2, [1, 2], True)
    assert on.hash != plain.hash and on.to_json()["seeds"]["seeds"] == [1, 2]
    no_fixed = MINIMAL.replace("fixed_trials:\n  base: {}\n", "") + "seeds: {include_fixed: true, seeds: [1]}\n"
    assert "no fixed_trials" in error_of(write(tmp_path, no_fixed, "d.yaml"))


def test_not_yaml_and_not_a_mapping(tmp_path):
    assert "not valid YAML" in error_of(write(tmp_path, "name: [unclosed\n"))
    assert "expected a mapping" in error_of(write(tmp_path, "- just\n- a list\n"))
    assert "not found" in error_of(tmp_path / "missing.yaml")


def test_include_of_a_missing_file(tmp_path):
    path = write(tmp_path, MINIMAL.replace("  base: {}", "  include: nowhere.yaml\n  base: {}"))
    msg = error_of(path)
    assert "space.yaml" in msg and "fixed_trials.include" in msg and "nowhere.yaml" in msg and "not found" in msg


def test_include_cycle_is_detected(tmp_path):
    write(tmp_path, MINIMAL.replace("name: t", "name: a").replace("  base: {}", "  include: b.yaml\n  a1: {}"),
          "a.yaml")
    write(tmp_path, MINIMAL.replace("name: t", "name: b").replace("  base: {}", "  include: a.yaml\n  b1: {}"),
          "b.yaml")
    msg = error_of(tmp_path / "a.yaml")
    assert "include cycle" in msg and "a.yaml -> " in msg and "b.yaml" in msg


def test_include_resolves_against_the_included_file_and_applies_our_data(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path, """
        name: base
        data: {dataset: synthetic, root: elsewhere, image_size: 64}
        defaults: {lr: 0.005, epochs: 7, batch_size: 4}
        fixed_trials:
          slow: {lr: 0.0001}
        """, "sub/other.yaml")
    path = write(tmp_path, MINIMAL.replace("  base: {}", "  include: sub/other.yaml\n  base: {}"))
    space = load_space(path)
    assert list(space.fixed) == ["slow", "base"]
    slow = space.fixed["slow"]
    assert (slow.lr, slow.epochs) == (1e-4, 7)  # the included file's defaults
    assert (slow.data_root, slow.image_size) == ("data/synthetic", 32)  # this experiment's data


def test_duplicate_fixed_trial_names_across_includes(tmp_path):
    write(tmp_path, MINIMAL.replace("name: t", "name: o"), "other.yaml")
    path = write(tmp_path, MINIMAL.replace("  base: {}", "  include: other.yaml\n  base: {}"))
    assert "defined twice" in error_of(path)


def test_yaml_floats_without_a_dot_are_floats(tmp_path):
    space = load_space(write(tmp_path, MINIMAL.replace("[1.0e-4, 1.0e-2]", "[1e-4, 1e-2]")))
    assert space.params[0].values == (1e-4, 1e-2)


# ---------------------------------------------------------------------------------------------------------------
# Conditions, seeding points, the resolved space
# ---------------------------------------------------------------------------------------------------------------
def test_conditional_param_is_sampled_only_when_its_condition_holds():
    import optuna

    space = load_space(REPO / "spaces" / "quick.yaml")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    seen_arch = set()
    for _ in range(30):
        trial = study.ask()
        space.optuna_space(trial)
        seen_arch.add(trial.params["arch"])
        assert ("width" in trial.params) == (trial.params["arch"] == "unet"), trial.params
        study.tell(trial, 0.0)
    assert seen_arch == {"fcn", "unet"}


def test_seeding_point_keeps_only_searched_in_range_active_values():
    space = load_space(REPO / "spaces" / "full.yaml")
    cfg = space.fixed["5c"].model_dump(mode="json")  # unet, lr 1e-4, 50 epochs, background 0.1
    point = space.optuna_space.point(cfg)
    assert point["arch"] == "unet" and point["lr"] == 1e-4 and point["epochs"] == 50
    assert point["width"] == 1.0 and point["bg_weight"] == 0.1
    assert "skips" not in point  # condition arch in [fcn, resnet34_fcn] fails
    assert "pretrained" not in point and "dataset" not in point  # not searched
    assert "weight_decay" not in point  # 0.0 is outside loguniform [1e-6, 1e-3]
    import optuna

    trial = optuna.trial.create_trial(params=point, distributions=space.optuna_space.distributions(point), value=0.1)
    assert trial.params == point


def test_changed_keys_names_what_was_edited(tmp_path):
    a = load_space(write(tmp_path, MINIMAL, "a.yaml"))
    b = load_space(write(tmp_path, MINIMAL.replace("[1.0e-4, 1.0e-2]", "[1.0e-4, 1.0e-1]")
                         .replace("base: {}", "base: {lr: 0.002}"), "b.yaml"))
    assert a.hash != b.hash
    diff = "\n".join(changed_keys(a.to_json(), b.to_json()))
    assert "params.lr.values" in diff and "fixed_trials.base.lr" in diff
    # where trials run is not part of what they compute
    c = load_space(write(tmp_path, MINIMAL + "resources: {cpus: 2}\nstorage: elsewhere\n", "c.yaml"))
    assert c.hash == a.hash


# ---------------------------------------------------------------------------------------------------------------
# The CLI's handling of bad spaces and edited experiments (no Ray is started for these)
# ---------------------------------------------------------------------------------------------------------------
def test_cli_prints_space_errors_without_traceback_and_exits_2(tmp_path, capsys):
    from search.run import main

    path = write(tmp_path, MINIMAL.replace("budget:", "budgett:"))
    assert main([str(path), "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "budgett" in err and "did you mean 'budget'" in err
    assert "Traceback" not in err


def test_edited_space_is_refused_for_an_existing_experiment(tmp_path):
    from search.experiment import open_experiment
    from search.folder import locate

    results = str(tmp_path / "results")
    path = write(tmp_path, MINIMAL)
    exp = open_experiment(load_space(path), locate(load_space(path), results))
    stored = json.loads(exp.json_path.read_text())
    assert stored["space_hash"] == load_space(path).hash and stored["space"]["params"]["lr"]
    assert open_experiment(load_space(path), locate(load_space(path), results)).dir == exp.dir  # unchanged: resumes

    path.write_text(MINIMAL.replace("[1.0e-4, 1.0e-2]", "[1.0e-3, 1.0e-2]"))
    with pytest.raises(SpaceError) as e:
        open_experiment(load_space(path), locate(load_space(path), results))
    assert "params.lr.values" in str(e.value) and "--fresh" in str(e.value)

    fresh = open_experiment(load_space(path), locate(load_space(path), results, fresh=True))
    assert fresh.dir != exp.dir and fresh.dir.name.startswith("t-") and exp.json_path.is_file()


def test_a_moved_experiment_reads_its_checkpoints_where_it_is_now(tmp_path):
    """Records name checkpoints by where they were written; after the folder moves (twice), a resume maps every
    earlier storage onto the current one, and leaves other locations (an object store's) alone."""
    from search.experiment import open_experiment
    from search.folder import locate
    from search.records import resume_checkpoints

    path = write(tmp_path, MINIMAL)
    first = open_experiment(load_space(path), locate(load_space(path), str(tmp_path / "a")))
    assert first.moved == {}
    rec = {"checkpoints": [{"path": str(first.dir / "tune" / "search" / "run-0" / "t_1" / f"checkpoint_00000{i}")}
                           for i in (1, 2)] + [{"path": "s3://bucket/elsewhere/checkpoint_000009"}]}
    (tmp_path / "a").rename(tmp_path / "b")
    second = open_experiment(load_space(path), locate(load_space(path), str(tmp_path / "b")))
    assert second.moved == {str(first.dir): str(second.dir)}
    assert resume_checkpoints(rec, second.moved) == (
        "s3://bucket/elsewhere/checkpoint_000009", *(str(second.dir / "tune" / "search" / "run-0" / "t_1" /
                                                        f"checkpoint_00000{i}") for i in (2, 1)))
    assert resume_checkpoints(rec) == tuple(c["path"] for c in reversed(rec["checkpoints"]))  # none moved: as is
    (tmp_path / "b").rename(tmp_path / "c")
    third = open_experiment(load_space(path), locate(load_space(path), str(tmp_path / "c")))
    stored = json.loads(third.json_path.read_text())
    assert stored["storage"] == str(third.dir) and stored["tune_storage"] == str(third.dir / "tune")
    assert third.moved == {str(second.dir): str(third.dir), str(first.dir): str(third.dir)}
    assert set(stored["earlier_storage"]) == {str(first.dir), str(second.dir)}
    assert resume_checkpoints(rec, third.moved)[1].startswith(str(third.dir) + "/tune/")
