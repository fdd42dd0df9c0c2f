"""Provenance that travels with every result: git commit, package versions, timestamps (plain Python, no torch).

`seg.export` writes them into every exported model folder; `search.provenance` adds hardware for experiments.
"""
from __future__ import annotations

import datetime as dt
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("segtune", "torch", "torchvision", "ray", "optuna", "numpy", "pandas", "pyarrow", "pydantic", "pyyaml",
            "segmentation-models-pytorch", "timm", "safetensors")


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
    """Python and the installed versions of the packages a result depends on."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out
