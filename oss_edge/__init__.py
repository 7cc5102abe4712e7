"""The composition above the three parts: the `oss-edge` command and the benchmarks, the only code that imports all
of export, edge_runtime and lsp_server (docs/architecture.md)."""
