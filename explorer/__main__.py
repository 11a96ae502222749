"""``python -m explorer``: see :mod:`explorer.cli.parser`."""

import sys

from .cli.parser import main

sys.exit(main())
