"""Helpers shared by the test files (imported as `helpers`; tests/ is on sys.path as for conftest and browser):
the required-component rule, the test spaces and CLI arguments, and the file breakers.

`require_or_skip`: the rule for required real components. A test that needs one (Chromium, the VOC2007 set, moto's
S3 server, mount namespaces) skips on a developer's machine that lacks it and FAILS when SEGTUNE_REQUIRE_ALL=1,
which `.ci/run` sets, so CI cannot be green without running it. GPU tests (tests/test_gpu.py) are the only tests CI
may skip.
"""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REQUIRE_ALL_ENV = "SEGTUNE_REQUIRE_ALL"


def require_or_skip(missing: str) -> None:
    """A required real component is missing: fail under CI (SEGTUNE_REQUIRE_ALL=1), skip elsewhere."""
    if os.environ.get(REQUIRE_ALL_ENV) == "1":
        pytest.fail(f"{missing} ({REQUIRE_ALL_ENV}=1: CI runs every test but the GPU ones)", pytrace=False)
    pytest.skip(missing)


# ---- spaces and the search CLI ------------------------------------------------------------------------------------
def space_yaml(tmp_path: Path, synthetic_root: Path, body: str, name: str = "t", epochs: int = 3) -> Path:
    """A space over the session's synthetic VOC fixture at 32 px on the CPU, narrow fcn, 1 CPU per trial; `body`
    adds params, fixed trials, budget, scheduler ... (indented YAML is dedented)."""
    head = f"""
        name: {name}
        data: {{dataset: voc2007, root: {synthetic_root}, image_size: 32}}
        defaults:
          width: 0.25
          epochs: {epochs}
          batch_size: 8
          device: cpu
          num_masks: 2
          cache_dir: {tmp_path / 'cache'}
        resources: {{cpus: 1, gpus: 0}}
        """
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(head) + textwrap.dedent(body))
    return path


MINIMAL_SPACE = """
name: {name}
data: {{dataset: synthetic, root: data/synthetic, image_size: 32}}
defaults: {{epochs: 1, batch_size: 4, device: cpu}}
fixed_trials: {{base: {{}}}}
"""


def minimal_space(tmp_path: Path, name: str = "minimal") -> Path:
    """The smallest valid space file (one fixed trial on generated data), for tests that only need a Space."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(MINIMAL_SPACE.format(name=name)))
    return path


def search_args(space: Path | str, results: Path | str, *extra: str, num_cpus: int = 2) -> list[str]:
    """`python -m search.run`'s arguments as the tests pass them: no dashboard, a fixed CPU count."""
    return [str(space), "--results", str(results), "--no-dashboard", "--num-cpus", str(num_cpus), *extra]


# ---- file breakers: each damages one file of a dataset copy the way a user's data can be damaged ---------------
def truncate_half(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def widen_by_3(p: Path) -> None:
    """The mask (or image) 3 px wider than its partner."""
    m = Image.open(p)
    m.resize((m.width + 3, m.height), Image.NEAREST).save(p)


def put_mask_value(p: Path, value: int = 37) -> None:
    """One pixel of a class-index mask set to `value`; a palette PNG stays a palette PNG."""
    m = Image.open(p)
    a = np.array(m)
    a[0, 0] = value
    out = Image.fromarray(a)
    if m.mode == "P":
        out.putpalette(m.getpalette())
    out.save(p)
