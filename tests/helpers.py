"""Helpers shared by the test files (imported as `helpers`; tests/ is on sys.path as for conftest and browser).

`require_or_skip`: the rule for required real components. A test that needs one (Chromium, the VOC2007 set, moto's
S3 server, mount namespaces) skips on a developer's machine that lacks it and FAILS when SEGTUNE_REQUIRE_ALL=1,
which `.ci/run` sets, so CI cannot be green without running it. GPU tests (tests/test_gpu.py) are the only tests CI
may skip.
"""
from __future__ import annotations

import os

import pytest

REQUIRE_ALL_ENV = "SEGTUNE_REQUIRE_ALL"


def require_or_skip(missing: str) -> None:
    """A required real component is missing: fail under CI (SEGTUNE_REQUIRE_ALL=1), skip elsewhere."""
    if os.environ.get(REQUIRE_ALL_ENV) == "1":
        pytest.fail(f"{missing} ({REQUIRE_ALL_ENV}=1: CI runs every test but the GPU ones)", pytrace=False)
    pytest.skip(missing)
