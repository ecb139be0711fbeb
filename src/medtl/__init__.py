"""medtl: transfer learning for 2D medical image segmentation and classification.

Every verb of :mod:`medtl.api` (``medtl.api.__all__``) is also ``medtl.<verb>``, imported on
first use, so ``import medtl`` stays cheap (no torch) and changes no process-wide state::

    import medtl

    run = medtl.train(data="phantoms", image_size=64, epochs=1, weights="none")
    result = medtl.load(run).predict(image)  # numpy array or PIL image, nothing written
    print(medtl.format_summary(medtl.evaluate(run)))
    medtl.configure_cpu()  # opt in to the CLI's allocator tuning and thread count

The stages live in packages named for them: ``data`` -> ``models`` -> ``training`` ->
``inference`` -> ``evaluation`` -> ``comparison`` -> ``reporting`` (docs/architecture.md).
"""

from __future__ import annotations

from typing import Any

from medtl._version import __version__

#: the verbs of medtl.api, available as medtl.<name> (kept equal to api.__all__ by a test)
_API = (
    "train",
    "evaluate",
    "predict",
    "load",
    "explain",
    "app",
    "format_summary",
    "synth",
    "audit",
    "audit_preview",
    "slices",
    "models_table",
    "demo",
    "compare",
    "plan",
    "collect",
    "report",
    "export",
    "config",
    "load_config",
    "configure_cpu",
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
