"""Operating points of a binary or one-vs-rest decision: a threshold on one class's
probability, chosen on one split and applied on another.

Decision rule: an image is called positive for class ``c`` when ``p_c >= threshold``.
The candidate thresholds are the distinct scores of the split the point is chosen on
(each is the smallest score still called positive), so the chosen point is reproducible
from the validation scores alone. Rules (:data:`RULES`):

* ``youden``: the threshold maximising Youden's J = sensitivity + specificity - 1
  (ties: the highest threshold, i.e. the fewest positive calls);
* ``sensitivity``: the highest threshold whose sensitivity is ``>= target`` (the most
  specific point that reaches the target sensitivity);
* ``specificity``: the lowest threshold whose specificity is ``>= target`` (the most
  sensitive point that reaches the target specificity).

At a threshold, :func:`at_threshold` gives the counts and sensitivity, specificity, PPV and
NPV with Wilson CIs, through :func:`medtl.metrics.diagnostic.one_vs_rest` (one definition).

Example:
    >>> import numpy as np
    >>> y = np.array([0, 0, 1, 1, 0, 1]); p = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.7])
    >>> choose_threshold(y, p, "youden")["threshold"]
    0.7
    >>> choose_threshold(y, p, "sensitivity", 1.0)["threshold"]
    0.35
    >>> r = at_threshold(y, p, 0.35); r["sensitivity"], round(r["specificity"], 3)
    (1.0, 0.667)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medtl.metrics.diagnostic import one_vs_rest
from medtl.utils.errors import ConfigError

__all__ = ["RULES", "at_threshold", "choose_threshold", "rule_name"]

RULES = ("youden", "sensitivity", "specificity")


def rule_name(rule: str, target: float | None = None) -> str:
    """The rule in words for tables: ``"Youden's J"``, ``"sensitivity >= 0.95"``."""
    return "Youden's J" if rule == "youden" else f"{rule} >= {target:g}"


def _rates(y_pos: np.ndarray, score: np.ndarray, thresholds: np.ndarray):
    """Sensitivity and specificity of ``score >= t`` for every ``t`` in ``thresholds``."""
    pos, neg = score[y_pos], score[~y_pos]
    sens = (pos[None, :] >= thresholds[:, None]).mean(axis=1) if pos.size else np.zeros(0)
    spec = (neg[None, :] < thresholds[:, None]).mean(axis=1) if neg.size else np.zeros(0)
    return sens, spec


def choose_threshold(
    y_pos: Sequence[int] | np.ndarray,
    score: Sequence[float] | np.ndarray,
    rule: str = "youden",
    target: float | None = None,
) -> dict[str, Any]:
    """The threshold the ``rule`` picks on these scores (module docstring).

    Args:
        y_pos: 1/True for positives, 0/False for negatives.
        score: the positive class's probability per image.
        rule: one of :data:`RULES`; ``sensitivity``/``specificity`` need ``target`` in (0, 1].

    Returns:
        ``{"threshold", "rule", "target", "sensitivity", "specificity", "n_pos", "n_neg"}``
        (the rates are those on these scores).

    Raises:
        ConfigError: unknown rule, a target outside (0, 1], or a split without positives or
            without negatives (no operating point can be chosen).
    """
    y = np.asarray(y_pos).astype(bool).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    if rule not in RULES:
        raise ConfigError(f"unknown operating-point rule {rule!r}; known: {', '.join(RULES)}")
    if rule != "youden" and (target is None or not 0 < target <= 1):
        raise ConfigError(f"--{rule} needs a target in (0, 1], e.g. --{rule} 0.95")
    if y.all() or not y.any():
        raise ConfigError(
            "an operating point needs positive and negative images on the split it is chosen on"
        )
    thresholds = np.unique(s)[::-1]  # high to low: the first index wins ties
    sens, spec = _rates(y, s, thresholds)
    if rule == "youden":
        i = int(np.argmax(sens + spec - 1))
    elif rule == "sensitivity":
        i = int(np.flatnonzero(sens >= target - 1e-12)[0])  # the lowest score always reaches 1
    else:
        ok = np.flatnonzero(spec >= target - 1e-12)
        i = int(ok[-1]) if ok.size else 0  # none reaches it: the most specific point
    return {
        "threshold": float(thresholds[i]),
        "rule": rule,
        "target": target,
        "sensitivity": float(sens[i]),
        "specificity": float(spec[i]),
        "n_pos": int(y.sum()),
        "n_neg": int((~y).sum()),
    }


def at_threshold(
    y_pos: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray, threshold: float
) -> dict[str, Any]:
    """Counts and sensitivity/specificity/PPV/NPV (Wilson CIs) of ``score >= threshold``."""
    y = np.asarray(y_pos).astype(bool).ravel()
    called = np.asarray(score, dtype=np.float64).ravel() >= threshold
    tp, fn = int((y & called).sum()), int((y & ~called).sum())
    fp, tn = int((~y & called).sum()), int((~y & ~called).sum())
    return {"threshold": float(threshold), **one_vs_rest(np.array([[tn, fp], [fn, tp]]))[1]}
