"""Probes of the machine a benchmark runs on, each in a fresh child process (what the steps will see): which modules
import, torch and its GPUs, nvidia-smi, the git commit; and the environment every step runs with. Standard
library only.
"""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from typing import Any

from bench.launch import REPO

PROBE_TIMEOUT_S = 120.0  # importing Ray in a fresh process; slow on a sandboxed file system


def _probe_code(modules: tuple[str, ...]) -> str:
    """A child script that imports each module by a plain import statement and prints what it found."""
    lines = ["import json, sys", "out = {}"]
    for name in modules:  # our own constant module names, never user input
        lines += ["try:", f"    import {name} as m",
                  f"    out[{name!r}] = {{'version': str(getattr(m, '__version__', '?')), "
                  f"'file': getattr(m, '__file__', None)}}",
                  "except Exception as e:", f"    out[{name!r}] = {{'error': f'{{type(e).__name__}}: {{e}}'}}"]
    return "\n".join([*lines, "print(json.dumps(out))"]) + "\n"


def import_probe(modules: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Import each module in a fresh child process (what the steps will see): {name: {version, file} or {error}}."""
    result = python_json(_probe_code(modules), [])
    if set(result) != set(modules):  # the probe itself failed: every module counts as missing, with its reason
        return {m: {"error": result.get("error", "not probed")} for m in modules}
    return result


def python_json(code: str, argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `code` in a child Python with this checkout on its path; its last stdout line is JSON."""
    proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, env=env or child_env(),
                          capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": f"probe exited {proc.returncode}: {proc.stderr.strip()[-500:]}"}
    return json.loads(lines[-1])


def child_env(hide_gpus: bool = False) -> dict[str, str]:
    """The environment of every step: this checkout first on PYTHONPATH (Ray's workers import seg and search
    from it too), unbuffered output (a killed step's log keeps its last lines), no GPU for the dry run."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    if hide_gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


TORCH_PROBE = """
import json, platform, torch
cuda = torch.cuda.is_available()
print(json.dumps({
    "python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
    "cuda_available": cuda, "gpu_count": torch.cuda.device_count() if cuda else 0,
    "gpu_names": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
    "cudnn": torch.backends.cudnn.version() if cuda else None}))
"""


def nvidia_smi() -> list[str] | None:
    """`name, driver, memory` per GPU as nvidia-smi reports them; None without nvidia-smi."""
    try:
        proc = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip().splitlines() if proc.returncode == 0 else None


def git_commit() -> str | None:
    """HEAD with `+dirty` for modified tracked files; None where the working tree was copied without .git."""
    try:
        run = lambda *a: subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True, timeout=10,
                                        check=True).stdout.strip()
        return run("rev-parse", "HEAD") + ("+dirty" if run("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def probe_environment(hide_gpus: bool) -> dict[str, Any]:
    """What the steps run on, as a child process sees it (the dry run hides the GPUs from its children)."""
    env = {"hostname": socket.gethostname(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
           "python_executable": sys.executable, **python_json(TORCH_PROBE, [], child_env(hide_gpus)),
           "nvidia_smi": nvidia_smi(), "git_commit": git_commit()}
    gpus = ", ".join(env.get("gpu_names") or []) or "no CUDA device visible"
    print(f"environment: {gpus}; torch {env.get('torch')}, python {env.get('python')}, git {env['git_commit']}",
          flush=True)
    return env
