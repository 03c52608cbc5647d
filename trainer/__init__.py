"""rfmml.trainer: RF-MML training (``rfmml-train``) — torch, torchvision, scikit-learn.

Modules, one concept each: config (TrainConfig), split (the protocol, split.json), data (decode once,
cache), synthetic (the embedded default set), sampler (episodes on the device), augment (flips and
rotations on the device), episode (prototypes, distances, loss), heads (Proto and SVM heads, reports),
loop (RET/ACF training, validation, checkpoints), evaluate (test heads -> eval.json), run (a run end
to end, resume, load_run), cli (flags -> TrainConfig), models and checkpoint (scaffold).
"""
