"""``python -m traces``: the ``splitbench-traces`` command line."""

import sys

from traces.cli import main

sys.exit(main())
