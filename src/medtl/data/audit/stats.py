"""Summary statistics of an audit's decode: mask coverage per class and image sizes."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from medtl.data.audit.files import Decoded
from medtl.data.layouts import Sample


def coverage_stats(
    samples: Sequence[Sample], decoded: list[Decoded]
) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Per class: mask coverage statistics (mean, min, max, n) and the number of empty masks."""
    coverage: dict[str, list[float]] = defaultdict(list)
    for s, d in zip(samples, decoded, strict=True):
        if d.coverage is not None:
            coverage[s.label or "-"].append(d.coverage)
    cov_stats = {
        cls: {
            "mean": float(np.mean(v)),
            "min": float(np.min(v)),
            "max": float(np.max(v)),
            "n": len(v),
        }
        for cls, v in sorted(coverage.items())
    }
    empty = {cls: sum(1 for c in v if c == 0.0) for cls, v in sorted(coverage.items())}
    return cov_stats, empty


def image_size_stats(sizes: Counter) -> dict[str, Any]:
    """Width and height ranges, the most common size and the number of distinct sizes."""
    if not sizes:
        return {}
    ((common, count),) = sizes.most_common(1)
    return {
        "min_width": min(w for w, _ in sizes),
        "max_width": max(w for w, _ in sizes),
        "min_height": min(h for _, h in sizes),
        "max_height": max(h for _, h in sizes),
        "most_common": list(common),
        "most_common_count": count,
        "n_distinct": len(sizes),
    }
