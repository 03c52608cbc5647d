"""rfmml: RF-MML meta metric learning for imbalanced aerial scene classification.

Sub-packages: ``rfmml.trainer`` (torch), ``rfmml.export`` (torch + onnx), ``rfmml.runtime``
(numpy + onnxruntime + pillow only).

The folders trainer/, export/ and runtime/ live at the checkout's root; setuptools maps them into this
namespace (package-dir). The links rfmml_ns/{trainer,runtime,export} point at them so that tools that
read the package from disk (import-linter) see the whole tree.
"""

__version__ = "0.1.0"
