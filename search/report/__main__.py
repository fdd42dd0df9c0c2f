"""`python -m search.report RESULTS_DIR`: writes RESULTS_DIR/report.html (the command is search.report.main)."""
from __future__ import annotations

import sys

from search.report import main

if __name__ == "__main__":
    sys.exit(main())
