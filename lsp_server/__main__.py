"""`python -m lsp_server lsp|demo`: the language server's own verbs, the same as `oss-edge lsp` and `oss-edge demo`."""

import sys

from edge_runtime.boundary import run_verbs
from lsp_server.cli import register

if __name__ == "__main__":
    sys.exit(run_verbs("The oss-edge language server.", register))
