"""rfmml: RF-MML meta metric learning for imbalanced aerial scene classification.

Sub-packages: ``rfmml.trainer`` (torch), ``rfmml.export`` (torch + onnx), ``rfmml.runtime``
(numpy + onnxruntime + pillow only).
"""

__version__ = "0.1.0"
