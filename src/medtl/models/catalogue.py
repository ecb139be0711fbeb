"""The catalogue ``medtl models`` prints: every registered encoder (parameters, channels,
input normalisation, whether its ImageNet weights are on disk) and the decoders."""

from __future__ import annotations

__all__ = ["models_table"]


def models_table() -> str:
    """Text table of every encoder (params, channels, normalisation, weights on disk) and decoder."""
    from medtl.models.build import ARCHS
    from medtl.models.encoders import describe_encoders

    rows = describe_encoders()
    head = f"{'encoder':20s} {'params':>8s}  {'channels':32s} {'mean/std':12s} {'on disk':8s} pretrained file"
    lines = [head, "-" * len(head)]
    for r in rows:
        mean = (
            "imagenet"
            if tuple(round(m, 3) for m in r["mean"]) == (0.485, 0.456, 0.406)
            else "other"
        )
        lines.append(
            f"{r['name']:20s} {r['params'] / 1e6:7.1f}M  {str(tuple(r['channels'])):32s} {mean:12s} "
            f"{'yes' if r['weights_on_disk'] else 'no':8s} {r.get('weights_file') or '-'}"
        )
    lines.append("")
    lines.append("decoders (model.arch): " + ", ".join(ARCHS))
    lines.append("any timm model: model.encoder=tu-<timm name> (weights from timm's cache)")
    return "\n".join(lines)
