"""The offline bundle: make the packages a bare torch machine lacks importable here and in every child process, from
`.offline-bundle/site.tar.xz` (made by `../shared/offline/bundle.sh`). Standard library only.
"""
from __future__ import annotations

import os
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

from bench.launch import REPO
from bench.probes import import_probe

DEFAULT_BUNDLE = REPO / ".offline-bundle" / "site.tar.xz"
BUNDLE_COMMAND = "../shared/offline/bundle.sh"  # run from the project root; writes .offline-bundle/site.tar.xz


class BundleError(RuntimeError):
    """The packages are missing and the bundle that would provide them cannot be used."""


def ensure_packages(modules: tuple[str, ...], bundle: Path, site: Path, report: tuple[str, ...] = ()
                    ) -> dict[str, Any]:
    """Make `modules` importable here and in every child process: nothing to do if they import already, else
    unpack `bundle` into `site` and put it first on sys.path and PYTHONPATH. Raises BundleError when a module is
    missing and the bundle is not there. The record has the versions of `modules` and `report` as children see
    them."""
    t0 = time.perf_counter()
    probed = tuple(dict.fromkeys((*modules, *report)))
    before = after = import_probe(probed)
    missing = {m: before[m]["error"] for m in modules if "error" in before[m]}
    info: dict[str, Any] = {"required": list(modules), "installed": False, "bundle": None, "site": None}
    if missing:
        if not bundle.is_file():
            raise BundleError(
                f"{bundle}: not found, and {', '.join(missing)} cannot be imported here "
                f"({next(iter(missing.values()))}). Make the bundle from the project root on a machine with pip: "
                f"`{BUNDLE_COMMAND}` (writes .offline-bundle/site.tar.xz), carry .offline-bundle with the working "
                f"tree, or pass --bundle PATH")
        print(f"packages: {', '.join(missing)} missing; unpacking {bundle} ({bundle.stat().st_size / 2**20:.0f} MiB)"
              f" into {site}", flush=True)
        install_bundle(bundle, site)
        info.update(installed=True, bundle=str(bundle), site=str(site), missing_before=missing)
        after = import_probe(probed)
    info["versions"] = {m: r.get("version", r.get("error")) for m, r in after.items()}
    still = [m for m in modules if "error" in after[m]]
    if still:  # carry on: each step fails on its own and says why in its log
        info["still_missing"] = {m: after[m]["error"] for m in still}
        print(f"warning: still not importable: {info['still_missing']}", file=sys.stderr)
    info["seconds"] = time.perf_counter() - t0
    if not missing:
        print(f"packages: {', '.join(modules)} import already; no bundle needed", flush=True)
    return info


def install_bundle(bundle: Path, site: Path) -> Path:
    """Unpack the tar.xz `bundle` into `site`, then prepend `site` to sys.path and to PYTHONPATH (inherited by
    every subprocess started afterwards). Returns `site`."""
    site.mkdir(parents=True, exist_ok=True)
    with tarfile.open(bundle, "r:xz") as tar:
        tar.extractall(site, filter="data")  # "data": no absolute paths, no links out of `site`
    activate_site(site)
    return site


def activate_site(site: Path) -> None:
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
