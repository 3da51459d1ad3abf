"""``python -m kdiag``."""

import sys

from kdiag.cli.main import main

sys.exit(main())
