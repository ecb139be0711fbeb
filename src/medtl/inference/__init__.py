"""Running a trained network: the optimised inference copy, TTA, masks at the original
size and the one mask writer (:mod:`.engine`), post-processing rules, the ``Predictor``,
Grad-CAM."""
