"""The benchmark's JSON object and its plain-text table, from raw measurements."""

from __future__ import annotations

from typing import Any

from medtl._bench.measure import epoch_seconds, mfu, ratio

SCHEMA = "medtl.bench/1"
REFERENCE_ENCODER = "resnet18"
STRATEGIES = ("finetune", "frozen")


def _encoder_summary(e: dict[str, Any], n_images: int, peak: float) -> dict[str, Any]:
    """Per-encoder block: both sides' raw numbers, ratios, epoch times, FLOPs and MFU."""
    out: dict[str, Any] = {}
    for strategy in STRATEGIES:
        naive, ours = e.get("naive", {}).get(strategy), e.get("medtl", {}).get(strategy)
        if not naive and not ours:
            continue
        nt = (naive or {}).get("train_img_per_s")
        mt = (ours or {}).get("train_img_per_s")
        flops = (ours or {}).get("train_flops_per_img")
        own_peak = (ours or {}).get("peak_gflops") or peak  # the worker's own probe
        out[strategy] = {
            "naive_train_img_per_s": nt,
            "medtl_train_img_per_s": mt,
            "train_ratio": ratio(mt, nt),
            "naive_epoch_s": epoch_seconds(n_images, nt),
            "medtl_epoch_s": epoch_seconds(n_images, mt),
            "naive_peak_rss_mb": (naive or {}).get("peak_rss_mb"),
            "medtl_peak_rss_mb": (ours or {}).get("peak_rss_mb"),
            "train_flops_per_img": flops,
            "train_mfu": mfu(flops, mt, own_peak),
            "peak_gflops": own_peak,
            "layout": (ours or {}).get("layout"),
            "probe_img_per_s": (ours or {}).get("probe"),
            # frozen: encoder features computed once before the first epoch (None: not cached)
            "feature_cache_s": (ours or {}).get("feature_cache_s"),
        }
    naive_ft = e.get("naive", {}).get("finetune") or {}
    ours_ft = e.get("medtl", {}).get("finetune") or {}
    ni, mi = naive_ft.get("infer_img_per_s"), ours_ft.get("infer_img_per_s")
    iflops = ours_ft.get("infer_flops_per_img")
    out["inference"] = {
        "naive_img_per_s": ni,
        "medtl_img_per_s": mi,
        "ratio": ratio(mi, ni),
        "naive_epoch_s": epoch_seconds(n_images, ni),
        "medtl_epoch_s": epoch_seconds(n_images, mi),
        "variant": ours_ft.get("infer_variant"),
        "variants_img_per_s": ours_ft.get("infer_variants"),
        "infer_flops_per_img": iflops,
        "infer_mfu": mfu(iflops, mi, ours_ft.get("peak_gflops") or peak),
    }
    li = ours_ft.get("loader_img_per_s")
    out["loader"] = {
        "img_per_s": li,
        "vs_train": ratio(li, ours_ft.get("train_img_per_s")),
        "cache_build_s": ours_ft.get("cache_build_s"),
    }
    return out


def summarise(
    results: dict[str, dict[str, Any]],
    peak_gflops: float,
    meta: dict[str, Any],
    reference: str = REFERENCE_ENCODER,
) -> dict[str, Any]:
    """The benchmark's JSON object from raw per-encoder measurements.

    ``results[encoder] = {"naive": {strategy: naive JSON}, "medtl": {strategy: worker JSON}}``
    (strategy ``finetune`` | ``frozen``). The headline keys (``train_speedup``,
    ``frozen_speedup``, ``infer_speedup``, ``loader_vs_train``, ``train_mfu``, ``infer_mfu``)
    are those of ``reference`` (ResNet18-UNet; the first encoder when it is absent);
    ``peak_rss_mb`` is the largest peak RSS of any medtl process in the run.
    """
    n_images = int(meta.get("n_images", 0))
    encoders = {e: _encoder_summary(r, n_images, peak_gflops) for e, r in results.items()}
    ref = reference if reference in encoders else next(iter(encoders), None)
    r = encoders.get(ref, {})
    rss = [
        s.get("peak_rss_mb")
        for res in results.values()
        for s in res.get("medtl", {}).values()
        if s and s.get("peak_rss_mb")
    ]
    naive_rss = [
        s.get("peak_rss_mb")
        for res in results.values()
        for s in res.get("naive", {}).values()
        if s and s.get("peak_rss_mb")
    ]
    return {
        "schema": SCHEMA,
        "reference_encoder": ref,
        "train_speedup": r.get("finetune", {}).get("train_ratio"),
        "frozen_speedup": r.get("frozen", {}).get("train_ratio"),
        "infer_speedup": r.get("inference", {}).get("ratio"),
        "loader_vs_train": r.get("loader", {}).get("vs_train"),
        "peak_rss_mb": max(rss) if rss else None,
        "naive_peak_rss_mb": max(naive_rss) if naive_rss else None,
        "train_mfu": r.get("finetune", {}).get("train_mfu"),
        "infer_mfu": r.get("inference", {}).get("infer_mfu"),
        "matmul_gflops": peak_gflops,
        "encoders": encoders,
        "meta": meta,
    }


def table_rows(summary: dict[str, Any]) -> list[tuple[str, str, Any, Any, Any]]:
    """``(encoder, strategy, naive img/s, medtl img/s, ratio)`` rows of a :func:`summarise` dict."""
    rows = []
    for enc, e in summary["encoders"].items():
        for strategy in STRATEGIES:
            if strategy in e:
                s = e[strategy]
                rows.append(
                    (
                        enc,
                        f"train {strategy}",
                        s["naive_train_img_per_s"],
                        s["medtl_train_img_per_s"],
                        s["train_ratio"],
                    )
                )
        i = e["inference"]
        rows.append((enc, "inference", i["naive_img_per_s"], i["medtl_img_per_s"], i["ratio"]))
    return rows


def format_table(summary: dict[str, Any]) -> str:
    """Plain-text table of :func:`table_rows`."""

    def cell(v: Any) -> str:
        return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    head = ("encoder", "strategy", "naive img/s", "medtl img/s", "ratio")
    rows = [head] + [tuple(cell(v) for v in r) for r in table_rows(summary)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
