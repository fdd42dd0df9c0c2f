"""The cluster-launcher recipes in cluster/ pass Ray's own validation and keep the promises docs/cluster.md makes.

Each cluster/*.yaml goes through the steps `ray up` runs on a config before it reaches any machine: Ray's
defaults merged in (`prepare_config`), then Ray's JSON schema (`ray/autoscaler/ray-schema.json`) and its other
checks (`validate_config`). What `ray up` does next for AWS (IAM profile, key pair, subnets, security groups)
calls the AWS API with boto3 and is not run here; nor is anything on a real machine. On top of Ray's checks:

- the head takes no trials, and some worker type can start, so trials have somewhere to run (or, on one machine
  with no workers, the head itself trains);
- every node type's setup installs segtune from the checkout every node runs it from (~/segtune);
- every `ray start` and the driver's shells use token auth with one token file, which is mounted on every node;
- every file_mounts source exists in the repository, or lies outside it on a line marked `# EDIT:`;
- min_workers <= max_workers everywhere (and on premises, no more workers than worker_ips);
- the dashboard stays on 127.0.0.1; the AWS head has boto3 for the autoscaler;
- every command is valid bash (`bash -n`: a YAML folding or quoting slip shows here, not on a fresh node);
- `ulimit -n` before `ray start` prints no error where the hard limit is lower; git's history is not copied;
- setup_commands are the same in every recipe.

The second half breaks a good config one way at a time and checks that the check meant for it says so. Offline,
a few seconds.
"""
from __future__ import annotations

import copy
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# the recipes the repository ships; a user's own edited copy in cluster/ (one machine, other hosts) is theirs
SHIPPED = ("aws.yaml", "local.yaml")
CONFIGS = [REPO / "cluster" / name for name in SHIPPED]
CHECKOUT = "~/segtune"  # where every node runs segtune from (docs/cluster.md): the same absolute path everywhere
LOCAL_HOSTS = ("127.0.0.1", "localhost")

PIP_EDITABLE = re.compile(r"\bpip3? install\b[^;&|]*?\s-e\s+(\S+)")
TOKEN_PATH = re.compile(r"RAY_AUTH_TOKEN_PATH=([^\s'\";]+)")
DASHBOARD_HOST = re.compile(r"--dashboard-host[= ](\S+)")


def load(path: Path) -> tuple[dict, str]:
    text = path.read_text()
    return yaml.safe_load(text), text


def ray_resolved(raw: dict) -> dict:
    """The config as `ray up` holds it before the provider's own bootstrap; raises whatever Ray raises."""
    from ray.autoscaler._private.util import check_legacy_fields, prepare_config, validate_config

    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    if config["provider"]["type"] != "local":
        check_legacy_fields(config)  # the first step of every cloud provider's bootstrap (AWS's included)
    return config


def config_problems(raw: dict, text: str) -> list[str]:
    """Everything wrong with one cluster config; empty when it is fine."""
    try:
        config = ray_resolved(raw)
    except Exception as e:  # jsonschema.ValidationError, ValueError, click's abort ...
        return [f"Ray rejects it: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"]
    return [*trial_placement_problems(config), *install_problems(config), *token_problems(config),
            *mount_problems(config, text), *worker_count_problems(config, raw), *dashboard_problems(config),
            *provider_problems(config), *shell_problems(config), *ulimit_problems(config)]


# ---------------------------------------------------------------------------------------------------------------
# The checks (each: resolved config -> list of problems)
# ---------------------------------------------------------------------------------------------------------------
def worker_types(config: dict) -> list[str]:
    """Node types Ray may start as workers. (On premises the one node type serves the head and the workers.)"""
    return [n for n, t in config["available_node_types"].items() if t.get("max_workers", 0) > 0]


