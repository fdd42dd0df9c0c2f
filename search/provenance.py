"""Provenance that travels with every result: git commit, package versions, hardware, timestamps.

The commit, versions and clock live in `seg.provenance` (an exported model records them too); hardware is here.
"""
from __future__ import annotations

import os
import platform
import socket
import subprocess

from seg.provenance import REPO, git_commit, now_iso, versions

__all__ = ["REPO", "cpu_model", "git_commit", "gpu_names", "hardware", "now_iso", "versions"]


def gpu_names() -> list[str]:
    """Names of this machine's GPUs from nvidia-smi (no CUDA context is created in the driver)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC", "Intel Xeon ..."): platform.processor() says only "x86_64" on Linux."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(cluster_resources: dict | None = None) -> dict:
    """This machine, plus the Ray cluster's CPU/GPU totals when given."""
    hw = {"host": socket.gethostname(), "platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
          "gpu_names": gpu_names()}
    if cluster_resources is not None:
        hw["cluster_cpus"] = cluster_resources.get("CPU", 0)
        hw["cluster_gpus"] = cluster_resources.get("GPU", 0)
        hw["cluster_nodes"] = sum(1 for k in cluster_resources if k.startswith("node:") and "internal" not in k)
    return hw
