"""Enfoads: GPU-memory-aware generative model services and an embedded web app.

Importing this package is cheap on purpose: no torch, diffusers, ctranslate2,
onnxruntime or cv2 is imported until a model is first used.
"""
from enfoads._version import __version__

__all__ = ["__version__"]
