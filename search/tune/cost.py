"""What the driver spends per Tune run of a pass, split by who spends it: segtune's recorder (records, masks,
console lines), its table writer and Tune's progress table, the searcher (Optuna TPE) and the scheduler (ASHA),
and the rest of the driver process (Tune's own loop and Ray's threads). CPU seconds throughout: the parts by
`time.thread_time` around the calls Tune makes into them (nested calls counted once, in the inner part), the whole
by `time.process_time`. `fit_pass` appends one summary per run to experiment.json's `driver_cost`; bench.scale
reads them.
"""
from __future__ import annotations

import resource
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

SEGTUNE_PARTS = ("records", "tables", "progress")  # segtune's own; "searcher" and "scheduler" are reported apart


class CostMeter:
    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[Any]] = []  # [part, thread time it (re)started]
        self._cpu0, self._wall0 = time.process_time(), time.perf_counter()

    def wrap(self, obj: Any, part: str, methods: tuple[str, ...]) -> Any:
        """Time `obj`'s methods (those it has) as `part`; returns obj."""
        for name in methods:
            if callable(getattr(obj, name, None)):
                setattr(obj, name, self._timed(getattr(obj, name), part, name))
        return obj

    def _timed(self, fn: Callable[..., Any], part: str, name: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            now = time.thread_time()
            if self._stack:  # pause the outer part: this call is the inner part's
                self.cpu[self._stack[-1][0]] += now - self._stack[-1][1]
            self._stack.append([part, now])
            self.calls[f"{part}.{name}"] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                now = time.thread_time()
                done, started = self._stack.pop()
                self.cpu[done] += now - started
                if self._stack:
                    self._stack[-1][1] = now

        return timed

    def summary(self, **about: Any) -> dict[str, Any]:
        cpu = time.process_time() - self._cpu0
        parts = {k: round(v, 4) for k, v in sorted(self.cpu.items())}
        return {**about, "wall_s": round(time.perf_counter() - self._wall0, 3), "driver_cpu_s": round(cpu, 3),
                "parts_cpu_s": parts, "segtune_cpu_s": round(sum(self.cpu[p] for p in SEGTUNE_PARTS), 4),
                "tune_own_cpu_s": round(cpu - sum(self.cpu.values()), 3),
                "driver_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
