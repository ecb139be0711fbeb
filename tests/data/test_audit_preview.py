"""``medtl audit DATA --preview``: a PNG grid of sample images with mask outlines per class
(seeded, every class shown), written beside the data or where asked."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.colors import to_hex
from PIL import Image

from medtl.cli.parser import main
from medtl.data.audit.preview import pick_samples, preview_path
from medtl.data.layouts import Sample
from medtl.plots.preview import class_colours, dataset_preview_figure, write_preview


def _case(k: int) -> tuple[np.ndarray, np.ndarray]:
    img = np.full((40, 48), 30 * k, np.uint8)
    mask = np.zeros((40, 48), bool)
    mask[5 + k : 20 + k, 8:30] = True
    return img, mask


def _outline_colours(ax) -> list[str]:
    return [to_hex(c.get_edgecolor()[0]) for c in ax.collections if len(c.get_edgecolor())]


def test_one_panel_per_image_with_its_class_coloured_outline():
    cases = [_case(k) for k in range(5)]
    labels = ["benign", "malignant", "benign", "normal", "malignant"]
    masks = [m for _, m in cases]
    masks[3] = np.zeros_like(masks[3])  # an empty mask: a panel without an outline
    fig = dataset_preview_figure(
        [i for i, _ in cases], masks, labels, [f"img{k}.png" for k in range(5)], heading="demo"
    )
    assert len(fig.axes) == 5  # one panel per sampled image, no empty grid cells
    colours = class_colours(labels)
    assert len(set(colours.values())) == 3
    for ax, label in zip(fig.axes, labels, strict=True):
        expected = [] if label == "normal" else [colours[label]]
        assert _outline_colours(ax) == expected
    assert fig.axes[3].get_title().endswith("(empty mask)")
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["benign", "malignant", "normal"]
    assert len(dataset_preview_figure([cases[0][0]], [None], [None], ["x"]).axes) == 1


def test_samples_are_seeded_and_every_class_shows():
    samples = [Sample(f"a{i}.png", label="a") for i in range(10)]
    samples += [Sample("b0.png", label="b"), Sample("c0.png", label="c")]
    picked = pick_samples(samples, n=4, seed=0)
    assert len(picked) == 4 and {s.label for s in picked} == {"a", "b", "c"}
    assert picked == pick_samples(samples, n=4, seed=0)
    assert len(pick_samples(samples, n=50)) == len(samples)


def test_preview_png_is_written_beside_the_data(phantoms, tmp_path):
    out = write_preview(phantoms, tmp_path / "grid.png", n=6)
    assert out == tmp_path / "grid.png"
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > 300
    assert preview_path(phantoms) == phantoms.resolve().parent / f"{phantoms.name}_preview.png"


def test_cli_audit_preview_prints_the_path(phantoms, tmp_path, capsys):
    target = tmp_path / "p.png"
    assert main(["audit", str(phantoms), "--preview", str(target)]) == 0
    out = capsys.readouterr().out
    assert f"preview: {target}" in out and target.is_file()
    target.unlink()
    assert main(["audit", str(phantoms), "--json", "--preview", str(target)]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # stdout stays one JSON document; the path goes to stderr
    assert f"preview: {target}" in captured.err and target.is_file()


def test_cli_audit_preview_default_path(tmp_path, capsys):
    from medtl.data.phantoms import make_phantoms

    data = make_phantoms(tmp_path / "set", n=4, size=32, seed=1)
    assert main(["audit", str(data), "--preview"]) == 0
    default = tmp_path / "set_preview.png"
    assert f"preview: {default}" in capsys.readouterr().out and default.is_file()
    assert not list(data.rglob("*preview*"))  # never inside the data set


@pytest.mark.parametrize("n", [1, 3])
def test_preview_panel_count_follows_n(phantoms, tmp_path, n, monkeypatch):
    import medtl.plots.preview as preview

    seen = {}
    real = preview.dataset_preview_figure

    def spy(images, masks, labels, titles, heading=""):
        fig = real(images, masks, labels, titles, heading)
        seen["axes"] = len(fig.axes)
        return fig

    monkeypatch.setattr(preview, "dataset_preview_figure", spy)
    write_preview(phantoms, tmp_path / "g.png", n=n)
    assert seen["axes"] == n


def test_the_module_examples_run():
    import doctest

    from medtl.data.audit import preview as data_preview
    from medtl.plots import preview

    result = doctest.testmod(preview)
    assert result.attempted > 0 and result.failed == 0
    assert doctest.testmod(data_preview).failed == 0  # its example needs BUSI: skipped
