"""`python -m search.leaderboard RESULTS_DIR [--top N]`: rebuild leaderboard.parquet and history.parquet from an
experiment folder's records (search.tables) and print the top of the leaderboard."""
from __future__ import annotations

import argparse
import sys

import pandas as pd

from search.folder import command_folder
from search.tables import format_top, write_tables


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m search.leaderboard", description=__doc__.split("\n\n")[0])
    ap.add_argument("exp_dir", metavar="RESULTS_DIR", help="experiment folder, e.g. results/quick")
    ap.add_argument("--top", type=int, default=15, help="rows to print")
    args = ap.parse_args(argv)
    exp_dir = command_folder(args.exp_dir)
    if exp_dir is None:
        return 2
    board_path, hist_path = write_tables(exp_dir)
    board = pd.read_parquet(board_path)
    print(format_top(board, args.top))
    print(f"\n{len(board)} trials -> {board_path}, {hist_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
