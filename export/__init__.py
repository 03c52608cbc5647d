"""rfmml.export: a training run -> ``model.onnx`` + ``model.npz`` (the runtime's artifact pair).

Entry points: ``rfmml.export.pipeline.export_run`` / ``run_export`` (Python), ``rfmml-export``
(``rfmml.export.cli``) and ``rfmml-demo`` (``rfmml.export.demo``). Modules: ``options`` (the settings
and their limits, torch-free), ``run_inputs`` (what an export reads from a run folder, checked up
front), ``onnx_export`` (torch -> ONNX bytes, contract checks), ``fit_head`` (the runtime's Head,
fitted by the trainer), ``parity`` (embedding comparisons scored with the runtime's heads),
``quantize`` (int8 QDQ, fp16), ``writer`` (atomic pair writes, stale temporaries).
"""
