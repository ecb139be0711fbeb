"""The rules a plan follows, each returning its value and the reason (a YAML comment).

They are deliberately simple and stated in the reason so a user can disagree with one
and change that key: the image size keeps the small objects visible, the encoder is the
preferred one with weights on disk that trains enough epochs within the budget, the
epochs fill the budget, and the folds follow the independent groups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from medtl.models.registry import ENCODERS
from medtl.models.weights import find_pretrained, torch_checkpoints_dir
from medtl.planning.fingerprint import Fingerprint
from medtl.planning.probe import Measure

#: image sizes a plan considers (multiples of 32: every decoder's stride)
SIZES = (32, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512)
#: an object smaller than this many pixels at the training size is hard to segment
MIN_OBJECT_PIXELS = 64
#: encoders a plan considers, preferred first (ImageNet quality per step cost)
PREFERRED = ("resnet34", "efficientnet-lite0", "resnet18", "efficientnet-lite1", "mobilenet_v2")
#: fewer epochs than this and the plan prefers a faster encoder
MIN_EPOCHS = 10
MAX_EPOCHS = 60
#: the images grow beyond the small objects' size while each run still trains this many
#: epochs (medtl's default recipe trains 20)
GOOD_EPOCHS = 20
#: the largest size a plan grows to
MAX_GROWN_SIZE = 512
#: share of the budget kept for decoding, model builds and evaluation (not fitting)
RESERVE = 0.15


@dataclass
class Choice:
    """One key's value and why."""

    value: object
    reason: str


def image_size(fp: Fingerprint, task: str) -> Choice:
    """The smallest size at which the 10th-percentile object keeps MIN_OBJECT_PIXELS pixels,
    no larger than the images themselves (classification: 224, the ImageNet size)."""
    cap = max(s for s in SIZES if s <= max(fp.min_side, SIZES[0]))
    if task == "classification":
        size = min(224, cap)
        return Choice(
            size, f"classification: ImageNet's 224 px (images' smallest side {fp.min_side})"
        )
    share = fp.smallest_object_share
    if not share:
        return Choice(min(256, cap), "no objects measured: 256 px, the usual segmentation size")
    need = math.sqrt(MIN_OBJECT_PIXELS / share)
    fits = [s for s in SIZES if s >= need and s <= cap]
    size = fits[0] if fits else cap
    kept = share * size * size
    why = (
        f"the 10th-percentile object covers {share:.2g} of the image: {kept:.0f} px at {size} "
        f"(>= {MIN_OBJECT_PIXELS} wanted)"
    )
    if not fits:
        why += f"; capped at the images' smallest side {fp.min_side}"
    return Choice(size, why)


def larger_sizes(size: int, side: int) -> list[int]:
    """The sizes above ``size`` a plan may grow to: up to ``side`` (the most common image's
    shorter side: no upsampling of typical images) and :data:`MAX_GROWN_SIZE`."""
    return [s for s in SIZES if size < s <= min(side, MAX_GROWN_SIZE)]


def grown_size_reason(small: Choice, size: int) -> str:
    """Why a plan trains at ``size`` rather than the small objects' size ``small``."""
    return (
        f"the budget trains >= {GOOD_EPOCHS} epochs per run at {size} px (timed), so larger "
        f"than the small objects need ({small.value} px: {small.reason}): larger images keep "
        "more of every boundary"
    )


def encoders_on_disk() -> list[str]:
    """The registered encoders whose ImageNet weights are on disk, in :data:`PREFERRED` order
    then the rest."""
    found = [n for n, s in ENCODERS.items() if s.source and find_pretrained(s.source)]
    return sorted(found, key=lambda n: PREFERRED.index(n) if n in PREFERRED else len(PREFERRED))


def missing_weights_hint() -> str:
    """Which file would help most when no encoder's weights are on disk."""
    src = ENCODERS["resnet18"].source
    assert src is not None
    return f"place {src.filename} in {torch_checkpoints_dir()}/ (download: {src.url})"


def empty_class_notes(fp: Fingerprint) -> list[str]:
    """One note per segmentation plan whose data has classes with every mask empty (BUSI's
    ``normal``): the plan trains on them as images without objects, and says how to leave
    them out instead. Measured on BUSI (60-minute plan, 5-fold ensemble, docs/results.md
    section 7): Dice on the lesion images of the test split 0.733 with the 133 normals in
    training, 0.785 without."""
    if not fp.empty_classes:
        return []
    empty = ", ".join(f"{c} ({n} images)" for c, n in fp.empty_classes.items())
    keep = [c for c in fp.classes if c not in fp.empty_classes]
    note = (
        f"every mask of {empty} is empty: trained on as images without objects (the model "
        "learns to predict nothing there) and scored so (Dice 1 for an empty prediction)"
    )
    if keep:
        note += (
            f"; to train and score on images with objects only, plan again with "
            f"'data.classes=[{','.join(keep)}]' (the plan is made on those images and the "
            "recipe keeps them; BUSI: "
            "lesion-image test Dice of the 60-minute plan's 5-fold ensemble 0.785 without "
            "its normals, 0.733 with them)"
        )
    return [note]


