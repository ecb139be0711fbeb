"""Fitting a network: the LightningModule (:mod:`.task`), losses, callbacks, the frozen-
encoder feature cache, loggers, warm start, and :func:`.fit.train` that wires them."""
