"""python -m search.report results/<name>: writes results/<name>/report.html."""

import sys

from search.report import main

sys.exit(main())
