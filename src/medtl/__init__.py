"""medtl: transfer learning for 2D medical image segmentation and classification.

The Python API lives in :mod:`medtl.api`; the verbs whose names are not also modules of
this package are here too, imported on first use (``import medtl`` stays cheap and
changes no process-wide state)::

    import medtl

    run = medtl.train(data="phantoms", image_size=64, epochs=1, weights="none")
    result = medtl.load(run).predict(image)  # numpy array or PIL image, nothing written
    medtl.configure_cpu()  # opt in to the CLI's allocator tuning and thread count

``evaluate``, ``predict``, ``compare``, ``report``, ``export``, ``demo`` and ``config``
are modules of medtl as well, so those verbs are called as ``medtl.api.evaluate(...)``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

#: verbs of medtl.api available as medtl.<name> (names that are not medtl's modules)
_API = (
    "train",
    "load",
    "configure_cpu",
    "synth",
    "audit",
    "slices",
    "models_table",
    "collect",
    "format_summary",
    "load_config",
)

__all__ = ["__version__", "api", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from medtl import api

        return getattr(api, name)
    if name == "api":
        import importlib

        return importlib.import_module("medtl.api")
    raise AttributeError(f"module 'medtl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
