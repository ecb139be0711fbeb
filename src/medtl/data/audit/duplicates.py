"""The audit's duplicate sections: exact copies, verified near-duplicates, likely the same
patient, leakage across pre-made splits, and groups above the chaining bound.

Every group lists its files, labels and splits; near and same-patient groups also list
their verified ``pairs`` with the similarity (NCC of the aligned views) and the alignment
that gave it (:mod:`medtl.data.duplicates.verify`). Label conflicts are only raised for
the same image (exact or near): two slices of one patient may carry different labels.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from medtl.data.duplicates.links import Link, find_links, link_groups, oversized
from medtl.data.duplicates.verify import View
from medtl.data.layouts import Sample


def group_info(
    kind: str, idx: list[int], samples: Sequence[Sample], links: Sequence[Link] = ()
) -> dict[str, Any]:
    """One group as plain JSON: ``kind``, ``files``, ``labels``, ``splits``,
    ``label_conflict`` (the same image only), ``cross_split`` and its ``pairs``."""
    labels = sorted({samples[i].label for i in idx if samples[i].label is not None})
    splits = sorted({samples[i].split for i in idx if samples[i].split is not None})
    inside = set(idx)
    pairs = [
        {
            "a": str(samples[x.i].image),
            "b": str(samples[x.j].image),
            "relation": x.relation,
            "similarity": x.similarity,
            "method": x.method,
        }
        for x in links
        if x.i in inside
    ]
    return {
        "kind": kind,
        "files": [str(samples[i].image) for i in idx],
        "labels": labels,
        "splits": splits,
        "label_conflict": len(labels) > 1 and kind in ("exact", "near"),
        "cross_split": len(splits) > 1,
        "pairs": pairs,
    }


def duplicate_sections(
    samples: Sequence[Sample],
    hashes: Sequence[tuple | None],
    views: Sequence[View | None] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """``exact``, ``near``, ``patient``, ``leakage`` and ``large`` groups among the readable
    images (``hashes`` None for the unreadable; ``views`` kept from the same decode);
    leakage also holds the user groups (e.g. patients) that span pre-made splits."""
    links = find_links(samples, hashes, views=views)
    n = len(samples)
    exact_l = [x for x in links if x.kind == "exact"]
    near_l = [x for x in links if x.kind == "near" and x.relation == "same"]
    patient_l = [x for x in links if x.relation == "patient"]
    exact = [group_info("exact", g, samples) for g in link_groups(n, exact_l)]
    near = [
        group_info("near", g, samples, near_l)
        for g in link_groups(n, exact_l + near_l)
        if any(x.i in g for x in near_l)  # not merely one exact group
    ]
    patient = [group_info("patient", g, samples, patient_l) for g in link_groups(n, patient_l)]
    leakage = [g for g in exact + near + patient if g["cross_split"]]
    user_groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        if s.group is not None:
            user_groups[s.group].append(i)
    for gid, idx in sorted(user_groups.items()):
        info = group_info(f"group {gid}", idx, samples)
        if info["cross_split"]:
            leakage.append(info)
    large = [
        {
            "size": g["size"],
            "files": [str(samples[i].image) for i in g["members"]],
            "weakest": [
                {**w, "a": str(samples[w["i"]].image), "b": str(samples[w["j"]].image)}
                for w in g["weakest"]
            ],
        }
        for g in oversized(link_groups(n, links), links)
    ]
    return {"exact": exact, "near": near, "patient": patient, "leakage": leakage, "large": large}


def fmt_group(g: dict[str, Any]) -> str:
    """One line: the files (or the pairs with their similarity) and the tags."""
    tags = [
        t
        for t, on in (("LABELS DIFFER", g["label_conflict"]), ("SPANS SPLITS", g["cross_split"]))
        if on
    ]
    extra = f" [{', '.join(tags)}: {'/'.join(g['labels'] + g['splits'])}]" if tags else ""
    if g.get("pairs"):
        body = "; ".join(f"{p['a']} ~ {p['b']} ({p['similarity']:.2f})" for p in g["pairs"])
    else:
        body = ", ".join(g["files"])
    return body + extra


def fmt_large(g: dict[str, Any]) -> str:
    """A group above the chaining bound: its size, first file and weakest links."""
    weak = "; ".join(f"{w['a']} ~ {w['b']} ({w['similarity']:.2f})" for w in g["weakest"])
    return f"{g['size']} images (e.g. {g['files'][0]}), weakest links: {weak}"