def node_roles(config: dict) -> dict[str, tuple[list[str], list[str]]]:
    """role -> (setup commands, start commands) that Ray runs on such a node, node-type overrides included."""
    types = config["available_node_types"]
    roles = {"head": (config["head_setup_commands"], config["head_start_ray_commands"])}
    for name in worker_types(config):
        setup = types[name].get("worker_setup_commands", config["worker_setup_commands"])
        roles[f"worker {name}"] = (setup, config["worker_start_ray_commands"])
    return roles


def trial_placement_problems(config: dict) -> list[str]:
    head = config["available_node_types"][config["head_node_type"]]
    resources = head.get("resources") or {}
    start = " ".join(config["head_start_ray_commands"])
    problems = []
    if not worker_types(config):  # one machine: the head itself trains (max_workers 0), a documented choice
        trains = resources.get("CPU", 1) != 0 and re.search(r"--num-cpus[= ]0\b", start) is None
        return [] if trains else ["no node type can start as a worker (max_workers 0 everywhere) and the head "
                                  "advertises no CPUs: trials have nowhere to run"]
    for key, flag in (("CPU", "--num-cpus"), ("GPU", "--num-gpus")):
        # the node type's resources reach `ray start` as RAY_OVERRIDE_RESOURCES, which wins over the flag
        zero = resources[key] == 0 if key in resources else re.search(rf"{flag}[= ]0\b", start) is not None
        if not zero:
            problems.append(f"the head advertises {key}s, so trials can land on it: set resources: {{{key}: 0}} "
                            f"on the head node type or pass {flag}=0 to its `ray start`")
    return problems


def install_problems(config: dict) -> list[str]:
    problems = []
    for role, (setup, _) in node_roles(config).items():
        targets = [m.group(1).strip("'\"").rstrip("/") for cmd in setup for m in PIP_EDITABLE.finditer(cmd)]
        if CHECKOUT not in targets:
            problems.append(f"{role}: its setup commands never install segtune (`pip install -e {CHECKOUT}`); "
                            f"editable installs found: {targets or 'none'}")
    return problems


def same_path(path: str) -> str:
    return re.sub(r"^(\$HOME|\$\{HOME\})(?=/)", "~", path.strip("'\"")).rstrip("/")


def token_problems(config: dict) -> list[str]:
    problems, paths = [], set()
    for role, (setup, start) in node_roles(config).items():
        for cmd in start:
            if re.search(r"\bray start\b", cmd):
                found = TOKEN_PATH.findall(cmd)
                if "RAY_AUTH_MODE=token" not in cmd or not found:
                    problems.append(f"{role}: `ray start` without RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH: {cmd}")
                paths.update(same_path(p) for p in found)
        shells = " ".join(setup)  # the driver's shells (`ray exec`, `ray attach`) read ~/.bashrc
        exported = TOKEN_PATH.findall(" ".join(re.findall(r"export RAY_AUTH_TOKEN_PATH=\S+", shells)))
        if "export RAY_AUTH_MODE=token" not in shells or not exported:
            problems.append(f"{role}: setup does not export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH for later "
                            f"shells (the driver joins from one)")
        paths.update(same_path(p) for p in exported)
    if len(paths) > 1:
        problems.append(f"the token path differs between nodes or shells: {sorted(paths)}")
    mounted = {same_path(dst) for dst in config["file_mounts"]}
    problems += [f"token file {p} is not in file_mounts, so the nodes do not all get it" for p in paths - mounted]
    return problems


