"""The resident gpt-oss daemon: loads a model folder once and serves completions over a local socket."""

import os

__version__ = "0.1.0"

# onnxruntime (1.29 on) and onnxruntime-genai (0.18) build Microsoft's 1DS telemetry into their Linux wheels and
# upload events over HTTPS unless this is set before they initialize; every part of oss-edge imports this package
# first, and the processes it starts inherit the setting. oss-edge sends nothing anywhere: it is not an option.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
