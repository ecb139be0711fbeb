"""The configuration keys ``medtl audit DATA key=value ...`` takes: the ``data.*`` keys that
change how the files are read, so the audit sees the data as training with the same keys
would. Other keys (training, model, image size, caching) change nothing the audit reports
and are an error naming the ones it takes.

Example::

    >>> audit_data_config(["data.mask_resize=nearest"]).mask_resize
    'nearest'
"""

from __future__ import annotations

from typing import Any

from medtl.utils.errors import ConfigError

#: what each key changes in the audit
AUDIT_KEYS: dict[str, str] = {
    "data.layout": "the layout (as --layout)",
    "data.mask_mode": "what the masks mean",
    "data.labels": "label values and names",
    "data.mask_colors": "colour-mask labels",
    "data.mask_resize": "masks of another size resized (nearest) instead of reported",
    "data.label_tag": "dicom layout: classes from a DICOM tag",
    "data.label_level": "dicom layout: classes from a folder level",
    "data.group_pattern": "patient groups from names (none: off)",
    "data.slice_axis": "volumes layout: the slicing axis",
    "data.empty_slice_fraction": "volumes layout: label-empty slices kept",
    "data.classes": "only these classes, as training keeps them",
}


def override_key(item: str) -> str:
    """The dotted key of a ``key=value`` override (``+key=value`` too)."""
    return item.split("=", 1)[0].lstrip("+").strip()


def audit_data_config(overrides: list[str], command: str = "medtl audit") -> Any:
    """The ``data`` section of a config built from ``overrides`` (``key=value``, the syntax
    of ``medtl train``), each key one of :data:`AUDIT_KEYS`; anything else is a
    ConfigError naming the key, the keys ``command`` takes and why."""
    from medtl.configuration.loading import load_config

    for item in overrides:
        key = override_key(item)
        if "=" not in item or key not in AUDIT_KEYS:
            raise ConfigError(
                f"{command}: {item!r} is not a key the audit uses; give key=value with "
                f"one of {', '.join(AUDIT_KEYS)}"
            )
    return load_config(None, list(overrides)).data
