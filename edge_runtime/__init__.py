"""The resident gpt-oss daemon: loads a model folder once and serves completions over a local socket."""

__version__ = "0.1.0"
