"""``data.window``: a linear VOI window for DICOM and volume intensities, given as
``"centre,width"`` or a named CT preset (:data:`WINDOW_PRESETS`).

    >>> parse_window("lung")
    (-600.0, 1500.0)
    >>> parse_window("40,400")
    (40.0, 400.0)
"""

from __future__ import annotations

from medtl.utils.errors import ConfigError

Window = tuple[float, float]
"""``(centre, width)`` of a linear VOI window in modality units."""

WINDOW_PRESETS: dict[str, Window] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (40.0, 400.0),
    "liver": (30.0, 150.0),
    "bone": (400.0, 1800.0),
}
"""Named CT windows (centre, width in HU), the usual radiology values."""


def parse_window(value: str | None) -> Window | None:
    """``"C,W"`` or a preset name -> ``(centre, width)``; None/"" -> None; else ConfigError."""
    if value is None or str(value).strip() in ("", "none", "auto"):
        return None
    text = str(value).strip().lower()
    if text in WINDOW_PRESETS:
        return WINDOW_PRESETS[text]
    try:
        centre, width = (float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(
            f"data.window={value!r}: give centre,width (e.g. 40,400) or one of "
            f"{', '.join(WINDOW_PRESETS)}"
        ) from None
    if width < 1:
        raise ConfigError(f"data.window={value!r}: the width must be >= 1")
    return centre, width
