"""The experiment report: one self-contained HTML page built from an experiment folder (docs/DESIGN.md).

    python -m search.report results/<name>      # writes results/<name>/report.html
    python -m search.report --markdown results/<name> [--into README.md]   # Table 4 as Markdown

Reads `experiment.json` (optional), `leaderboard.parquet`, `history.parquet` and `masks/<trial_id>.npz`; never
imports Ray or torch. The page works offline from file://. Every section renders from whatever exists and says
why it is empty; one that fails says so and the rest still render. While a search runs, its driver rebuilds the
page in a child process (live.py: the running trials and an in-progress banner) at most every `tracking.report_s`
seconds and after each pass; `write_report`, at the end, writes the final page without the banner;
`python -m search.report` rebuilds it at any time.

The package, in the order the data flows:
    values.py      missing values, plain scalars, number / duration / time formatting (a leaf)
    load.py        the experiment folder -> ReportData (ranked leaderboard, history, experiment.json, notes)
    paper_table4.py  the paper's Table 4 as data (the table4 section and the display order read it)
    analysis.py    numbers with no Plotly: fANOVA importances, the Pareto front, search-efficiency series
    images.py      mask thumbnails as data URIs (VOC palette PNGs, JPEG photos and overlays)
    html.py        escaping, tables, figures and the page around the sections; assets/ holds its CSS and JS
    sections/      one module per section: info(data) -> plain data, render(info) -> HTML; the SECTIONS registry
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from search.folder import command_folder
from search.report.html import empty, page, section
from search.report.load import ReportData, data_description, load_report_data
from search.report.sections import SECTIONS, Section, table4
from seg.atomic import atomic_write_text

__all__ = ["REPORT_NAME", "ReportData", "load_report_data", "render_report", "write_report", "main"]

REPORT_NAME = "report.html"
TABLE4_MARKERS = ("<!-- table4:start -->", "<!-- table4:end -->")  # around the generated table in README.md

log = logging.getLogger(__name__)


def write_report(exp_dir: Path) -> Path:
    """Builds `exp_dir/report.html` from the experiment folder, atomically; returns its path."""
    exp_dir = Path(exp_dir)
    return atomic_write_text(exp_dir / REPORT_NAME, render_report(load_report_data(exp_dir)))


def render_report(data: ReportData) -> str:
    """The whole page as one string: each section's info, rendered, in the registry's order."""
    bodies = [build_section(s, data) for s in SECTIONS]
    return page(data.name, data.path, [(s.id, s.title) for s in SECTIONS], bodies)


def build_section(s: Section, data: ReportData) -> str:
    try:
        body = s.module.render(s.module.info(data))
    except Exception as e:  # one broken section must not cost the whole report
        log.exception("report section %s failed", s.id)
        body = empty(f"This section could not be built: {type(e).__name__}: {e}")
    return section(s.id, s.title, body, s.intro)


def table4_markdown(exp_dir: Path) -> str:
    """The paper's Table 4 beside this experiment's fixed trials, as Markdown (see sections/table4.py)."""
    data = load_report_data(exp_dir)
    return table4.markdown(table4.info(data), data_description(data))


def replace_between_markers(text: str, block: str, source: str,
                            markers: tuple[str, str] = TABLE4_MARKERS) -> str:
    """`text` with everything between `markers` replaced by `block`; ValueError naming `source` if absent."""
    start, end = markers
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"{source}: expected one {start} line followed by one {end} line around the table")
    head, rest = text.split(start)
    return f"{head}{start}\n{block}{end}{rest.split(end, 1)[1]}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m search.report", description=__doc__.split("\n")[0])
    ap.add_argument("exp_dir", type=Path, help="the experiment folder, e.g. results/quick")
    ap.add_argument("--markdown", action="store_true", help="print the paper's Table 4 beside this experiment "
                    "as Markdown instead of writing report.html")
    ap.add_argument("--into", type=Path, metavar="FILE", help=f"with --markdown: replace the lines between "
                    f"{TABLE4_MARKERS[0]} and {TABLE4_MARKERS[1]} in FILE (e.g. README.md)")
    args = ap.parse_args(argv)
    exp_dir = command_folder(args.exp_dir)
    if exp_dir is None:
        return 2
    if args.markdown:
        block = table4_markdown(exp_dir)
        if args.into is None:
            print(block, end="")
            return 0
        try:
            atomic_write_text(args.into, replace_between_markers(args.into.read_text(), block, str(args.into)))
        except (OSError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"wrote Table 4 of {exp_dir} into {args.into}")
        return 0
    out = write_report(exp_dir)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0
