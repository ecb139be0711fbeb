"""Duplicate images in two stages: hashes propose candidate pairs, the pixels verify them.

:mod:`~medtl.data.duplicates.hashes` (computed during the one decode),
:mod:`~medtl.data.duplicates.candidates`, :mod:`~medtl.data.duplicates.verify`,
:mod:`~medtl.data.duplicates.links` (verified pairs, groups, the chaining guard) and
:mod:`~medtl.data.duplicates.grouping` (groups for splitting). Three relations are kept
apart: the same image, likely the same patient, and different patients (no link).
"""