def mount_problems(config: dict, text: str) -> list[str]:
    problems = []
    for dst, src in config["file_mounts"].items():
        path = Path(os.path.expanduser(src))
        path = (path if path.is_absolute() else REPO / path).resolve()
        if path == REPO or REPO in path.parents:
            if not path.exists():
                problems.append(f"file_mounts {dst}: source {src} does not exist in the repository")
        elif not any(re.match(rf"\s*{re.escape(dst)}\s*:", line) and "# EDIT:" in line for line in text.splitlines()):
            problems.append(f"file_mounts {dst}: source {src} is outside the repository; mark its line "
                            f"`# EDIT:` so users know it is theirs to provide")
    checkout = config["file_mounts"].get(CHECKOUT)
    if checkout is None or (REPO / os.path.expanduser(checkout)).resolve() != REPO:
        problems.append(f"file_mounts {CHECKOUT}: must be the repository root ('.'), got {checkout!r}")
    if ".gitignore" not in config.get("rsync_filter", []):
        problems.append("rsync_filter lacks .gitignore: the checkout would ship .venv/, results/ and data/")
    if ".git" not in config.get("rsync_exclude", []):
        problems.append("rsync_exclude lacks .git: git's whole history would be copied to every node")
    return problems


def worker_count_problems(config: dict, raw: dict) -> list[str]:
    problems, most = [], config["max_workers"]
    for name, t in config["available_node_types"].items():
        if not 0 <= t["min_workers"] <= t["max_workers"]:
            problems.append(f"{name}: min_workers {t['min_workers']} > max_workers {t['max_workers']}")
        if t["max_workers"] > most:
            problems.append(f"{name}: max_workers {t['max_workers']} > the cluster's max_workers {most}")
    if config["provider"]["type"] == "local":
        ips = len(config["provider"]["worker_ips"])
        for key in ("min_workers", "max_workers"):  # Ray would quietly cap them at len(worker_ips)
            if raw.get(key, ips) > ips:
                problems.append(f"{key} {raw[key]} > the {ips} worker_ips")
    return problems


def dashboard_problems(config: dict) -> list[str]:
    hosts = DASHBOARD_HOST.findall(" ".join(config["head_start_ray_commands"]))
    return [f"the dashboard listens on {h}: anyone who reaches it can run code on the cluster; keep 127.0.0.1 "
            f"and use `ray dashboard`" for h in hosts if h.strip("'\"") not in LOCAL_HOSTS]


def provider_problems(config: dict) -> list[str]:
    if config["provider"]["type"] == "aws" and not any(
            re.search(r"\bpip3? install\b.*\bboto3\b", cmd) for cmd in config["head_setup_commands"]):
        return ["aws: the head's setup does not install boto3, which its autoscaler needs to start workers"]
    return []


COMMAND_LISTS = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
                 "head_start_ray_commands", "worker_start_ray_commands")


def ulimit_problems(config: dict) -> list[str]:
    """`ulimit -n` before `ray start` must not print an error on a machine whose hard limit is lower."""
    problems = []
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for cmd in config[key]:
            if "ulimit" not in cmd or "RAY_AUTH_MODE" not in cmd:
                continue
            head = cmd[:cmd.index("RAY_AUTH_MODE")]
            out = subprocess.run(["bash", "-c", f"ulimit -Sn 512; ulimit -Hn 1024; {head} echo $(ulimit -n)"],
                                 capture_output=True, text=True)
            if out.stderr.strip() or out.stdout.strip() != "1024":
                problems.append(f"{key}: `ulimit` where the hard limit is 1024 prints {out.stderr.strip()!r} and "
                                f"leaves {out.stdout.strip()} open files: {head.strip()}")
    return problems


def shell_problems(config: dict) -> list[str]:
    lists = {key: config.get(key, []) for key in COMMAND_LISTS}
    for name, t in config["available_node_types"].items():
        lists.update({f"{name}.{k}": t[k] for k in ("initialization_commands", "worker_setup_commands") if k in t})
    problems = []
    for key, cmds in lists.items():
        for cmd in cmds:
            check = subprocess.run(["bash", "-n", "-c", cmd], capture_output=True, text=True)
            if check.returncode:
                problems.append(f"{key}: not valid bash ({check.stderr.strip()}): {cmd}")
    return problems


# ---------------------------------------------------------------------------------------------------------------
# The recipes
# ---------------------------------------------------------------------------------------------------------------
def test_there_are_recipes():
    assert all(p.is_file() for p in CONFIGS)


