"""Provenance that travels with every result: git commit, package versions, hardware, timestamps."""
from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("segtune", "torch", "torchvision", "ray", "optuna", "numpy", "pandas", "pyarrow", "pydantic", "pyyaml")


def now_iso() -> str:
    """Local time with offset, seconds precision (ISO-8601)."""
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """HEAD of the checkout segtune runs from, with `+dirty` when tracked files are modified; None outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def gpu_names() -> list[str]:
    """Names of this machine's GPUs from nvidia-smi (no CUDA context is created in the driver)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def hardware(cluster_resources: dict | None = None) -> dict:
    """This machine, plus the Ray cluster's CPU/GPU totals when given."""
    hw = {"host": socket.gethostname(), "platform": platform.platform(), "cpu": platform.processor() or
          platform.machine(), "cpu_count": os.cpu_count(), "gpu_names": gpu_names()}
    if cluster_resources is not None:
        hw["cluster_cpus"] = cluster_resources.get("CPU", 0)
        hw["cluster_gpus"] = cluster_resources.get("GPU", 0)
        hw["cluster_nodes"] = sum(1 for k in cluster_resources if k.startswith("node:") and "internal" not in k)
    return hw
