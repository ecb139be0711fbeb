"""Scoring a trained run: per-image scores at each image's own size, summaries with
confidence intervals, calibration, thresholds and post-processing choices, figures."""
