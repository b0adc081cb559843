"""``python -m llmplex``: the same as the ``llmplex`` command."""

import sys

from .cli import main

sys.exit(main())
