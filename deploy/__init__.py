"""Deployment: ONNX export (optionally with preprocessing and decoding in the graph), ONNX Runtime
inference wrappers, and int8 quantisation (post-training static QDQ and quantisation-aware training).

Importing this package is cheap: onnx / onnxruntime are imported only by the functions that need them
(see ``requirements-deploy.txt``).
"""
