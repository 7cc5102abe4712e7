"""`python -m oss_edge`: the same as the `oss-edge` command."""

import sys

from oss_edge.cli import main

sys.exit(main())
