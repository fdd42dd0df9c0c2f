"""Shared fixtures: a tiny synthetic VOC-layout dataset made once per session, the real VOC2007 set, Chromium.

The real VOC2007 set and Chromium are required components: absent, their tests skip locally and fail under CI
(helpers.require_or_skip, SEGTUNE_REQUIRE_ALL=1 in .ci/run).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from helpers import require_or_skip

REPO = Path(__file__).resolve().parents[1]
REAL_VOC = Path(os.environ.get("SEGTUNE_VOC_ROOT", REPO.parent / "shared" / "data"))

# Tests never need the network: no ImageNet weights download is tried (seg.models.weights); subprocesses and Ray
# workers inherit it.
os.environ["SEGTUNE_OFFLINE"] = "1"

# pytest -n N (pytest-xdist, what the README's test command uses): N worker processes share the machine.
WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", ...; None in a plain pytest run
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKER:
    # Each worker gets its own Ray temp dir. ray.init() without an address joins the instance it finds through
    # <RAY_TMPDIR>/ray/ray_current_cluster, so with one shared /tmp/ray a test in one worker would join the local
    # Ray another worker's test started (and tear it down under it). A short path: Ray's sockets live under it.
    os.environ["RAY_TMPDIR"] = f"/tmp/rt-{WORKER}"
    os.makedirs(os.environ["RAY_TMPDIR"], exist_ok=True)

# Two cores: keep each test process from oversubscribing them (one thread per worker when two workers share them).
# The subprocesses a test starts (search.run, seg.predict, bench.*) inherit it through OMP_NUM_THREADS: OpenMP
# threads spin while they wait, so a 2-thread child beside the other worker's test ran up to 5x slower (the
# gpu_check dry run's throughput step: 8 s alone, 48 s under -n 2). Ray trials set their own from resources.cpus.
THREADS = max(1, min(2, os.cpu_count() or 1) // WORKERS)
torch.set_num_threads(THREADS)
os.environ["OMP_NUM_THREADS"] = str(THREADS)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small synthetic dataset in the VOCdevkit layout (24/12/12 images of 64 px), generated once."""
    from seg.data.synthetic import make_synthetic_voc

    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_voc(root, counts=(24, 12, 12), size=64, seed=0)
    return root


@pytest.fixture(scope="session")
def voc_root() -> Path:
    """The genuine VOC2007 segmentation set (skipped where absent, failed under CI)."""
    if not (REAL_VOC / "VOCdevkit" / "VOC2007" / "ImageSets" / "Segmentation" / "train.txt").is_file():
        require_or_skip(f"real VOC2007 not found at {REAL_VOC} (set SEGTUNE_VOC_ROOT)")
    return REAL_VOC


@pytest.fixture(scope="session")
def chromium() -> str:
    """Headless Chromium's path (skipped where absent, failed under CI)."""
    from browser import SKIP_REASON, find_chromium

    path = find_chromium()
    if path is None:
        require_or_skip(SKIP_REASON)
    return path


@pytest.fixture
def tiny_cfg(synthetic_root, tmp_path):
    """A TrainConfig that trains in seconds on the CPU over the synthetic fixture."""
    from seg.config import make_config

    return make_config(
        dict(dataset="voc", data_root=str(synthetic_root), image_size=32, batch_size=4, epochs=2, lr=1e-3, width=0.25,
             cache_dir=str(tmp_path / "cache"), device="cpu", num_masks=2)
    )