def test_a_one_machine_copy_whose_head_trains_is_valid():
    """`ray up` of an edited copy of local.yaml on one machine (tried for real): no workers, the head trains."""
    raw, text = load(REPO / "cluster" / "local.yaml")
    raw["provider"].update(head_ip="127.0.0.1", worker_ips=[])
    raw.update(min_workers=0, max_workers=0)
    _edit_cmds("head_start_ray_commands", " --num-cpus=0 --num-gpus=0", "")(raw)
    assert config_problems(raw, text) == []
    _edit_cmds("head_start_ray_commands", "--dashboard-host=127.0.0.1", "--dashboard-host=127.0.0.1 --num-cpus=0")(raw)
    assert any("nowhere to run" in p for p in config_problems(raw, text))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_cluster_config_is_valid(path):
    problems = config_problems(*load(path))
    assert not problems, f"{path.relative_to(REPO)}:\n  " + "\n  ".join(problems)


def test_setup_commands_are_the_same_everywhere():
    setups = {p.name: load(p)[0]["setup_commands"] for p in CONFIGS}
    first = next(iter(setups.values()))
    assert all(s == first for s in setups.values()), "setup_commands differ between recipes: " + ", ".join(setups)


# ---------------------------------------------------------------------------------------------------------------
# The checks can fail: one breakage at a time
# ---------------------------------------------------------------------------------------------------------------
def test_misspelled_top_level_key_in_the_file_is_rejected(tmp_path):
    text = (REPO / "cluster" / "aws.yaml").read_text()
    assert "\nsetup_commands:" in text
    broken = tmp_path / "aws.yaml"
    broken.write_text(text.replace("\nsetup_commands:", "\nsetup_comands:", 1))
    problems = config_problems(*load(broken))
    assert len(problems) == 1 and "Ray rejects it" in problems[0] and "setup_comands" in problems[0]


def _edit_cmds(key: str, old: str, new: str):
    def edit(c: dict) -> None:
        assert any(old in cmd for cmd in c[key]), f"{old!r} not in {key}"
        c[key] = [cmd.replace(old, new) for cmd in c[key]]
    return edit


def _drop_cmds(key: str, pattern: str):
    def drop(c: dict) -> None:
        kept = [cmd for cmd in c[key] if not re.search(pattern, cmd)]
        assert len(kept) < len(c[key]), f"{pattern!r} not in {key}"
        c[key] = kept
    return drop


