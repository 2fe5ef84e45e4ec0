"""`python -m impasto ...`: the CLI without a console script or a checkout."""

import sys

from impasto.cli.main import main

sys.exit(main())
