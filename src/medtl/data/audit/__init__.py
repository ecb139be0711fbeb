"""``medtl audit``: what was found in a data folder, file and mask checks,
duplicates and leaks, the preview grid. Reports only; changes nothing."""
