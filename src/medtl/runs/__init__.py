"""The run folder: naming, logs and the weights bundle (:mod:`.folder`), facts
(``run.json``), checkpoints, the model summary and the model card."""
