"""FLOPs of one forward (and backward) pass, counted by Lightning's ``measure_flops``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.fabric.utilities.throughput import measure_flops


def count_flops(
    model: torch.nn.Module,
    x: torch.Tensor,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
) -> float:
    """FLOPs per image of one forward (and backward, when ``loss_fn`` maps output to a loss).

    Counted by Lightning's ``measure_flops`` (``torch.utils.flop_counter.FlopCounterMode``:
    matmuls and convolutions; a multiply-add is 2 FLOPs). Gradients made by the backward pass
    are cleared afterwards.
    """
    if loss_fn is None:
        with torch.no_grad():
            total = measure_flops(model, lambda: model(x))
    else:
        total = measure_flops(model, lambda: model(x), loss_fn)
        model.zero_grad(set_to_none=True)
    return total / x.shape[0]
