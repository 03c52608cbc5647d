"""rfmml.export: a training run -> ``model.onnx`` + ``model.npz`` (the runtime's artifact pair).

Entry points: ``rfmml.export.pipeline.export_run`` (Python) and ``rfmml-export``
(``rfmml.export.cli``). Modules: ``onnx_export`` (torch -> ONNX bytes, contract checks), ``parity``
(torch vs onnxruntime report), ``quantize`` (int8 QDQ, fp16), ``heads_fit`` (heads through
``rfmml.trainer.heads``), ``runinput`` (run folder checks), ``writer`` (atomic pair writes).
"""
