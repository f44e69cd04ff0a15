"""``python -m gluon_bn`` is the ``gluon-bn`` command."""

import sys

from .cli import main

sys.exit(main())
