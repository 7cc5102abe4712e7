"""The benchmarks: each measures the real parts in one run and writes JSON, markdown and charts."""
