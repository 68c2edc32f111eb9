"""``python -m translate`` (and ``torchrun -m translate``) runs the CLI."""

import sys

from translate.cli import main

sys.exit(main())
