"""The one inference path: preprocess → forward (torch or onnxruntime) → postprocess."""
