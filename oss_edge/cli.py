"""The `oss-edge` command, composed once: each part registers its own verbs, the benchmarks theirs."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from edge_runtime import commands as runtime_commands
from edge_runtime.boundary import run_verbs
from export import cli as export_commands
from export.training import cli as training_commands
from lsp_server import cli as lsp_commands
from oss_edge.bench import cli as bench_commands


def main(argv: Sequence[str] | None = None) -> int:
    return run_verbs(
        "Offline code completion and explanation from gpt-oss, for any LSP editor.",
        export_commands.register,
        training_commands.register,
        runtime_commands.register,
        lsp_commands.register,
        bench_commands.register,
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
