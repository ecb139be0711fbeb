"""train.label_weights of a multilabel run: one positive (BCE pos_weight) weight per
structure, ``auto`` from the training split's pixels, checked by hand."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from medtl.data.masks.scheme import MaskScheme
from medtl.training.label_weights import structure_pos_weights, weighted_structure_loss
from medtl.utils.errors import ConfigError

SCHEME = MaskScheme("multilabel", (1, 2), ("a", "b"))
# bit 0 = structure a, bit 1 = structure b; 4 pixels per mask
MASKS = [
    torch.tensor([[1, 3], [0, 0]]),
    torch.tensor([[0, 2], [2, 0]]),
    torch.tensor([[3, 3], [3, 3]]),
]


def _cfg(weights, loss="dice_bce"):
    return SimpleNamespace(train=SimpleNamespace(label_weights=weights, loss=loss))


def test_auto_is_background_over_foreground_per_structure_on_the_training_split():
    cache = SimpleNamespace(masks=MASKS)
    # training rows 0 and 1 (8 pixels): a on 2 -> 6/2 = 3; b on 3 -> 5/3
    w = structure_pos_weights(_cfg("auto"), SCHEME, cache, [0, 1])
    assert w.tolist() == pytest.approx([3.0, 5 / 3])
    # row 2 alone: every pixel foreground (no background to balance against) -> 1 for both
    assert structure_pos_weights(_cfg("auto"), SCHEME, cache, [2]).tolist() == [1.0, 1.0]
    assert structure_pos_weights(_cfg("2,0.5"), SCHEME, cache, [0]).tolist() == [2.0, 0.5]
    assert structure_pos_weights(_cfg(None), SCHEME, cache, [0]) is None


@pytest.mark.parametrize(
    ("weights", "loss", "says"),
    [
        ("1,1,1", "bce", "give 2 positive weights"),
        ("0,1", "bce", "give 2 positive weights"),
        ("x,1", "bce", "give 2 positive weights"),
        ("auto", "dice", "weights only the BCE"),
        ("auto", "focal", "weights only the BCE"),
    ],
)
def test_wrong_weights_are_one_line(weights, loss, says):
    with pytest.raises(ConfigError, match=says) as got:
        structure_pos_weights(_cfg(weights, loss), SCHEME, SimpleNamespace(masks=MASKS), [0])
    assert "\n" not in str(got.value)


def test_weighted_bce_by_hand():
    # zero logits: sigmoid 0.5 everywhere, so a pixel costs log 2 x (w if foreground else 1)
    logits = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[[1, 2]]]])  # a on pixel 0, b on pixel 1
    w = torch.tensor([3.0, 0.5])
    got = weighted_structure_loss("bce", w)(logits, target)
    # a: (3 + 1) log 2, b: (1 + 0.5) log 2, mean over 4 entries
    assert float(got) == pytest.approx((3 + 1 + 1 + 0.5) * math.log(2) / 4)
    ones = weighted_structure_loss("ce", torch.ones(2))(logits, target)  # ce means bce
    assert float(ones) == pytest.approx(math.log(2))
    from medtl.training.losses import multilabel_dice_loss

    both = weighted_structure_loss("dice_bce", w)(logits, target)
    assert float(both) == pytest.approx(float(multilabel_dice_loss(logits, target) + got))


def test_a_multilabel_run_trains_with_auto_weights(tmp_path):
    import csv

    from tests.conftest import train_tiny
    from tests.data.structures import make_structures

    data = make_structures(tmp_path / "d", n=8, size=32)
    run = train_tiny(data, tmp_path / "runs", "train.label_weights=auto")
    cfg = (run / "config.yaml").read_text()
    assert "mask_mode: multilabel" in cfg and "label_weights: auto" in cfg
    (row,) = list(csv.DictReader((run / "metrics.csv").open()))
    assert math.isfinite(float(row["train_loss"])) and (run / "model.pt").is_file()
