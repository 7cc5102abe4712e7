"""`oss-edge train`: a small model of gpt-oss's architecture, trained here on the standard library's code."""
