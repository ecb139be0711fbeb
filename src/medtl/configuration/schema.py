"""The configuration schema: one dataclass per section (``data``, ``model``, ``train``,
``output``) with every key's default and meaning, and the keys whose value is one of a
fixed set. Loading, overrides and validation are in :mod:`medtl.configuration.loading`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from medtl.configuration.names import (
    CACHE_MODES,
    CLS_LOSSES,
    OPTIMIZERS,
    SCHEDULERS,
    SEG_LOSSES,
    STRATEGIES,
)

TASKS = ("segmentation", "classification", "multitask")
AUGMENTS = ("none", "light", "standard")
EMPTY_MASK_RULES = ("one", "skip", "zero")
LOGGERS = ("csv", "tensorboard", "mlflow")
NORMALIZATIONS = ("auto", "imagenet", "half", "none")


@dataclass
class DataConfig:
    """Where the images are and how they become tensors."""

    root: str | None = None
    layout: str = "auto"
    classes: str | None = None
    image_size: int = 128
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0
    augment: str = "light"
    augment_copies: int = 0  # K: each training image 1 + K times an epoch ("7x the data" = 6)
    workers: int = 0
    cache: str = "memory"  # decoded rows: memory | disk (memory-mapped, reused) | none (stream)
    cache_dir: str | None = None  # data.cache=disk folder; None: $MEDTL_CACHE_DIR, ~/.cache/medtl
    group_duplicates: bool = True
    in_memory_limit_mb: int = 4096
    max_pixels: int = 150_000_000  # images above this are refused from their header
    window: str | None = None  # DICOM/volume VOI window "C,W" or a preset (brain, lung, ...)
    slice_axis: int = 2  # volumes layout: voxel axis the 2D slices are taken along
    empty_slice_fraction: float = 1.0  # volumes layout: share of label-empty slices kept
    group_pattern: str | None = None  # regex, first group = patient id; None: auto; "none": off
    premade_split: str = "keep"  # leaked val/test images: keep | drop_leaked | regroup
    spacing: str | None = None  # pixel size in mm ("0.7" or "0.7x0.8") when files record none
    mask_mode: str = "auto"  # auto | binary | labels | palette | colors | multilabel (masks.scheme)
    labels: str | None = None  # label values and names "1:lesion,2:halo" (None: found/labels.yaml)
    mask_colors: str | None = None  # colour masks "255,0,0:tumour;0,255,0:edema"
    mask_palette: str | None = None  # palette masks: their palette, RGB bytes as hex (found)
    mask_resize: str = "none"  # none | nearest: masks of another size, same aspect ratio, resized
    lesion_labels: str | None = (
        None  # lesion-level metrics for: names/values; None: binary masks; "none": off
    )
    label_tag: str | None = None  # dicom layout: classes from a tag (BodyPartExamined, 0018,0015)
    label_level: int = 0  # dicom layout: classes from the N-th folder below the root (0: none)


@dataclass
class ModelConfig:
    """Encoder, decoder, heads and how the pretrained encoder is transferred."""

    arch: str = "unet"
    encoder: str = "efficientnet-lite0"
    weights: str = "imagenet"
    strategy: str = "finetune"
    encoder_lr_mult: float = 0.1
    unfreeze_stages: int = 2
    warmup_epochs: int = 2
    in_channels: int = 3
    seg_weight: float = 1.0
    cls_weight: float = 1.0
    dropout: float = 0.2
    normalize: str = "auto"  # input normalisation: auto (the encoder's), imagenet, half, none
    unfreeze_lr_mult: float = 1.0  # two_stage: every group's lr x this when the encoder unfreezes
    decoder_channels: str | None = None  # light/unet widths "64,128,256,512,512"; None: default
    init: str | None = None  # warm start: an earlier run folder or its model.pt (whole network)


@dataclass
class TrainConfig:
    """Optimisation, schedule, loss and the engineering settings passed to Lightning."""

    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4  # every optimiser, plain adam included (0 = torch's default)
    momentum: float = 0.9  # rmsprop and sgd (nesterov when > 0)
    optimizer: str = "adamw"
    scheduler: str = "cosine"
    min_lr: float = 0.0  # cosine: the lr it anneals to; plateau: the lowest lr
    plateau_factor: float = 0.5  # plateau: lr x factor after plateau_patience epochs without
    plateau_patience: int = 3  # a lower val_loss
    loss: str = "dice_bce"
    cls_loss: str = "ce"
    class_weights: str = "none"
    label_smoothing: float = 0.0
    empty_mask: str = "one"
    label_weights: str | None = (
        None  # several mask labels: "auto" (inverse pixel share) or "w0,w1,.."
    )
    monitor: str = "auto"
    patience: int = 0  # early stopping after this many epochs without improvement; 0 = off
    ema_epochs: float = 0.0  # keep an EMA of the weights over ~this many epochs; 0 = off
    seed: int = 0
    deterministic: bool = False
    resume: str | None = None
    precision: str = "auto"  # auto: bf16-mixed on a CUDA GPU with bfloat16, else 32
    accelerator: str = "auto"  # auto: cuda, else mps, else cpu (medtl.runtime.device)
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    logger: str = "csv"
    max_steps_per_epoch: int = 0
    feature_cache: bool = True
    feature_cache_dtype: str = "float32"
    feature_cache_mb: int = 256  # cached encoder features beyond this go to a file on disk
    memory_format: str = "auto"
    cpu_allocator: str = "tuned"
    compile: str = "none"
    threads: int = 0
    max_time: str | None = None  # time budget: 1800, 30m, 2h, DD:HH:MM:SS; stops at the best
    planned_seconds: float | None = None  # medtl plan's predicted fit time (run.json compares)
    planned_peak_mb: float | None = None  # medtl plan's predicted peak memory (run.json compares)


@dataclass
class OutputConfig:
    """Where run folders go."""

    dir: str = "runs"
    name: str | None = None


@dataclass
class Config:
    """The whole resolved configuration of one run (written to ``RUN/config.yaml``)."""

    task: str = "segmentation"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_flat_dict(self) -> dict[str, Any]:
        """The config as flat ``{"model.encoder": ..., "task": ...}`` pairs."""
        return flatten(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (safe for YAML/JSON)."""
        return asdict(self)


