"""``python -m governance.k8s [--check]``."""

import sys

from governance.k8s.cli import main

sys.exit(main())
