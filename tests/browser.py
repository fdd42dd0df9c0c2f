"""Headless Chromium for tests: load a local HTML file, dump the DOM after its scripts ran, take a screenshot.

Debian's `/usr/bin/chromium` (apt-get install chromium) or any chromium/chrome on PATH; `find_chromium()` is None
when there is none, and tests ask for it through conftest's `chromium` fixture (a skip locally, a failure in CI).
`assert_page_ok` is the one check that a page's scripts ran clean; every test that renders a report uses it.
Every run gets a fresh profile and no network features.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
]
SKIP_REASON = (
    "chromium is not installed (apt-get install -y chromium, or set SEGTUNE_CHROMIUM=/path/to/chrome)"
)


def find_chromium() -> str | None:
    env = os.environ.get("SEGTUNE_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


@dataclass
class Rendered:
    dom: str  # document.documentElement.outerHTML after the scripts ran
    log: str  # chromium's stderr, console messages included
    screenshot: Path | None


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="segtune-chromium-") as profile:
        cmd = [find_chromium() or "chromium", *FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def render(
    page: Path,
    screenshot: Path | None = None,
    window: tuple[int, int] = (1400, 3000),
    budget_ms: int = 5000,
    timeout: float = 180,
) -> Rendered:
    """Runs chromium twice on `page`: --dump-dom (with console logging) and, if asked, --screenshot."""
    url = Path(page).resolve().as_uri()
    size = f"--window-size={window[0]},{window[1]}"
    dump = _run(
        ["--enable-logging=stderr", "--v=0", f"--virtual-time-budget={budget_ms}", size, "--dump-dom", url],
        timeout,
    )
    if dump.returncode != 0 or "<html" not in dump.stdout:
        raise RuntimeError(f"chromium --dump-dom failed (rc {dump.returncode}):\n{dump.stderr[-3000:]}")
    shot = None
    if screenshot is not None:
        screenshot = Path(screenshot).resolve()
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        res = _run([f"--virtual-time-budget={budget_ms}", size, f"--screenshot={screenshot}", url], timeout)
        if res.returncode != 0 or not screenshot.is_file():
            raise RuntimeError(f"chromium --screenshot failed (rc {res.returncode}):\n{res.stderr[-3000:]}")
        shot = screenshot
    return Rendered(dump.stdout, dump.stderr, shot)


def page_errors(res: Rendered) -> list[str]:
    """What is wrong with a rendered report: the page's own error flag, its ready flag, uncaught exceptions."""
    import re

    tag = re.search(r"<html[^>]*>", res.dom)
    tag = tag.group(0) if tag else ""
    errors = []
    if 'data-js-errors=""' not in tag:
        errors.append(f"the page recorded JavaScript errors: {tag}")
    if 'data-report-ready="1"' not in tag:
        errors.append(f"the page's own script did not run to its end: {tag}")
    uncaught = [line for line in res.log.splitlines() if "Uncaught" in line]
    if uncaught:
        errors.append("uncaught exceptions in the console:\n" + "\n".join(uncaught[:20]))
    return errors


def assert_page_ok(res: Rendered) -> None:
    errors = page_errors(res)
    assert not errors, "\n".join(errors)


def main(argv: list[str] | None = None) -> int:
    """`python tests/browser.py REPORT.html`: render it; print its size, the page's error flag and how many
    leaderboard rows are in the DOM (bench.scale's 10,000-trial report is checked this way)."""
    import re
    import sys

    page = Path((argv or sys.argv[1:])[0])
    res = render(page, budget_ms=15000, timeout=600)
    tag = re.search(r"<html[^>]*>", res.dom).group(0)
    table = re.search(r'<table id="lb-table".*?</table>', res.dom, re.S)
    rows = table.group(0).count("<tr data-status") if table else 0
    ok = not page_errors(res)
    print(f"{page}: {page.stat().st_size / 1e6:.2f} MB; {tag}; {rows} leaderboard rows in the DOM; "
          f"{'no JavaScript errors' if ok else 'JAVASCRIPT ERRORS'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
