"""Duplicate images: the names the rest of medtl imports (see :mod:`medtl.data.duplicates`)."""

from medtl.data.duplicates.grouping import assign_groups, duplicate_groups
from medtl.data.duplicates.hashes import (
    grey_view,
    hashes_of,
    image_hashes,
    phash,
    window_hashes,
)
from medtl.data.duplicates.links import MAX_GROUP, RELATIONS, Link, find_links
from medtl.data.duplicates.verify import View, view_of

__all__ = [
    "MAX_GROUP",
    "RELATIONS",
    "Link",
    "View",
    "assign_groups",
    "duplicate_groups",
    "find_links",
    "grey_view",
    "hashes_of",
    "image_hashes",
    "phash",
    "view_of",
    "window_hashes",
]
