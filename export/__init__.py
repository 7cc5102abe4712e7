"""Turn gpt-oss checkpoints into verified int4 ONNX model folders for onnxruntime-genai."""
