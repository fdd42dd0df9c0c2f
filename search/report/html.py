"""Small HTML helpers for the report: escaping, tables, sections, Plotly figures, and the page around them.

The page works offline from file://: plotly.js is inlined once in <head>, each figure carries only its data, and
the styles and scripts are the package's `assets/` files (package data, read with importlib.resources), inlined.
Number formatting lives in `search.report.values` (the loader needs it too); it is re-exported here for the
sections' convenience.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from search.report.values import fmt, seconds, when

__all__ = ["e", "fmt", "seconds", "when", "empty", "section", "table", "status_badge", "figure", "page"]

ASSETS = "assets"  # folder of search/report holding report.css, report.js, error-hook.js
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
FIGURE_MARGIN = dict(l=60, r=30, t=50, b=50)  # px
COLORS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
    "#e6550d",
    "#31a354",
]  # one per trial, cycled
STATUS_COLORS = {"completed": "#2ca02c", "pruned": "#ff7f0e", "failed": "#d62728", "running": "#1f77b4"}


def e(v: Any) -> str:
    """Escaped for text and attribute values."""
    return escape(str(v), quote=True)


def empty(why: str) -> str:
    """The box a section shows instead of its content, saying why."""
    return f'<p class="empty">{e(why)}</p>'


def section(sid: str, title: str, body: str, intro: str = "") -> str:
    """`intro` and `body` are HTML already."""
    intro = f'<p class="intro">{intro}</p>' if intro else ""
    return f'<section id="{sid}"><h2>{e(title)}</h2>{intro}{body}</section>'


def table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    """Cells are HTML already (escape with `e` before)."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def status_badge(status: str) -> str:
    return f'<span class="st st-{e(status)}">{e(status)}</span>'


def figure(fig: go.Figure, div_id: str, height: int, margin: dict | None = None) -> str:
    """A Plotly figure as a <div> with its data; plotly.js itself is in the page's <head> once."""
    fig.update_layout(template="plotly_white", height=height, margin=margin or FIGURE_MARGIN)
    return pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config=PLOT_CONFIG,
        default_height=f"{height}px",
    )


@cache
def asset(name: str) -> str:
    """The text of assets/<name>, from the installed package."""
    return resources.files("search.report").joinpath(ASSETS).joinpath(name).read_text(encoding="utf-8")


def page(name: str, source: Path, nav: list[tuple[str, str]], sections: list[str]) -> str:
    """The whole document: <head> (error hook first, styles, plotly.js), a sticky nav, the sections, the script."""
    links = "".join(f'<a href="#{sid}">{e(title.split(" (")[0])}</a>' for sid, title in nav)
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>segtune — {e(name)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<script>{asset("error-hook.js")}</script><style>{asset("report.css")}</style>'
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f'<header class="top"><h1>segtune report: {e(name)}</h1><nav>{links}</nav></header>'
        f'<main>{"".join(sections)}<p class="hint">Generated {now} from {e(source.resolve())}.</p></main>'
        f'<script>{asset("report.js")}</script></body></html>'
    )
