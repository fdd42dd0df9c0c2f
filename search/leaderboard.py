"""`python -m search.leaderboard results/<name>`: rebuild leaderboard.parquet and history.parquet from an
experiment folder. The tables live in search.tables; this name is kept because the README and users call it."""
from __future__ import annotations

import sys

from search.tables import main

if __name__ == "__main__":
    sys.exit(main())
