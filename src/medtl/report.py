"""``medtl report DIR``: one self-contained HTML page for a run or a comparison folder.

The page has inline CSS and every figure embedded as a base64 PNG, so it can be mailed,
archived or opened offline; it never references anything outside itself.

Example::

    from medtl.report import write_report
    write_report(Path("cmp"))      # -> cmp/report.html ("Which configuration is best?")
    write_report(Path("runs/seg-unet-resnet18-finetune-20250101-120000"))
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medtl import plots
from medtl.errors import MedtlError
from medtl.io_utils import atomic_write_text, read_csv

REPORT = "report.html"
CHROMIUM = Path("/usr/bin/chromium")

CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d8dee4; --zebra:#f6f8fa; --head:#eef1f4;
        --accent:#0969da; --answer:#eef6ff; --good:#1a7f37; }
* { box-sizing: border-box; }
body { margin:0; background:#fff; color:var(--fg); line-height:1.5; font-size:15px;
       font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width:1120px; margin:0 auto; padding:28px 32px 64px; }
header { border-bottom:1px solid var(--line); padding-bottom:14px; }
.kicker { text-transform:uppercase; letter-spacing:.07em; font-size:12px; color:var(--muted); }
h1 { font-size:28px; line-height:1.25; margin:4px 0 8px; }
h2 { font-size:20px; margin:36px 0 10px; padding-bottom:4px; border-bottom:1px solid var(--line); }
h3 { font-size:16px; margin:22px 0 6px; }
.sub { color:var(--muted); margin:0; }
.answer { font-size:16.5px; background:var(--answer); border-left:4px solid var(--accent);
          padding:12px 16px; border-radius:4px; margin:16px 0 0; }
.scroll { overflow-x:auto; }
table { border-collapse:collapse; width:auto; min-width:55%; font-size:13.5px; margin:10px 0; }
table.wide { width:100%; }
th, td { padding:6px 9px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { background:var(--head); font-weight:600; white-space:nowrap; }
tbody tr:nth-child(even) { background:var(--zebra); }
.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr.best td { font-weight:600; }
.ci { color:var(--muted); font-size:12px; }
.sig { color:var(--good); font-weight:600; }
.note, figcaption { color:var(--muted); font-size:13px; }
figure { margin:14px 0; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); border-radius:4px; }
.grid { display:grid; grid-template-columns:repeat(auto-fit, minmax(420px, 1fr)); gap:14px; }
dl.kv { display:grid; grid-template-columns:max-content 1fr; gap:3px 18px; margin:8px 0; }
dl.kv dt { color:var(--muted); } dl.kv dd { margin:0; overflow-wrap:anywhere; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size:12.5px; }
pre { background:var(--zebra); padding:12px; border-radius:4px; overflow-x:auto; }
details { margin:10px 0; } summary { cursor:pointer; color:var(--accent); }
footer { margin-top:48px; color:var(--muted); font-size:12px; border-top:1px solid var(--line);
         padding-top:10px; }
"""


# ----------------------------------------------------------------------------- html helpers
def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 3) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    return f"{v:.{digits}f}" if math.isfinite(v) else "–"


def _p(value: Any, mark: bool = True) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(v):
        return "–"
    text = "&lt;0.001" if v < 0.001 else f"{v:.3f}"
    return f'<span class="sig">{text}</span>' if v < 0.05 and mark else text


