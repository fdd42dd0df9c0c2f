"""bench.gpu_check's summary: `summary.json` (rewritten after every step) and the printed report. Standard library
only (seg.atomic, imported when writing, needs nothing else).
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.launch import Clock


def new_summary(profile: Any, argv: list[str], out: Path, scratch: Path, clock: Clock) -> dict[str, Any]:
    # profile: bench.gpu_check.Profile (a dataclass); not imported, so the summary does not import its caller
    return {"check": "bench.gpu_check", "mode": profile.name, "command": ["python", "-m", "bench.gpu_check", *argv],
            "started_at": now_iso(), "finished_at": None, "ok": False, "time_budget_s": clock.total_s,
            "out": str(out), "scratch": str(scratch), "profile": asdict(profile), "steps": {}}


def now_iso() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def finish(summary: dict[str, Any], out: Path, clock: Clock) -> None:
    steps = summary["steps"].values()
    summary.update(finished_at=now_iso(), total_seconds=clock.elapsed(),
                   ok=bool(summary["steps"]) and "error" not in summary
                   and all(s["returncode"] == 0 and not s["timed_out"] for s in steps))
    write_summary(out, summary)


def write_summary(out: Path, summary: dict[str, Any]) -> Path:
    """summary.json, atomically (rewritten after every step, so a check killed from outside leaves what it did)."""
    from seg.atomic import atomic_write_text  # seg.atomic needs only the standard library

    return atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))


def print_report(summary: dict[str, Any], out: Path) -> None:
    env = summary.get("environment", {})
    print(f"\ngpu_check ({summary['mode']}): {', '.join(env.get('gpu_names') or []) or 'no GPU'}; torch "
          f"{env.get('torch')}, python {env.get('python')}, git {env.get('git_commit')}; "
          f"{summary['total_seconds']:.0f} s of {summary['time_budget_s']:.0f}")
    for name, s in summary["steps"].items():
        print(f"  {name:11s} exit {s['returncode']!s:5s} {s['seconds']:6.1f} s / {s['budget_s'] or 0:5.0f} s"
              f"{'  TIMED OUT' if s['timed_out'] else ''}  {headline(name, s.get('figures', {}))}")
    tp = summary["steps"].get("throughput", {}).get("figures", {}).get("images_per_s", {})
    for arch, by_batch in tp.items():
        for batch, loops in by_batch.items():
            print(f"    {arch:13s} b{batch:<3s} " + "  ".join(
                f"{loop.split(' (')[0]}: {'-' if v is None else f'{v:.0f}'}" for loop, v in loops.items()))
    print(f"summary: {out / 'summary.json'}{'' if summary['ok'] else '  (NOT all steps passed)'}")


def headline(step: str, f: dict[str, Any]) -> str:
    if "error" in f:
        return f["error"]
    if step == "pytest_gpu":
        return f"{f['passed']} passed, {f['failed']} failed, {f['errors']} errors, {f['skipped']} skipped"
    if step == "throughput":
        n = sum(len(b) for a in f["images_per_s"].values() for b in a.values())
        return f"{n} measurements{'' if f['complete'] else ' (incomplete)'}, {len(f['errors'])} failed"
    if step == "search":
        scored = [t for t in f["trials"] if t.get("best_val_miou") is not None]
        best = max(scored, key=lambda t: t["best_val_miou"], default=None)
        return f"{f['status_counts']}" + (f"; best val mIoU {best['best_val_miou']:.4f} ({best['name']})"
                                          if best else "")
    return ""
