"""``python -m bertfit`` runs the ``bertfit`` command."""

import sys

from bertfit.cli import main

sys.exit(main())