SAFE_ULIMIT = '{ ulimit -n 65536 || ulimit -n "$(ulimit -Hn)"; } 2>/dev/null;'
BREAKAGES = {
    "misspelled node-type key": ("aws.yaml", lambda c: c["available_node_types"]["ray.worker.gpu"].update(
        min_worker=c["available_node_types"]["ray.worker.gpu"].pop("min_workers")), "Ray rejects it"),
    "fractional head resources": ("aws.yaml", lambda c: c["available_node_types"]["ray.head.cpu"].update(
        resources={"CPU": 0.5}), "Ray rejects it"),
    "head advertises CPUs": ("aws.yaml", lambda c: c["available_node_types"]["ray.head.cpu"]["resources"].update(
        CPU=8), "the head advertises CPUs"),
    "head resources left to detection": ("aws.yaml", lambda c: c["available_node_types"]["ray.head.cpu"].update(
        resources={}), "the head advertises CPUs"),
    "head resources beat --num-cpus=0": ("aws.yaml", lambda c: (
        c["available_node_types"]["ray.head.cpu"]["resources"].update(CPU=8),
        _edit_cmds("head_start_ray_commands", "ray start --head", "ray start --head --num-cpus=0")(c)),
        "the head advertises CPUs"),
    "on-prem head without --num-cpus=0": ("local.yaml", _edit_cmds("head_start_ray_commands", " --num-cpus=0", ""),
                                          "the head advertises CPUs"),
    "no worker type": ("aws.yaml", lambda c: c["available_node_types"]["ray.worker.gpu"].update(max_workers=0),
                       "nowhere to run"),
    "setup without segtune": ("aws.yaml", _drop_cmds("setup_commands", r"-e ~/segtune"), "never install segtune"),
    "worker type overrides its setup": ("aws.yaml", lambda c: c["available_node_types"]["ray.worker.gpu"].update(
        worker_setup_commands=["echo hi"]), "worker ray.worker.gpu: its setup commands never install segtune"),
    "token path differs on workers": ("aws.yaml", _edit_cmds("worker_start_ray_commands", "$HOME/.ray/auth_token",
                                                             "/tmp/token"), "token path differs"),
    "worker start without token auth": ("local.yaml", _edit_cmds("worker_start_ray_commands",
                                                                 "RAY_AUTH_MODE=token ", ""), "without RAY_AUTH_MODE"),
    "token not mounted": ("aws.yaml", lambda c: c["file_mounts"].pop("~/.ray/auth_token"), "not in file_mounts"),
    "driver shells without the token": ("local.yaml", _edit_cmds("setup_commands", "'export RAY_AUTH_MODE=token'",
                                                                 ""), "does not export RAY_AUTH_MODE"),
    "mount source missing": ("aws.yaml", lambda c: c["file_mounts"].update({"~/extra": "cluster/missing.txt"}),
                             "does not exist in the repository"),
    "user path not marked": ("local.yaml", lambda c: c["file_mounts"].update({"~/elsewhere": "/opt/elsewhere"}),
                             "mark its line `# EDIT:`"),
    "checkout not the repo root": ("aws.yaml", lambda c: c["file_mounts"].update({CHECKOUT: "cluster"}),
                                   "must be the repository root"),
    ".git shipped": ("local.yaml", lambda c: c.update(rsync_exclude=[".segtune-cache"]), "rsync_exclude lacks .git"),
    "ulimit that fails loudly": ("local.yaml", _edit_cmds("worker_start_ray_commands", SAFE_ULIMIT, "ulimit -n 65536;"),
                                 "where the hard limit is 1024"),
    "venv shipped": ("aws.yaml", lambda c: c.update(rsync_filter=[]), "rsync_filter lacks .gitignore"),
    "min_workers > max_workers": ("aws.yaml", lambda c: c["available_node_types"]["ray.worker.gpu"].update(
        min_workers=3, max_workers=2), "min_workers 3 > max_workers 2"),
    "type max above the cluster's": ("aws.yaml", lambda c: c["available_node_types"]["ray.worker.gpu"].update(
        max_workers=9), "> the cluster's max_workers"),
    "more workers than worker_ips": ("local.yaml", lambda c: c.update(min_workers=5, max_workers=5),
                                     "> the 2 worker_ips"),
    "dashboard on 0.0.0.0": ("aws.yaml", _edit_cmds("head_start_ray_commands", "--dashboard-host=127.0.0.1",
                                                    "--dashboard-host=0.0.0.0"), "the dashboard listens on 0.0.0.0"),
    "no boto3 on the AWS head": ("aws.yaml", lambda c: c.update(head_setup_commands=[]), "install boto3"),
    "unbalanced quote in a command": ("local.yaml", _edit_cmds("setup_commands", "'export RAY_AUTH_MODE=token'",
                                                               "'export RAY_AUTH_MODE=token"), "not valid bash"),
}


@pytest.mark.parametrize("name", BREAKAGES)
def test_each_check_catches_its_breakage(name):
    file, breakage, expected = BREAKAGES[name]
    raw, text = load(REPO / "cluster" / file)
    assert config_problems(raw, text) == []
    breakage(raw)
    problems = config_problems(raw, text)
    assert any(expected in p for p in problems), problems
