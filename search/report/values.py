"""Plain values: missing ones, numpy scalars, and how numbers, durations and times read as text.

A leaf of the report package. The leaderboard's cells may hold None, NaN, pd.NA or NaT and numpy scalars; `load`,
`analysis`, `html` and the sections all ask the same questions here (is there a value? is it a finite number?),
and the sections' info objects hold `scalar(...)` values: plain Python numbers and strings, no numpy or pandas.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def present(v: Any) -> bool:
    """Not None, NaN, pd.NA or NaT."""
    return (
        v is not None and not (isinstance(v, float) and math.isnan(v)) and v is not pd.NA and v is not pd.NaT
    )


def finite(v: Any) -> bool:
    """Converts to a finite float. Looser than `search.vocab.finite`: numpy scalars, bools and numeric strings
    count, because a leaderboard cell may be any of them."""
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def scalar(v: Any) -> Any:
    """A cell as plain Python: numpy scalars unwrapped (int stays int, float stays float), missing -> None."""
    if not present(v):
        return None
    return v.item() if isinstance(v, np.generic) else v


def labels(s: pd.Series) -> pd.Series:
    """Values as category labels; missing ones (None / NaN) become "None", the config's spelling."""
    return s.map(lambda v: str(v) if present(v) else "None").astype(object)


def fmt(v: Any, digits: int = 4) -> str:
    """A cell as text: '—' when missing, thousands separators for whole numbers, `digits` decimals else."""
    if not present(v):
        return "—"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return "—"
        if float(v).is_integer() and abs(v) >= 1:
            return f"{int(v):,}"
        return f"{v:.{digits}f}" if abs(v) >= 10**-digits or v == 0 else f"{v:.2e}"
    return str(v)


def seconds(v: Any) -> str:
    """A duration in s, min or h, whichever reads best."""
    if not finite(v):
        return "—"
    v = float(v)
    return f"{v:.1f} s" if v < 120 else f"{v / 60:.1f} min" if v < 7200 else f"{v / 3600:.2f} h"


def when(v: Any) -> str:
    """ISO-8601 -> '2026-11-24 10:00 UTC'."""
    t = pd.to_datetime(v, errors="coerce", utc=True, format="ISO8601") if present(v) else pd.NaT
    return "—" if pd.isna(t) else t.strftime("%Y-%m-%d %H:%M UTC")
