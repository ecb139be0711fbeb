"""The names the configuration accepts for choices implemented in higher stages.

``train.loss`` (:mod:`medtl.training.losses`), ``train.cls_loss``, ``train.optimizer`` and
``train.scheduler`` (:mod:`medtl.training.task`), ``data.cache`` (:mod:`medtl.data.cache.modes`)
and ``model.strategy`` (:mod:`medtl.models.strategy`) are registries in stages above the
configuration, which it may not import. Their names are kept here, in a module that imports
nothing, so that validation (:func:`medtl.configuration.loading.validate`) needs no torch;
each registry is keyed by these tuples and checked against them with
:func:`check_registry` when it is imported, so a name added to one side only fails at once.

``data.layout`` (:data:`medtl.data.layouts.LAYOUTS`), ``model.arch``
(:data:`medtl.models.build.ARCHS`) and ``model.encoder``
(:data:`medtl.models.registry.ENCODERS`) have no copy here: their registries check them
where they are used, with a "did you mean" suggestion.
"""

from __future__ import annotations

from collections.abc import Iterable

#: ``train.loss``: the binary losses and their multi-label names (``ce`` = ``bce`` and
#: ``dice_ce`` = ``dice_bce`` on a one-label head); ``dice_focal`` for tiny objects
SEG_LOSSES = ("bce", "dice", "dice_bce", "focal", "dice_focal", "ce", "dice_ce")
#: ``train.cls_loss``
CLS_LOSSES = ("ce", "focal")
#: ``train.optimizer``
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
#: ``train.scheduler``
SCHEDULERS = ("none", "cosine", "plateau")
#: ``data.cache``: where decoded images live
CACHE_MODES = ("memory", "disk", "none")
#: ``model.strategy``: which encoder stages train at each epoch
STRATEGIES = ("frozen", "finetune", "partial", "two_stage")


def check_registry(key: str, names: Iterable[str], registry: Iterable[str]) -> None:
    """Raise RuntimeError unless ``registry`` (a registry's names) holds exactly ``names``
    (the names validation accepts for config key ``key``): a programming error, found
    when the registry is imported."""
    names, found = set(names), set(registry)
    if names != found:
        raise RuntimeError(
            f"the registry of {key} and medtl.configuration.names disagree: "
            f"only in the registry {sorted(found - names)}, only in names {sorted(names - found)}"
        )