# keys whose value must be one of a fixed set (checked in validate()).
CHOICES: dict[str, tuple[str, ...]] = {
    "task": TASKS,
    "data.augment": AUGMENTS,
    "model.strategy": STRATEGIES,
    "train.optimizer": OPTIMIZERS,
    "train.scheduler": SCHEDULERS,
    "model.normalize": NORMALIZATIONS,
    "train.loss": SEG_LOSSES,
    "data.mask_mode": ("auto", "binary", "labels", "palette", "colors", "multilabel"),
    "train.cls_loss": CLS_LOSSES,
    "train.empty_mask": EMPTY_MASK_RULES,
    "train.logger": LOGGERS,
    "train.precision": ("auto", "32", "16-mixed", "bf16-mixed", "64"),
    "train.accelerator": ("auto", "cpu", "gpu", "cuda", "mps"),
    "train.memory_format": ("auto", "contiguous", "channels_last"),
    "train.cpu_allocator": ("tuned", "default"),
    "train.compile": ("none", "inductor", "aot_eager"),
    "train.feature_cache_dtype": ("float32", "bfloat16"),
    "data.cache": CACHE_MODES,
    "data.premade_split": ("keep", "drop_leaked", "regroup"),
    "data.mask_resize": ("none", "nearest"),
}

#: optional keys that document the word ``none`` as a value of their own (not "unset"):
#: ``data.group_pattern=none`` switches name grouping off, while null/~ means auto
NONE_IS_A_VALUE: tuple[str, ...] = ("data.group_pattern", "data.lesion_labels")

# earlier spellings still read (old run folders' config.yaml hold data.cache: true)
_ON, _OFF = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
LEGACY_VALUES: dict[str, dict[str, str]] = {
    "data.cache": {**dict.fromkeys(_ON, "memory"), **dict.fromkeys(_OFF, "none")},
}


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + str(k)] = v
    return out
