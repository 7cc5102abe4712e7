"""`python -m edge_runtime serve|status|stop`: the runtime's own verbs, which a client uses to start the daemon."""

import sys

from edge_runtime.boundary import run_verbs
from edge_runtime.commands import register

if __name__ == "__main__":
    sys.exit(run_verbs("The oss-edge runtime daemon and its controls.", register))