def epoch_seconds(m: Measure, n_train: int, n_val: int, batch: int) -> float:
    """One epoch from a probe: the optimiser steps with their batches' loading, the
    validation forwards and a checkpoint write and a half (last.ckpt each epoch, the best
    one when it improves)."""
    steps = max(1, n_train // batch if n_train > batch else 1)
    scale = batch / m.batch
    return (
        steps * (m.step_s + m.load_s) * scale
        + math.ceil(n_val / batch) * m.forward_s * scale
        + (1.5 * m.checkpoint_s)
    )


def fit_overhead(m: Measure) -> float:
    """Seconds of a fit that are not epochs: Lightning's start and, on CPU when the plan
    could not time both memory layouts (so it leaves ``train.memory_format`` to the run),
    the run's own layout probe (two layouts, two forward+backward steps each)."""
    return 1.0 + (4 * m.step_s if m.device == "cpu" and not m.layout_steps else 0.0)


#: objects whose 10th-percentile area share is below this are tiny: Dice + focal loss
TINY_OBJECT_SHARE = 0.01


def loss(fp: Fingerprint, task: str) -> Choice:
    """Segmentation: Dice+focal when the 10th-percentile object of any structure covers less
    than :data:`TINY_OBJECT_SHARE` of the image, else Dice+CE for label maps and Dice+BCE
    for one structure."""
    if task == "classification":
        return Choice("dice_bce", "not used (classification)")
    share = fp.smallest_object_share
    if share is not None and share < TINY_OBJECT_SHARE:
        return Choice(
            "dice_focal",
            f"tiny objects (10th percentile {share:.2g} of the image < {TINY_OBJECT_SHARE}): "
            "Dice keeps them from drowning in background and the focal term down-weights "
            "the easy background pixels, which per-pixel BCE/CE would let dominate",
        )
    if any(name != "foreground" for name in fp.objects):
        return Choice("dice_ce", "several labels: Dice + cross-entropy over the label channels")
    return Choice("dice_bce", "objects are not tiny: Dice + BCE (medtl's default)")


def augment(n_train: int) -> Choice:
    """``standard`` below 1000 training images, else ``light``."""
    if n_train < 1000:
        return Choice(
            "standard", f"{n_train} training images: the wider flips/affine/intensity ranges"
        )
    return Choice("light", f"{n_train} training images: the small flips/affine/intensity ranges")


def strategy(n_images: int, pretrained: bool, epochs: int) -> Choice:
    """Two-stage fine-tuning for small sets with weights, plain fine-tuning otherwise."""
    if not pretrained:
        return Choice("finetune", "random initialisation: every layer trains at the full lr")
    if n_images < 300 and epochs >= 6:
        return Choice(
            "two_stage",
            f"{n_images} images: decoder first, then the encoder joins (less forgetting)",
        )
    return Choice("finetune", "enough images to fine-tune the whole network from the start")


def encoder(name: str, speeds: str, pretrained: bool) -> Choice:
    """The probed encoder ``name``, with the measured speeds of the candidates as its reason."""
    if pretrained:
        return Choice(
            name,
            f"the first preferred encoder with weights on disk that trains >= {MIN_EPOCHS} "
            f"epochs in the budget (measured here: {speeds})",
        )
    return Choice(name, f"no encoder weights on disk: the fastest measured ({speeds})")


def encoder_lr_mult(task: str, strategy: str, pretrained: bool) -> Choice:
    """The encoder's learning rate as a multiple of the decoder's.

    Random initialisation: 1 (nothing to preserve). A segmentation network fine-tuned from
    ImageNet weights: 1, the convention of segmentation-models-pytorch's examples; on BUSI's
    5-fold plan (docs/results.md, "The encoder's learning rate, 5 folds paired") it raised
    the out-of-fold Dice of every fold over medtl's default 0.1 (+0.050 over 518 images).
    Classifiers and two-stage fine-tuning keep the default 0.1 (not measured with 1)."""
    if not pretrained:
        return Choice(1.0, "random initialisation: the encoder learns at the decoder's lr")
    if task == "segmentation" and strategy == "finetune":
        return Choice(
            1.0,
            "segmentation fine-tuned from ImageNet weights: the encoder at the decoder's lr "
            "(BUSI 5-fold plan: out-of-fold Dice higher in every fold than at 0.1)",
        )
    return Choice(0.1, "the pretrained encoder at a tenth of the decoder's lr (medtl's default)")


def patience(epochs: int, has_val: bool) -> Choice:
    """Early stopping after half the epochs without improvement (8+ epochs).

    The planned run's learning rate follows a cosine to zero at its last epoch, so its late,
    small steps are where the validation score climbs last, after noisy middle epochs: half
    the epochs stops only a run that has clearly stopped improving (docs/results.md section 5
    compares it with a quarter on BUSI)."""
    if not has_val or epochs < 8:
        return Choice(0, "off: too few epochs (or no validation split) to stop early")
    p = max(3, epochs // 2)
    return Choice(
        p,
        f"stop after {p} epochs without a better validation score (half the epochs: the "
        "cosine schedule's last, small steps are often where validation improves last)",
    )


def folds(fp: Fingerprint, asked: int | None, fits_five: bool) -> Choice:
    """``asked`` when given; else 5 folds (and their ensemble) when there are 10+ independent
    groups and the budget trains five models, else one split."""
    if asked is not None:
        return Choice(asked, "as asked (--folds)")
    if fp.groups >= 10 and fits_five:
        return Choice(
            5,
            f"{fp.groups} independent groups and the budget trains 5 models: 5-fold CV and "
            "the fold ensemble",
        )
    why = f"only {fp.groups} independent groups" if fp.groups < 10 else "the budget fits one model"
    return Choice(0, f"{why}: one train/val/test split")
