"""Tests for medtl.comparison: grid expansion, paired k-fold design, skip/resume, shards, statistics."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from medtl.comparison import cell_id, collect, compare, expand_grid, split_overrides
from medtl.metrics import aggregate, paired_bootstrap_pvalue, sign_flip_pvalue, wilcoxon_pvalue
from medtl.utils.errors import ConfigError, MedtlError
from tests.conftest import TINY

GRID = ["model.strategy=frozen,finetune"]
CLS = ("accuracy", "macro_f1", "auroc")


def base(root: Path) -> list[str]:
    return [f"data.root={root}", *TINY, "data.test_fraction=0"]  # every image in the folds


def without_timing(results: dict) -> dict:
    out = json.loads(json.dumps(results))
    for c in out["configs"]:
        c.pop("timing")
    return out


def per_image(run: Path) -> list[dict[str, str]]:
    with (run / "eval" / "val" / "per_image.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def cmp(phantoms12, tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "a"
    compare(base(phantoms12), GRID, folds=2, out=out)
    return out


# ----------------------------------------------------------------------------- grid
def test_expand_grid_product_fixed_keys_and_lists():
    cells = expand_grid(["model.encoder=resnet18,vgg11", "train.lr=0.01", "model.strategy=a,b,c"])
    assert len(cells) == 6
    assert cells[0] == ["model.encoder=resnet18", "train.lr=0.01", "model.strategy=a"]
    assert cells[-1] == ["model.encoder=vgg11", "train.lr=0.01", "model.strategy=c"]
    assert all(c[1] == "train.lr=0.01" for c in cells)
    assert expand_grid(["a.b=[1,2]", "c.d=x,y"]) == [["a.b=[1,2]", "c.d=x"], ["a.b=[1,2]", "c.d=y"]]
    assert expand_grid(['a.b="x,y"']) == [['a.b="x,y"']]
    assert expand_grid([]) == [[]]


def test_expand_grid_errors():
    with pytest.raises(ConfigError, match="twice"):
        expand_grid(["train.lr=1,2", "train.lr=3"])
    with pytest.raises(ConfigError, match="empty value"):
        expand_grid(["train.lr=1,"])
    with pytest.raises(ConfigError, match="key=value"):
        expand_grid(["train.lr"])


def test_split_overrides_uses_the_grid_rule():
    cases = [
        "model.encoder=resnet18,vgg11",
        "train.lr=0.01",
        "model.strategy=a,b,c",
        "a.b=[1,2]",
        "c.d=x,y",
        "data.classes=[a,b]",
        "x=1",
    ]
    fixed, swept = split_overrides(cases)
    assert fixed == ["train.lr=0.01", "a.b=[1,2]", "data.classes=[a,b]", "x=1"]
    assert swept == ["model.encoder=resnet18,vgg11", "model.strategy=a,b,c", "c.d=x,y"]
    # the rule cmd_compare used before agrees on all of these ...
    old = [
        o for o in cases if "," not in o.split("=", 1)[-1] or o.split("=", 1)[-1].startswith("[")
    ]
    assert fixed == old
    # ... and the grid's rule decides the rest: a quoted value is one value, lists can sweep
    assert split_overrides(['a.b="x,y"', "e.f=[1],[2]", "train.lr"]) == (
        ['a.b="x,y"', "train.lr"],
        ["e.f=[1],[2]"],
    )
    assert len(expand_grid(cases)) == len(expand_grid(swept)) == 2 * 3 * 2


def test_cell_id_is_stable_readable_and_distinct():
    a = cell_id(["model.encoder=resnet18", "model.strategy=frozen"])
    assert a == cell_id(["model.encoder=resnet18", "model.strategy=frozen"])
    assert a.startswith("encoder-resnet18_strategy-frozen-") and len(a.rsplit("-", 1)[1]) == 8
    assert a != cell_id(["model.encoder=resnet18", "model.strategy=finetune"])
    assert cell_id([]).startswith("base-")
    assert "/" not in cell_id(["data.root=/x/y"])


def test_bad_designs_fail_before_training(phantoms12, tmp_path):
    with pytest.raises(MedtlError, match="shard"):
        compare(base(phantoms12), GRID, out=tmp_path / "s", shard=(3, 2))
    with pytest.raises(MedtlError, match="folds"):
        compare(base(phantoms12), GRID, folds=1, out=tmp_path / "f")
    with pytest.raises(ConfigError, match="data.seed"):
        compare(base(phantoms12), ["data.seed=0,1"], out=tmp_path / "d")
    with pytest.raises(ConfigError, match="model.encodr"):
        compare(base(phantoms12), ["model.encodr=a,b"], out=tmp_path / "k")
    with pytest.raises(MedtlError, match="compare.json"):
        collect(tmp_path)
    assert not (tmp_path / "s" / "cells").exists() and not (tmp_path / "d").exists()


# ----------------------------------------------------------------------------- the 2 x 2 design
@pytest.mark.slow
def test_layout_and_identical_splits(cmp, phantoms12):
    design = json.loads((cmp / "compare.json").read_text())
    assert design["folds"] == 2 and design["seed"] == 0 and design["grid"] == GRID
    assert [c["overrides"] for c in design["cells"]] == [
        ["model.strategy=frozen"],
        ["model.strategy=finetune"],
    ]
    ids = [c["id"] for c in design["cells"]]
    vals = []
    for k in range(2):
        docs = [
            json.loads((cmp / "cells" / i / f"fold{k}" / "splits.json").read_text()) for i in ids
        ]
        lists = [{s: [e["image"] for e in d[s]] for s in ("train", "val")} for d in docs]
        assert lists[0] == lists[1]  # both cells saw exactly the same images
        assert lists[0]["val"] == design["splits"][k]["val"]
        assert not set(lists[0]["train"]) & set(lists[0]["val"])
        vals += lists[0]["val"]
    assert sorted(vals) == sorted(
        str(p) for p in phantoms12.rglob("*.png") if "_mask" not in p.name
    )
    for i in ids:
        for k in range(2):
            run = cmp / "cells" / i / f"fold{k}"
            assert (run / "model.pt").is_file() and (run / "timing.json").is_file()
            assert (run / "eval" / "val" / "summary.json").is_file()


def test_results_numbers(cmp):
    res = json.loads((cmp / "results.json").read_text())
    assert res["task"] == "segmentation" and res["primary"] == "dice" and res["folds"] == 2
    assert [c["rank"] for c in res["configs"]] == [1, 2]
    assert res["configs"][0]["primary"] >= res["configs"][1]["primary"]
    assert res["best"] == res["configs"][0]["cell"] and res["incomplete"] == []
    pooled = {}
    for c in res["configs"]:
        runs = [cmp / r for r in c["runs"]]
        rows = [r for run in runs for r in per_image(run)]
        dice = [float(r["dice"]) for r in rows]
        assert c["n_images"] == 12
        assert c["metrics"]["dice"]["images"] == pytest.approx(
            aggregate(dice, 2000, 0), nan_ok=True
        )
        fold_means = [np.mean([float(r["dice"]) for r in per_image(run)]) for run in runs]
        folds = c["metrics"]["dice"]["folds"]
        assert folds["values"] == pytest.approx(fold_means)
        assert folds["mean"] == pytest.approx(np.mean(fold_means))
        assert folds["ci_low"] <= folds["mean"] <= folds["ci_high"]
        for key in ("mean", "std", "ci_low", "ci_high"):
            assert math.isfinite(c["metrics"]["iou"]["images"][key])
        assert c["timing"]["train_s"] > 0 and c["timing"]["infer_img_per_s"] > 0
        pooled[c["cell"]] = {r["image"]: float(r["dice"]) for r in rows}
    best, other = res["configs"]
    assert best["vs_best"] is None
    keys = sorted(pooled[best["cell"]])
    a = [pooled[other["cell"]][k] for k in keys]
    b = [pooled[best["cell"]][k] for k in keys]
    vs = other["vs_best"]
    assert vs["images"]["n"] == 12
    assert vs["images"]["mean_diff"] == pytest.approx(np.mean(a) - np.mean(b))
    assert math.isnan(paired_bootstrap_pvalue(a, b, seed=0))  # 12 pairs: below 20
    assert vs["images"]["p_bootstrap"] is None
    assert vs["images"]["p_permutation"] == pytest.approx(sign_flip_pvalue(a, b, seed=0))
    assert vs["images"]["p_wilcoxon"] == pytest.approx(wilcoxon_pvalue(a, b))
    assert 0 < vs["images"]["p_permutation"] <= 1
    assert vs["images"]["p_permutation_holm"] == vs["images"]["p_permutation"]  # m = 1
    assert vs["folds"] is None  # fewer than 3 folds: no per-fold test

    md = (cmp / "results.md").read_text()
    assert "| rank | configuration | Dice images |" in md
    assert "model.strategy=frozen" in md and "model.strategy=finetune" in md
    with (cmp / "results.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["configuration"] for r in rows] == [c["configuration"] for c in res["configs"]]
    assert float(rows[1]["vs_best_images_p_permutation"]) == pytest.approx(
        vs["images"]["p_permutation"]
    )
    assert math.isnan(float(rows[1]["vs_best_images_p_bootstrap"]))  # fewer than 20 pairs


def test_rerun_trains_nothing(cmp, phantoms12, capsys):
    files = [p for p in (cmp / "cells").rglob("*") if p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in files}
    results = json.loads((cmp / "results.json").read_text())
    compare(base(phantoms12), GRID, folds=2, out=cmp)
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert json.loads((cmp / "results.json").read_text()) == results
    assert "| 1 |" in capsys.readouterr().out  # the table is printed
    with pytest.raises(MedtlError, match="another comparison"):
        compare(base(phantoms12), ["model.strategy=frozen,partial"], folds=2, out=cmp)


def test_explicit_cells_from_the_cli_equal_the_grid(cmp, phantoms12, capsys, tmp_path):
    import os
    import shutil

    from tests.conftest import run_cli

    def link_weights(src: str, dst: str) -> None:  # medtl replaces the files it writes
        if src.endswith((".pt", ".ckpt")):
            os.link(src, dst)  # hundreds of MB of weights, only read here
        else:
            shutil.copy2(src, dst)

    # keeps mtimes (a hard link shares them); the fixture stays as it is
    cmp = shutil.copytree(cmp, tmp_path / "copy", copy_function=link_weights)
    files = [p for p in (cmp / "cells").rglob("*") if p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in files}
    cells = ["--cell", "model.strategy=frozen", "--cell", "model.strategy=finetune"]
    code, out, _ = run_cli(
        capsys, "compare", *base(phantoms12), *cells, "--folds", "2", "--out", str(cmp)
    )
    # the same cells as the key=a,b grid: the same comparison, nothing to train again
    assert code == 0 and out.strip().endswith(str(cmp))
    assert {p: p.stat().st_mtime_ns for p in files} == before
    code, _, err = run_cli(
        capsys, "compare", *base(phantoms12), *GRID, *cells, "--out", str(cmp.parent / "x")
    )
    assert code == 2 and "not both" in err


@pytest.mark.slow
def test_shards_then_collect_equal_unsharded(cmp, phantoms12, tmp_path):
    out = tmp_path / "sharded"
    compare(base(phantoms12), GRID, folds=2, out=out, shard=(1, 2))
    design = json.loads((out / "compare.json").read_text())
    first, second = (c["id"] for c in design["cells"])
    assert (out / "cells" / first / "fold1" / "model.pt").is_file()
    assert not (out / "cells" / second).exists()
    assert not (out / "results.json").exists()
    partial = collect(out, quiet=True)
    assert [c["cell"] for c in partial["configs"]] == [first]
    assert partial["incomplete"][0]["cell"] == second

    compare(base(phantoms12), GRID, folds=2, out=out, shard=(2, 2))
    merged = collect(out, quiet=True)
    unsharded = json.loads((cmp / "results.json").read_text())
    assert without_timing(merged) == without_timing(unsharded)
    assert (out / "results.md").read_text().split("| train")[0] == (
        cmp / "results.md"
    ).read_text().split("| train")[0]


def test_interrupted_cell_resumes(cmp, phantoms12):
    design = json.loads((cmp / "compare.json").read_text())
    run = cmp / "cells" / design["cells"][0]["id"] / "fold1"
    before = without_timing(json.loads((cmp / "results.json").read_text()))
    config_mtime = (run / "config.yaml").stat().st_mtime_ns
    (run / "model.pt").unlink()  # as if killed after the last checkpoint
    (run / "eval" / "val" / "summary.json").unlink()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    compare(base(phantoms12), GRID, folds=2, out=cmp)
    assert (run / "model.pt").is_file()
    assert (run / "config.yaml").stat().st_mtime_ns == config_mtime  # same folder, resumed
    assert len(list(csv.DictReader((run / "metrics.csv").open()))) == 1
    assert without_timing(json.loads((cmp / "results.json").read_text())) == before


# ----------------------------------------------------------------------------- classification statistics
def _fake_run(run: Path, rows: list[dict], summary: dict) -> None:
    """A finished run folder as compare leaves it (model.pt only needs to exist)."""
    ev = run / "eval" / "val"
    ev.mkdir(parents=True)
    (run / "model.pt").write_bytes(b"")
    (ev / "summary.json").write_text(json.dumps(summary))
    with (ev / "per_image.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (run / "metrics.csv").write_text("epoch,epoch_time_s,val_score\n0,1.5,0.5\n1,2.5,0.6\n")


def test_collect_classification_three_folds(tmp_path):
    from medtl.metrics import classification_scores

    classes = ["a", "b"]
    rng = np.random.default_rng(1)
    truth = {f"/d/img{i}.png": classes[i % 2] for i in range(12)}
    folds = [list(truth)[f::3] for f in range(3)]
    cells = [{"id": "good", "overrides": ["x=1"]}, {"id": "bad", "overrides": ["x=2"]}]
    design = {
        "format": "medtl-compare-1",
        "base_overrides": [],
        "grid": ["x=1,2"],
        "folds": 3,
        "eval_split": "val",
        "seed": 0,
        "task": "classification",
        "cells": cells,
    }
    (tmp_path / "compare.json").write_text(json.dumps(design))
    probs = {}
    for cell, noise in (("good", 0.2), ("bad", 0.9)):
        for f, images in enumerate(folds):
            rows = []
            for img in images:
                p_b = float(np.clip((truth[img] == "b") + rng.normal(0, noise), 0.01, 0.99))
                probs[(cell, img)] = p_b
                rows.append(
                    {
                        "image": img,
                        "class": truth[img],
                        "prediction": classes[int(p_b > 0.5)],
                        "p_a": 1 - p_b,
                        "p_b": p_b,
                    }
                )
            y = np.array([classes.index(r["class"]) for r in rows])
            p = np.array([[r["p_a"], r["p_b"]] for r in rows])
            summary = {
                "split": "val",
                "n_images": len(rows),
                "classification": classification_scores(y, p, classes),
            }
            _fake_run(tmp_path / "cells" / cell / f"fold{f}", rows, summary)
    res = collect(tmp_path, quiet=True)
    assert res["primary"] == "macro_f1" and res["paired_metric"] == "accuracy"
    # numbers pinned from the BCa intervals of scipy.stats.bootstrap (seed 0); they replaced
    # the percentile intervals of the hand-written bootstrap
    bad = next(c for c in res["configs"] if c["cell"] == "bad")
    ci = {m: [bad["metrics"][m]["images"][k] for k in ("ci_low", "ci_high")] for m in CLS}
    assert ci == {
        "accuracy": [0.5, 1.0],
        "macro_f1": [0.5804195804195804, 1.0],
        "auroc": [0.4375, 1.0],
    }
    assert [bad["metrics"][m]["folds"]["ci_low"] for m in CLS] == [0.75, 0.7333333333333334, 0.625]
    # 12 image pairs, 3 fold pairs: no bootstrap p below 20 pairs (it gave 0.238 and an
    # anti-conservative 0.038 for the folds); exact sign-flip and Wilcoxon p instead
    assert bad["vs_best"]["images"]["p_bootstrap"] is None
    assert bad["vs_best"]["folds"]["p_bootstrap"] is None
    assert bad["vs_best"]["images"]["p_permutation"] == 0.5
    assert bad["vs_best"]["folds"]["p_permutation"] == 0.5
    assert bad["vs_best"]["folds"]["p_wilcoxon"] == 0.5
    assert bad["vs_best"]["folds"]["p_permutation_holm"] == 0.5  # one comparison: unchanged
    assert bad["vs_best"]["folds"]["mean_diff"] == -0.17777777777777773
    # write=False: the same dict, nothing written
    written = {n: (tmp_path / n).read_text() for n in ("results.json", "results.csv", "results.md")}
    for name in written:
        (tmp_path / name).unlink()
    assert collect(tmp_path, quiet=True, write=False) == res
    assert not any((tmp_path / name).exists() for name in written)
    for name, text in written.items():
        (tmp_path / name).write_text(text)
    good = next(c for c in res["configs"] if c["cell"] == "good")
    images = list(truth)
    y = np.array([classes.index(truth[i]) for i in images])
    p = np.array([[1 - probs[("good", i)], probs[("good", i)]] for i in images])
    pooled = classification_scores(y, p, classes)
    assert good["metrics"]["macro_f1"]["images"]["mean"] == pytest.approx(pooled["macro_avg"]["f1"])
    assert good["metrics"]["accuracy"]["images"]["mean"] == pytest.approx(pooled["accuracy"])
    assert good["metrics"]["auroc"]["images"]["mean"] == pytest.approx(pooled["auroc_macro"])
    assert good["confusion_matrix"] == pooled["confusion_matrix"]
    assert len(good["metrics"]["macro_f1"]["folds"]["values"]) == 3
    assert good["timing"]["train_s"] == pytest.approx(4.0)
    ranked = [c["cell"] for c in res["configs"]]
    assert ranked[0] == max(res["configs"], key=lambda c: c["primary"])["cell"]
    second = res["configs"][1]
    assert second["vs_best"]["folds"] is not None  # >= 3 folds: per-fold paired tests too
    assert second["vs_best"]["folds"]["n"] == 3
    assert 0 < second["vs_best"]["folds"]["p_permutation"] <= 1
    md = (tmp_path / "results.md").read_text()
    assert "p folds Wilcoxon (Holm)" in md and "Holm step-down" in md
    assert "2/2^3 = 0.25" in md  # the smallest attainable fold p is stated

    from medtl.reporting import write_report  # the classification page: table + confusion matrix

    text = write_report(tmp_path).read_text()
    assert "Confusion matrix of the best configuration" in text and "macro-F1" in text
