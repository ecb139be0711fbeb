"""``medtl plan``: a training recipe fitted to a data set's fingerprint and this machine's
measured speed within a time budget (:func:`medtl.planning.planner.make_plan`)."""
