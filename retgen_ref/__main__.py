"""``python -m retgen_ref`` is the ``retgen-ref`` command."""

import sys

from .cli import main

sys.exit(main())
