"""Export trained models (ONNX) and verify them against the PyTorch model."""