def table(
    head: Sequence[str],
    rows: Sequence[Sequence[str]],
    numeric: Sequence[int] = (),
    row_classes: Sequence[str] | None = None,
    wide: bool = False,
) -> str:
    """An HTML table; cells are already-escaped HTML; ``numeric`` columns are right-aligned."""
    num = set(numeric)

    def cls(i: int) -> str:
        return ' class="num"' if i in num else ""

    tag = '<table class="wide">' if wide else "<table>"
    out = [f'<div class="scroll">{tag}<thead><tr>']
    out += [f"<th{cls(i)}>{h}</th>" for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for r, row in enumerate(rows):
        rc = row_classes[r] if row_classes else ""
        out.append(f'<tr class="{rc}">' if rc else "<tr>")
        out += [f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row)]
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def png_bytes(fig: Any) -> bytes:
    """A matplotlib Figure as PNG bytes (the figure is cleared afterwards)."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=plots.DPI)
    finally:
        fig.clear()
    return buf.getvalue()


def img(data: bytes, alt: str, caption: str = "") -> str:
    """``<figure>`` with the PNG embedded as a data URI."""
    b64 = base64.b64encode(data).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{b64}">{cap}</figure>'


def kv(pairs: Sequence[tuple[str, Any]]) -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in pairs)
    return f'<dl class="kv">{items}</dl>'


def page(kicker: str, title: str, subtitle: str, answer: str, body: Sequence[str]) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
        f'<header><div class="kicker">{esc(kicker)}</div><h1>{esc(title)}</h1>'
        f'<p class="sub">{subtitle}</p><div class="answer">{answer}</div></header>'
        + "\n".join(body)
        + f"<footer>Written by medtl on {stamp}. Self-contained: figures are embedded; "
        "nothing is loaded from outside this file.</footer></main></body></html>\n"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# ----------------------------------------------------------------------------- entry points
def write_report(path: Path) -> Path:
    """Write ``DIR/report.html`` for a run folder or a comparison folder; returns its path."""
    path = Path(path)
    if (path / "compare.json").is_file():
        text = comparison_html(path)
    elif (path / "config.yaml").is_file():
        text = run_html(path)
    else:
        raise MedtlError(
            f"{path} is neither a run folder (config.yaml) nor a comparison folder "
            "(compare.json); give the folder 'medtl train' or 'medtl compare' wrote"
        )
    return atomic_write_text(path / REPORT, text)


def render_screenshot(
    html_file: Path, png: Path, timeout: float = 90.0, height: int = 2000
) -> bool:
    """Render ``html_file`` with headless Chromium into ``png`` (1280 px wide); True if written.

    Returns False when ``/usr/bin/chromium`` is absent or fails. Networking features are
    switched off, so the screenshot also shows that the page needs nothing from outside.
    """
    if not CHROMIUM.is_file():
        return False
    png = Path(png).absolute()
    png.parent.mkdir(parents=True, exist_ok=True)
    if png.exists():
        png.unlink()
    profile = tempfile.mkdtemp(prefix="medtl-chromium-")
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--screenshot={png}",
        f"--window-size=1280,{height}",
        Path(html_file).absolute().as_uri(),
    ]
    try:
        subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return png.is_file() and png.stat().st_size > 0


# ----------------------------------------------------------------------------- run report
def _split_table(splits: dict[str, Any]) -> str:
    names = [n for n in ("train", "val", "test") if splits.get(n)]
    classes = sorted({e.get("label") or "-" for n in names for e in splits[n]})
    rows = []
    for c in classes:
        rows.append(
            [esc(c)] + [str(sum((e.get("label") or "-") == c for e in splits[n])) for n in names]
        )
    rows.append(["<b>all</b>"] + [f"<b>{len(splits[n])}</b>" for n in names])
    return table(["class"] + names, rows, numeric=range(1, len(names) + 1))


def _log_lines(run: Path) -> dict[str, str]:
    """The data summary, split, model and finish lines of train.log (last of each kind)."""
    found: dict[str, str] = {}
    path = run / "train.log"
    if not path.is_file():
        return found
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        msg = line.split(" INFO ", 1)[-1]
        if ": layout=" in msg:
            found["data"] = msg
        elif msg.startswith("split: "):
            found["split"] = msg[7:]
        elif msg.startswith("model: "):
            found["model"] = msg[7:]
        elif msg.startswith("finished in"):
            found["finished"] = msg
    return found


def _seg_metric_table(seg: dict[str, Any]) -> str:
    rows = []
    for k in ("dice", "iou", "precision", "recall", "hd95"):
        a = seg.get(k)
        if not a:
            continue
        rows.append(
            [
                esc(k if k != "hd95" else "HD95 (px)"),
                _num(a.get("mean")),
                _num(a.get("std")),
                _num(a.get("median")),
                f"{_num(a.get('ci_low'))} – {_num(a.get('ci_high'))}",
                str(a.get("n", "")),
            ]
        )
    return table(["metric", "mean", "std", "median", "95% CI", "n"], rows, numeric=range(1, 6))


def _cls_metric_tables(cls: dict[str, Any]) -> str:
    top = [
        ["accuracy", _num(cls.get("accuracy"))],
        ["balanced accuracy", _num(cls.get("balanced_accuracy"))],
        ["macro F1", _num((cls.get("macro_avg") or {}).get("f1"))],
        ["AUROC (macro)", _num(cls.get("auroc_macro"))],
    ]
    per = [
        [
            esc(c),
            _num(v.get("precision")),
            _num(v.get("recall")),
            _num(v.get("f1")),
            str(v.get("support", "")),
            _num(v.get("auroc")),
        ]
        for c, v in (cls.get("per_class") or {}).items()
    ]
    return table(["metric", "value"], top, numeric=[1]) + table(
        ["class", "precision", "recall", "F1", "support", "AUROC"], per, numeric=range(1, 6)
    )


def _headline(summary: dict[str, Any]) -> str:
    parts = []
    seg = (summary.get("segmentation") or {}).get("dice")
    if seg:
        parts.append(
            f"Dice <b>{_num(seg['mean'])}</b> ± {_num(seg['std'])} "
            f"(95% CI {_num(seg['ci_low'])}–{_num(seg['ci_high'])})"
        )
    cls = summary.get("classification")
    if cls:
        parts.append(
            f"accuracy <b>{_num(cls['accuracy'])}</b>, macro-F1 <b>{_num(cls['macro_avg']['f1'])}</b>, "
            f"AUROC {_num(cls.get('auroc_macro'))}"
        )
    return (
        "; ".join(parts)
        + f" on {summary.get('n_images', '?')} {esc(summary.get('split', ''))} images"
    )


def _file_or(path: Path, make: Any) -> bytes | None:
    """The PNG at ``path`` if evaluate wrote one, else ``make()`` (None when impossible)."""
    if path.is_file():
        return path.read_bytes()
    try:
        return make()
    except Exception:  # a figure that cannot be drawn from what is there is left out
        return None


def _eval_section(run: Path, split_dir: Path, classes: list[str]) -> str:
    summary = _read_json(split_dir / "summary.json")
    split = summary.get("split", split_dir.name)
    rows = read_csv(split_dir / "per_image.csv")
    out = [f"<h3>{esc(split)} ({summary.get('n_images', len(rows))} images)</h3>"]
    if summary.get("segmentation"):
        out.append(_seg_metric_table(summary["segmentation"]))
        if summary.get("empty_mask_rule"):
            out.append(f'<p class="note">Empty masks: {esc(summary["empty_mask_rule"])}</p>')
    if summary.get("classification"):
        out.append(_cls_metric_tables(summary["classification"]))
    figs = []
    cls = summary.get("classification")
    if cls and cls.get("confusion_matrix"):
        names = cls.get("classes") or classes
        data = _file_or(
            split_dir / "confusion_matrix.png",
            lambda: png_bytes(plots.confusion_matrix_figure(cls["confusion_matrix"], names)),
        )
        if data:
            figs.append(img(data, "confusion matrix", "Confusion matrix (rows: true class)"))
        if rows and names and all(f"p_{c}" in rows[0] for c in names):
            known = [r for r in rows if r.get("class") in names]
            y = np.array([names.index(r["class"]) for r in known])
            p = np.array([[_float(r[f"p_{c}"]) for c in names] for r in known])
            if len(set(y.tolist())) >= 2:
                data = _file_or(
                    split_dir / "roc.png", lambda: png_bytes(plots.roc_figure(y, p, names))
                )
                if data:
                    figs.append(img(data, "ROC curves", "One-vs-rest ROC curves"))
    if summary.get("segmentation") and rows:
        dice = [_float(r.get("dice")) for r in rows]
        data = _file_or(
            split_dir / "dice_histogram.png", lambda: png_bytes(plots.dice_histogram_figure(dice))
        )
        if data:
            figs.append(img(data, "Dice histogram", "Per-image Dice"))
        data = _file_or(
            split_dir / "overlays_grid.png",
            lambda: _overlay_grid_from_files(rows, [split_dir] * len(rows), split),
        )
        if data:
            out.append('<div class="grid">' + "".join(figs) + "</div>")
            figs = []
            out.append(
                img(
                    data,
                    "overlays",
                    "Best, median and worst cases: prediction in red, "
                    "ground-truth outline in green",
                )
            )
    if figs:
        out.append('<div class="grid">' + "".join(figs) + "</div>")
    return "\n".join(out)


def _mask_png(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    return np.asarray(Image.open(path).convert("L")) > 127


def _case_image(row: dict[str, str], split_dir: Path) -> np.ndarray | None:
    """The saved overlay of one evaluated image, or one composed from its predicted mask."""
    from medtl.inference import overlay, safe_name

    stem = Path(row["image"]).stem
    name = safe_name(f"{row['class'] + '_' if row.get('class') else ''}{stem}")
    saved = split_dir / "overlays" / f"{name}.png"
    if saved.is_file():
        return np.asarray(Image.open(saved).convert("RGB"))
    pred = _mask_png(split_dir / "predictions" / f"{name}_pred.png")
    if pred is None or not Path(row["image"]).is_file():
        return None
    from medtl.data.io import read_image

    image = read_image(row["image"])
    if image.shape[:2] != pred.shape:
        return None
    return overlay(image, pred, None)


def _overlay_grid_from_files(
    rows: list[dict[str, str]],
    dirs: list[Path],
    title: str,
    groups: Sequence[str] = ("best", "median", "worst"),
) -> bytes | None:
    dice = [_float(r.get("dice")) for r in rows]
    picked = plots.select_cases(dice, k=4)
    items = []
    for group in groups:
        for i in picked[group]:
            image = _case_image(rows[i], dirs[i])
            if image is not None:
                items.append((f"{group}: {Path(rows[i]['image']).stem} Dice {dice[i]:.2f}", image))
    if not items:
        return None
    return png_bytes(plots.overlay_grid_figure(items, ncols=4, title=title))


def run_html(run: Path) -> str:
    """The HTML page of one run folder."""
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
    model, data_cfg, train_cfg = cfg.get("model", {}), cfg.get("data", {}), cfg.get("train", {})
    splits = _read_json(run / "splits.json")
    lines = _log_lines(run)
    eval_dirs = (
        sorted(d for d in (run / "eval").glob("*") if (d / "summary.json").is_file())
        if (run / "eval").is_dir()
        else []
    )
    order = {"test": 0, "external": 1, "val": 2}
    eval_dirs.sort(key=lambda d: (order.get(d.name, 3), d.name))
    classes = list(splits.get("classes") or [])
    task = cfg.get("task", "?")
    subtitle = esc(
        f"task {task} · {model.get('arch')} decoder · {model.get('encoder')} encoder "
        f"({model.get('weights')} weights, {model.get('strategy')}) · {data_cfg.get('image_size')} px · "
        f"{train_cfg.get('epochs')} epochs"
    )
    if eval_dirs:
        answer = (
            "How good is this model? " + _headline(_read_json(eval_dirs[0] / "summary.json")) + "."
        )
    else:
        answer = f"Not evaluated yet: run <code>medtl evaluate {esc(run)}</code> for metrics."
    body = ["<h2>Results</h2>"]
    body += [_eval_section(run, d, classes) for d in eval_dirs] or [
        '<p class="note">No evaluation found under eval/.</p>'
    ]

    body.append("<h2>Data</h2>")
    pairs = [
        ("data", esc(data_cfg.get("root"))),
        ("layout", esc(splits.get("layout", data_cfg.get("layout")))),
    ]
    if lines.get("data"):
        pairs.append(("found", esc(lines["data"].split(": ", 1)[-1])))
    if classes:
        pairs.append(("classes", esc(", ".join(classes))))
    pairs.append(("split seed", esc(splits.get("seed", data_cfg.get("seed")))))
    body.append(kv(pairs))
    if any(splits.get(n) for n in ("train", "val", "test")):
        body.append(_split_table(splits))
        body.append(
            '<p class="note">Images per class and split (grouped: duplicates and '
            "same-patient images never straddle splits).</p>"
        )

    body.append("<h2>Training</h2>")
    history = read_csv(run / "metrics.csv")
    pairs = []
    if lines.get("model"):
        pairs.append(("model", esc(lines["model"])))
    pairs.append(
        (
            "optimiser",
            esc(
                f"{train_cfg.get('optimizer')}, lr {train_cfg.get('lr')}, "
                f"{train_cfg.get('scheduler')} schedule, batch {train_cfg.get('batch_size')}"
            ),
        )
    )
    pairs.append(
        (
            "loss",
            esc(train_cfg.get("loss") if task != "classification" else train_cfg.get("cls_loss")),
        )
    )
    if history:
        total = sum(_float(r.get("epoch_time_s")) for r in history)
        pairs.append(("epochs run", f"{len(history)} ({_num(total, 1)} s of training)"))
    if lines.get("finished"):
        pairs.append(("result", esc(lines["finished"])))
    body.append(kv(pairs))
    if history:
        body.append(
            img(
                png_bytes(plots.learning_curves_figure(history)),
                "learning curves",
                "Loss (left) and validation metrics (right) per epoch",
            )
        )

    body.append("<h2>Configuration</h2>")
    body.append(
        f"<details><summary>config.yaml (re-runnable as is)</summary><pre>{esc((run / 'config.yaml').read_text(encoding='utf-8'))}</pre></details>"
    )
    env = _read_json(run / "env.json")
    if env:
        env.pop("argv", None)
        body.append(
            "<details><summary>environment (env.json)</summary>"
            + kv([(k, esc(v)) for k, v in env.items()])
            + "</details>"
        )
    title = f"{run.parent.name}/{run.name}" if run.name.startswith("fold") else run.name
    return page("medtl run report", title, subtitle, answer, body)


# ----------------------------------------------------------------------------- comparison report
def _results_table(results: dict[str, Any]) -> str:
    from medtl.compare import METRIC_NAMES, fmt_stat, shown_metrics

    folds = results["folds"]
    names = shown_metrics(results["task"])
    paired = METRIC_NAMES[results["paired_metric"]]

    def stat(s: dict[str, Any] | None) -> str:
        return fmt_stat(s, _num, lambda lo, hi: f'<br><span class="ci">[{lo}, {hi}]</span>')

    head = ["#", "configuration"]
    for i, m in enumerate(names):
        head.append(f"{METRIC_NAMES[m]}<br><span class='ci'>images</span>")
        if folds and i == 0:
            head.append(f"{METRIC_NAMES[m]}<br><span class='ci'>{folds} folds</span>")
    head += [
        f"Δ {paired}<br><span class='ci'>vs best</span>",
        "p images<br><span class='ci'>bootstrap · Wilcoxon</span>",
    ]
    if folds >= 3:
        head += ["p folds<br><span class='ci'>bootstrap · Wilcoxon</span>"]
    rows, classes = [], []
    for c in results["configs"]:
        row = [str(c["rank"]), f"<code>{esc(c['configuration'])}</code>"]
        for i, m in enumerate(names):
            row.append(stat(c["metrics"][m]["images"]))
            if folds and i == 0:
                row.append(stat(c["metrics"][m]["folds"]))
        vs = c.get("vs_best")
        if vs is None:
            row += ["best", ""] + ([""] if folds >= 3 else [])
        else:
            im = vs["images"]
            row += [
                f"{_float(im['mean_diff']):+.3f}",
                f"{_p(im['p_bootstrap'])} · {_p(im['p_wilcoxon'])}",
            ]
            if folds >= 3:
                fo = vs.get("folds") or {}
                row.append(  # few folds: no green mark, see the note under the table
                    f"{_p(fo.get('p_bootstrap'), mark=False)} · {_p(fo.get('p_wilcoxon'), mark=False)}"
                )
        rows.append(row)
        classes.append("best" if c["rank"] == 1 else "")
    numeric = [0] + list(range(2, len(head)))
    return table(head, rows, numeric=numeric, row_classes=classes, wide=True)


def _cost_table(results: dict[str, Any]) -> str:
    rows = []
    for c in results["configs"]:
        t = c.get("timing") or {}
        per_fold = t.get("train_s_per_fold") or []
        rows.append(
            [
                f"<code>{esc(c['configuration'])}</code>",
                _num(t.get("train_s"), 1),
                _num(sum(_float(v) for v in per_fold), 1) if per_fold else "–",
                ", ".join(str(e) for e in c.get("epochs") or []) or "–",
                _num(t.get("infer_img_per_s"), 1),
            ]
        )
    head = ["configuration", "train s per fold", "train s total", "epochs run", "img/s (CPU)"]
    return table(head, rows, numeric=range(1, 5))


def _answer(results: dict[str, Any]) -> str:
    from medtl.compare import METRIC_NAMES

    configs = results["configs"]
    best = configs[0]
    metric = METRIC_NAMES[results["primary"]]
    s = best["metrics"][results["primary"]]["images"]
    ci = ""
    if s.get("ci_low") is not None and math.isfinite(_float(s.get("ci_low"))):
        ci = f" (95% CI {_num(s['ci_low'])}–{_num(s['ci_high'])})"
    folds = results["folds"]
    where = f"{best['n_images']} held-out images" + (f" over {folds} folds" if folds else "")
    text = (
        f"<b><code>{esc(best['configuration'])}</code></b> ranks first: {metric} "
        f"<b>{_num(s['mean'])}</b>{ci} on {where}."
    )
    if len(configs) > 1:
        second = configs[1]
        vs = second["vs_best"]["images"]
        p = _float(vs["p_bootstrap"])
        paired = METRIC_NAMES[results["paired_metric"]]
        diff = f"Δ {paired} {_float(vs['mean_diff']):+.3f}, paired bootstrap p = {_p(p)}"
        if math.isfinite(p) and p < 0.05:
            text += (
                f" It is significantly better than the runner-up "
                f"<code>{esc(second['configuration'])}</code> ({diff})."
            )
        else:
            text += (
                f" The runner-up <code>{esc(second['configuration'])}</code> is not "
                f"significantly worse ({diff}): on this data the difference may be chance."
            )
    return text


def _summary_figure(results: dict[str, Any]) -> bytes:
    """Primary metric per configuration: pooled mean with its 95% CI, fold means as dots."""
    from medtl.compare import METRIC_NAMES

    configs = results["configs"]
    primary = results["primary"]
    fig = plots._new_figure(9.5, 0.45 * len(configs) + 1.5)
    ax = fig.subplots()
    for y, c in enumerate(configs):
        s = c["metrics"][primary]
        mean = _float(s["images"]["mean"])
        lo, hi = _float(s["images"].get("ci_low")), _float(s["images"].get("ci_high"))
        colour = plots.PALETTE[2] if y == 0 else plots.PALETTE[0]
        if math.isfinite(lo):
            ax.plot([lo, hi], [y, y], color=colour, linewidth=3, alpha=0.55, solid_capstyle="round")
        ax.plot(
            [mean],
            [y],
            "o",
            color=colour,
            markersize=8,
            label="pooled mean (95% CI)" if y == 0 else None,
        )
        fold_vals = [v for v in s["folds"]["values"] if v is not None and math.isfinite(_float(v))]
        if results["folds"] and fold_vals:
            ax.plot(
                fold_vals,
                [y] * len(fold_vals),
                "|",
                color="#333333",
                markersize=12,
                label="fold means" if y == 0 else None,
            )
    ax.set_yticks(range(len(configs)), labels=[c["configuration"][:60] for c in configs])
    ax.set_ylim(len(configs) - 0.4, -0.6)  # best on top
    ax.set_xlabel(METRIC_NAMES[primary])
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"{METRIC_NAMES[primary]} by configuration (best on top)")
    return png_bytes(fig)


def _per_image_figure(results: dict[str, Any], per_image: dict[str, list[float]]) -> bytes:
    configs = results["configs"]
    fig = plots._new_figure(8.5, 0.55 * len(configs) + 1.6)
    ax = fig.subplots()
    data = [np.asarray([v for v in per_image[c["cell"]] if math.isfinite(v)]) for c in configs]
    ax.boxplot(
        data,
        vert=False,
        widths=0.55,
        showmeans=True,
        medianprops={"color": plots.PALETTE[1]},
        meanprops={"marker": "D", "markerfacecolor": plots.PALETTE[2], "markeredgecolor": "none"},
    )
    rng = np.random.default_rng(0)
    for y, v in enumerate(data, 1):
        ax.plot(
            v, y + rng.uniform(-0.12, 0.12, v.size), ".", color="#555555", alpha=0.35, markersize=4
        )
    ax.set_yticks(range(1, len(configs) + 1), labels=[c["configuration"][:60] for c in configs])
    ax.invert_yaxis()
    ax.set_xlabel("per-image Dice")
    ax.set_xlim(-0.02, 1.02)
    ax.grid(alpha=0.3, axis="x")
    ax.set_title("Per-image Dice of every held-out image\n(box: quartiles, diamond: mean)")
    return png_bytes(fig)


def _curves_figure(
    results: dict[str, Any], histories: dict[str, list[list[dict[str, str]]]]
) -> bytes | None:
    """Train loss and validation score per epoch, one line per configuration (mean over folds)."""
    fig = plots._new_figure(11, 4.0)
    ax_loss, ax_score = fig.subplots(1, 2)
    drawn = False
    for i, c in enumerate(results["configs"]):
        colour = plots.PALETTE[i % len(plots.PALETTE)]
        for ax, col in ((ax_loss, "train_loss"), (ax_score, "val_score")):
            by_epoch: dict[int, list[float]] = {}
            for rows in histories[c["cell"]]:
                for r in rows:
                    v = _float(r.get(col))
                    if math.isfinite(v):
                        by_epoch.setdefault(int(_float(r.get("epoch"))), []).append(v)
            if by_epoch:
                x = sorted(by_epoch)
                ax.plot(
                    x,
                    [np.mean(by_epoch[e]) for e in x],
                    "-o",
                    markersize=3,
                    color=colour,
                    label=c["configuration"][:50],
                )
                drawn = True
    if not drawn:
        fig.clear()
        return None
    for ax, title in (
        (ax_loss, "Training loss"),
        (ax_score, "Validation score (monitored metric)"),
    ):
        if not ax.lines:
            plots._note(ax, "not recorded in metrics.csv")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax_score.legend(fontsize=8, loc="best")
    fig.suptitle("Learning curves, mean over folds")
    return png_bytes(fig)


def comparison_html(out: Path) -> str:
    """The HTML page of a comparison folder (collects the results first when needed)."""
    from medtl.compare import METRIC_NAMES, collect, read_design

    design = read_design(out)
    results = _read_json(out / "results.json")
    if not results.get("configs") or len(results["configs"]) + len(
        results.get("incomplete", [])
    ) != len(design["cells"]):
        results = collect(out, quiet=True)
    split, folds = results["eval_split"], results["folds"]
    # per-config per-image rows (with the fold folder they come from) and histories
    per_image: dict[str, list[float]] = {}
    rows_of: dict[str, tuple[list[dict[str, str]], list[Path]]] = {}
    histories: dict[str, list[list[dict[str, str]]]] = {}
    for c in results["configs"]:
        rows, dirs, hist = [], [], []
        for rel in c["runs"]:
            run = out / rel
            fold_rows = read_csv(run / "eval" / split / "per_image.csv")
            rows += fold_rows
            dirs += [run / "eval" / split] * len(fold_rows)
            hist.append(read_csv(run / "metrics.csv"))
        rows_of[c["cell"]] = (rows, dirs)
        per_image[c["cell"]] = [_float(r.get("dice")) for r in rows]
        histories[c["cell"]] = hist

    design_text = (
        f"{folds}-fold cross-validation" if folds else f"one shared split, scored on '{split}'"
    )
    subtitle = esc(
        f"{len(results['configs'])} configurations · task {results['task']} · {design_text} · "
        f"data seed {results['seed']} · ranked by {METRIC_NAMES[results['primary']]}"
    )
    body = ["<h2>Results</h2>", _results_table(results)]
    body.append(
        '<p class="note">Each cell: mean ± std, and the 95% bootstrap CI of the mean below it. '
        "<i>images</i> pools every held-out image; <i>folds</i> summarises the per-fold means. "
        f"Δ and p compare each configuration with the best on paired per-image "
        f"{METRIC_NAMES[results['paired_metric']]} (same images, same splits): two-sided paired "
        "bootstrap and Wilcoxon signed-rank"
        + (", and on paired per-fold scores" if folds >= 3 else "")
        + "; p &lt; 0.05 in green. No correction for multiple comparisons"
        + (
            f". With {folds} folds the fold-level tests are weak (the smallest two-sided "
            f"Wilcoxon p is {2 / 2**folds:.3g}; a bootstrap over {folds} values is unreliable)"
            if folds >= 3
            else ""
        )
        + ".</p>"
    )
    if results.get("incomplete"):
        body.append(
            '<p class="note">Not finished (not in the table): '
            + ", ".join(f"<code>{esc(i['configuration'])}</code>" for i in results["incomplete"])
            + "</p>"
        )
    body.append(
        img(
            _summary_figure(results),
            "summary",
            "Best configuration on top; bar: 95% CI of the pooled mean; ticks: fold means.",
        )
    )
    if results["task"] != "classification":
        body.append(img(_per_image_figure(results, per_image), "per-image Dice"))

    best = results["configs"][0]
    if results["task"] != "classification":
        rows, dirs = rows_of[best["cell"]]
        data = _overlay_grid_from_files(
            rows,
            dirs,
            f"Best configuration: {best['configuration'][:60]}",
            groups=("best", "worst"),
        )
        if data:
            body.append("<h2>Best and worst cases of the best configuration</h2>")
            body.append(
                img(
                    data,
                    "best and worst cases",
                    "Prediction in red, ground-truth outline "
                    "in green (when the overlay was saved by evaluate).",
                )
            )
    if best.get("confusion_matrix"):
        body.append("<h2>Confusion matrix of the best configuration</h2>")
        body.append(
            img(
                png_bytes(plots.confusion_matrix_figure(best["confusion_matrix"], best["classes"])),
                "confusion matrix",
                "All held-out images pooled over folds (rows: true class).",
            )
        )

    body.append("<h2>Learning curves</h2>")
    curves = _curves_figure(results, histories)
    if curves:
        body.append(img(curves, "learning curves per configuration"))
    for c in results["configs"][:12]:
        hist = histories[c["cell"]]
        if hist and hist[0]:
            body.append(
                f"<details><summary>{esc(c['configuration'])}: fold 0 in detail</summary>"
                + img(png_bytes(plots.learning_curves_figure(hist[0])), "learning curves")
                + "</details>"
            )

    body.append("<h2>Cost</h2>")
    body.append(_cost_table(results))
    body.append(
        '<p class="note">Training seconds summed from each run\'s metrics.csv; inference: '
        "images per second of a forward pass on this machine's CPU at the training batch size."
        "</p>"
    )
    body.append("<h2>Design</h2>")
    body.append(
        kv(
            [
                (
                    "base overrides",
                    "<code>" + esc(" ".join(results["base_overrides"]) or "–") + "</code>",
                ),
                ("grid", "<code>" + esc(" ".join(results["grid"]) or "–") + "</code>"),
                ("folds", esc(folds or "none (one shared split)")),
                ("scored on", esc(split)),
                ("images", esc(results.get("n_images") or "–")),
                ("data seed", esc(results["seed"])),
                ("folder", esc(out)),
            ]
        )
    )
    body.append(
        '<p class="note">Every configuration is trained on exactly the same folds '
        "(grouped and stratified, so duplicates never straddle a split); its run folders are "
        "under <code>cells/&lt;cell&gt;/fold&lt;k&gt;/</code>.</p>"
    )
    return page(
        "medtl comparison report", "Which configuration is best?", subtitle, _answer(results), body
    )
