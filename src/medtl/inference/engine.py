"""Batched inference shared by evaluate and predict: inference_mode, optional flip TTA,
CPU graph optimisation (Conv-BN folding, channels_last), mapping of segmentation
logits back to each image's original size, overlays, and the one mask writer
(:func:`save_mask`)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from copy import deepcopy
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from medtl.data.transforms import resize_logits_to
from medtl.models.build import Net

if TYPE_CHECKING:
    from medtl.data.masks.scheme import MaskScheme


class InferenceNet(torch.nn.Module):
    """An eval-mode network for inference only: Conv-BN folded where the graph can be traced,
    weights and inputs in channels_last (measured faster on CPU, docs/performance.md).
    Outputs equal the eager network's to float rounding (tested: max abs difference below
    1e-4 of the logits' scale). ``copy=False`` works on ``net`` itself (its convs change)
    instead of a deep copy, for a caller that hands over a network it does not use again."""

    def __init__(
        self,
        net: torch.nn.Module,
        fold_bn: bool = True,
        channels_last: bool = True,
        copy: bool = True,
    ):
        super().__init__()
        net = (deepcopy(net) if copy else net).eval()  # by default the caller's stays as it was
        self.steps: list[str] = []
        if fold_bn:
            try:
                net = fold_traced_conv_bn(net)
                self.steps.append("conv-bn folded")
            except Exception as exc:  # data-dependent code (e.g. TF-"same" padding) does not trace
                n = fold_sequential_conv_bn(net)
                self.steps.append(
                    f"conv-bn folded in {n} sequential blocks (not traceable: {type(exc).__name__})"
                    if n
                    else f"conv-bn not folded ({type(exc).__name__})"
                )
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
            self.steps.append("channels_last")
        self.net = net.eval()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net(x.contiguous(memory_format=self.fmt))

    def describe(self) -> str:
        """What was done to the network, e.g. ``"conv-bn folded, channels_last"``."""
        return ", ".join(self.steps) or "eager"


def fold_traced_conv_bn(net: torch.nn.Module) -> torch.fx.GraphModule:
    """``net`` traced with torch.fx, each eval-mode ``BatchNorm2d`` whose input is a
    ``Conv2d`` used nowhere else folded into that conv, in place (``net``'s own convs change).
    The same numbers as torch.fx's ``fuse``, which copies each conv first and so takes
    longer. Raises what tracing raises for networks fx cannot trace."""
    from torch import fx
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    traced = fx.symbolic_trace(net)
    modules = dict(traced.named_modules())
    calls = [n for n in traced.graph.nodes if n.op == "call_module"]
    uses = Counter(n.target for n in calls)  # a module called twice is not folded
    for node in calls:
        bn, prev = modules[node.target], node.args[0] if node.args else None
        if type(bn) is not torch.nn.BatchNorm2d or not isinstance(prev, fx.Node):
            continue
        conv = modules.get(prev.target) if prev.op == "call_module" else None
        if type(conv) is not torch.nn.Conv2d or len(prev.users) > 1 or uses[prev.target] > 1:
            continue
        if not bn.track_running_stats:
            continue
        conv.weight, conv.bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
        )
        node.replace_all_uses_with(prev)
        traced.graph.erase_node(node)
    traced.graph.lint()
    traced.recompile()
    traced.delete_all_unused_submodules()
    return traced


def fold_sequential_conv_bn(module: torch.nn.Module) -> int:
    """Fold every eval-mode ``BatchNorm2d`` that directly follows a ``Conv2d`` inside an
    ``nn.Sequential`` into that conv (in place; the BN becomes ``Identity``). Needs no graph
    tracing, so it serves networks fx cannot trace (VGG features, smp decoder blocks).
    Returns the number of pairs folded."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for seq in [m for m in module.modules() if isinstance(m, torch.nn.Sequential)]:
        keys = list(seq._modules)
        for a, b in zip(keys, keys[1:], strict=False):
            conv, bn = seq._modules[a], seq._modules[b]
            if (
                type(conv) is torch.nn.Conv2d
                and type(bn) is torch.nn.BatchNorm2d
                and bn.track_running_stats
                and conv.out_channels == bn.num_features
            ):
                seq._modules[a] = fuse_conv_bn_eval(conv.eval(), bn.eval())
                seq._modules[b] = torch.nn.Identity()
                folded += 1
    return folded


def inference_net(net: Net, device: torch.device | str = "cpu", optimise: bool = True):
    """The network evaluate and predict run on ``device`` (where ``net`` already is):
    :class:`InferenceNet` on CPU when ``optimise``, otherwise ``net`` itself in eval mode
    (GPUs keep the eager network). ``net`` is handed over: the CPU-optimised network is
    built from it in place, without a copy (its convs change), as every caller passes a
    network of its own from :func:`medtl.runs.folder.load_bundle` and uses only the result."""
    net.eval()
    if not optimise or torch.device(device).type != "cpu":
        return net
    return InferenceNet(net, copy=False)


@torch.inference_mode()
def infer(net: torch.nn.Module, x: torch.Tensor, tta: bool = False) -> dict[str, torch.Tensor]:
    """Logits (on the CPU) for a float batch in [0, 1] on the CPU; the batch goes to the
    network's device (non-blocking from pinned memory on a GPU). ``tta`` averages with the
    horizontally flipped input."""
    net.eval()
    device = net_device(net)
    if x.device != device:
        pin = device.type == "cuda" and x.device.type == "cpu"
        x = (x.pin_memory() if pin else x).to(device, non_blocking=pin)
    out = net(x)
    if tta:
        flipped = net(torch.flip(x, dims=[3]))
        if "seg" in out:
            out["seg"] = (out["seg"] + torch.flip(flipped["seg"], dims=[3])) / 2
        if "cls" in out:
            out["cls"] = (out["cls"] + flipped["cls"]) / 2
    return {k: v.cpu() for k, v in out.items()} if device.type != "cpu" else out


def net_device(net: torch.nn.Module) -> torch.device:
    """The device of ``net``'s first parameter (the CPU for a network without any)."""
    first = next(iter(net.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def mask_at_size(
    seg_logits: torch.Tensor,
    height: int,
    width: int,
    threshold: float | Sequence[float] = 0.5,
    multilabel: bool = False,
) -> np.ndarray:
    """One image's ``(1, S, S)`` logits -> bool mask at ``height x width``; ``(C + 1, S, S)``
    logits of several labels -> ``uint8`` label indices (argmax of the resized logits);
    ``multilabel`` ``(C, S, S)`` logits, one per structure -> ``uint8`` with structure ``k``
    in bit ``k`` where its sigmoid is above ``threshold`` (one for all, or one per
    structure)."""
    full = resize_logits_to(seg_logits[None].float(), height, width)[0]
    if multilabel:
        cut = torch.as_tensor(threshold, dtype=full.dtype).reshape(-1, 1, 1)
        hit = (torch.sigmoid(full) > cut).to(torch.uint8)
        shifts = torch.arange(hit.shape[0]).view(-1, 1, 1).to(torch.uint8)
        return (hit << shifts).sum(0).to(torch.uint8).numpy()
    if full.shape[0] > 1:
        return full.argmax(0).to(torch.uint8).numpy()
    return (torch.sigmoid(full[0]) > float(np.asarray(threshold).reshape(-1)[0])).numpy()


def overlay(
    image: np.ndarray, pred: np.ndarray | None, truth: np.ndarray | None = None, alpha: float = 0.45
) -> np.ndarray:
    """RGB uint8 image with the prediction tinted red and the truth's outline in green; label
    maps (uint8 indices) tint and outline each label in its colour (:data:`LABEL_COLOURS`)."""
    if pred is not None and pred.dtype != bool or truth is not None and truth.dtype != bool:
        return overlay_labels(image, pred, truth, alpha)
    out = image.astype(np.float32).copy()
    if pred is not None:
        out[pred] = (1 - alpha) * out[pred] + alpha * np.array([255, 40, 40], np.float32)
    if truth is not None:
        edge = truth & ~_erode(truth)
        out[edge] = np.array([40, 255, 40], np.float32)
    return out.clip(0, 255).astype(np.uint8)


#: label k's colour in overlays and legends (label 1 red as in binary overlays)
LABEL_COLOURS = np.array(
    [(255, 40, 40), (40, 120, 255), (255, 200, 0), (200, 60, 255), (0, 220, 220), (255, 120, 0)],
    np.float32,
)


def label_colour(k: int) -> np.ndarray:
    """The overlay colour of label ``k`` (1-based), cycling after six labels."""
    return LABEL_COLOURS[(k - 1) % len(LABEL_COLOURS)]


def overlay_labels(
    image: np.ndarray, pred: np.ndarray | None, truth: np.ndarray | None, alpha: float = 0.45
) -> np.ndarray:
    """Each predicted label tinted in its colour; each true label's outline in its colour."""
    out = image.astype(np.float32).copy()
    if pred is not None:
        for k in (int(v) for v in np.unique(pred) if v):
            hit = pred == k
            out[hit] = (1 - alpha) * out[hit] + alpha * label_colour(k)
    if truth is not None:
        for k in (int(v) for v in np.unique(truth) if v):
            m = truth == k
            out[m & ~_erode(m)] = 0.5 * label_colour(k) + 0.5 * 255
    return out.clip(0, 255).astype(np.uint8)


def _erode(mask: np.ndarray) -> np.ndarray:
    m = np.pad(mask, 1)
    return m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]


_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()\-]+")


def safe_name(name: str, fallback: str = "image") -> str:
    """A file name that cannot leave its folder (no separators, no '..', printable)."""
    stem = _UNSAFE.sub("_", Path(name).name).strip(" .")
    return stem or fallback


def save_png(path: Path, array: np.ndarray) -> None:
    """Write a uint8/bool array as PNG (atomically; bool as 0/255)."""
    save_mask(path, array)


def structure_paths(path: Path, scheme: MaskScheme) -> list[Path]:
    """Where :func:`save_mask` writes a ``multilabel`` mask: ``<name>_<structure>.png``
    beside ``path`` (``<name>_mask.png`` or ``<name>_pred.png``), one per structure."""
    stem = path.stem
    for tail in ("_mask", "_pred"):
        stem = stem[: -len(tail)] if stem.endswith(tail) else stem
    return [path.with_name(f"{stem}_{name}.png") for name in scheme.names]


def save_mask(path: Path, mask: np.ndarray, scheme: MaskScheme | None = None) -> list[Path]:
    """Write a predicted mask as PNG (atomically) in the masks' own encoding: bool (binary)
    as 0/255 grey; label indices through ``scheme`` (:meth:`MaskScheme.to_stored`): label
    maps as their own values (8- or 16-bit grey), palette masks as mode-P PNGs with the
    training masks' palette (index = stored value), colour masks as RGB. Without a scheme
    (or a palette run recorded before ``data.mask_palette``) the values are written as grey.
    One binary mask per structure (``multilabel``): one 0/255 PNG per structure
    (:func:`structure_paths`). Returns the paths written."""
    from medtl.utils.files import atomic_write

    if scheme is not None and scheme.multilabel:
        paths = structure_paths(path, scheme)
        for k, target in enumerate(paths, 1):
            save_mask(target, scheme.structure(mask, k))
        return paths
    if mask.dtype == bool:
        img = Image.fromarray(mask.astype(np.uint8) * 255)
    else:
        img = Image.fromarray(scheme.to_stored(mask) if scheme is not None else mask)
        if scheme is not None and scheme.mode == "palette" and scheme.palette:
            img.putpalette(list(scheme.palette))  # grey -> mode P, indices kept
    atomic_write(path, lambda p: img.save(p, format="PNG"))
    return [path]
