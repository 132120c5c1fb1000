r"""xentlib.metrics: evaluation helpers for the book's chapter 4 (NumPy only).

Inputs are NumPy arrays or anything ``np.asarray`` accepts (a CPU torch
tensor, an eager TensorFlow tensor). Class probabilities have the class axis
last; for a binary model with one sigmoid output ``p``, pass
``np.stack([1 - p, p], axis=-1)``.

* :func:`accuracy`: fraction of correct predictions.
* :func:`majority_class_accuracy`, :func:`prior_cross_entropy`: the trivial
  baselines that ignore the input (always the most frequent training class;
  always the training class frequencies).
* :func:`reliability_bins`, :func:`expected_calibration_error`: calibration of
  the top-class confidence (Guo et al., 2017).
* :func:`entity_spans`, :func:`entity_scores`: the entities of a BIO tag
  sequence and entity-level precision, recall and F1 by exact span match, as
  the CoNLL shared tasks' ``conlleval`` script counts them.
"""
from __future__ import annotations

import numpy as np

from xentlib._neutral import width_bins

__all__ = ["accuracy", "majority_class_accuracy", "prior_cross_entropy",
           "reliability_bins", "expected_calibration_error", "entity_spans", "entity_scores"]


def _labels(labels):
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers; got dtype {labels.dtype}")
    return labels


def accuracy(labels, predictions):
    """Fraction of items whose prediction equals the label.

    ``predictions`` is either class ids (same shape as ``labels``) or scores
    with one extra, last axis (probabilities or logits), reduced by argmax.

    >>> from xentlib import metrics
    >>> metrics.accuracy([0, 1, 1], [0, 1, 0])
    0.6666666666666666
    >>> metrics.accuracy([0, 1], [[0.9, 0.1], [0.3, 0.7]])
    1.0
    """
    labels = _labels(labels)
    predictions = np.asarray(predictions)
    if predictions.ndim == labels.ndim + 1:
        predictions = predictions.argmax(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions must have shape {labels.shape} (class ids) or "
                         f"{labels.shape} + (C,) (scores); got {predictions.shape}")
    return float((predictions == labels).mean())


def majority_class_accuracy(train_labels, test_labels):
    """Test accuracy of always predicting the most frequent *training* class.

    >>> from xentlib import metrics
    >>> metrics.majority_class_accuracy([0, 1, 1, 2], [1, 2, 1, 1])
    0.75
    """
    train_labels, test_labels = _labels(train_labels), _labels(test_labels)
    majority = np.bincount(train_labels.ravel()).argmax()
    return float((test_labels == majority).mean())


def prior_cross_entropy(train_labels, test_labels, num_classes=None):
    r"""Mean test cross-entropy (nats) of the input-blind model that predicts the training class frequencies.

    .. math:: H = -\frac{1}{N}\sum_{n=1}^{N} \log \hat\pi_{y_n}, \qquad
              \hat\pi_c = \frac{\#\{\text{training labels} = c\}}{N_\text{train}}

    The loss any classifier must beat to have learned something from its input;
    with :math:`C` balanced classes it is about :math:`\log C`. A class absent
    from the training labels gives :math:`+\infty` if it occurs in the test.

    >>> from xentlib import metrics
    >>> round(metrics.prior_cross_entropy([0, 1, 2, 3], [3, 2, 1, 0]), 6)   # log 4
    1.386294
    """
    train_labels, test_labels = _labels(train_labels), _labels(test_labels)
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    prior = np.bincount(train_labels.ravel(), minlength=num_classes) / train_labels.size
    with np.errstate(divide="ignore"):
        return float(-np.log(prior[test_labels.ravel()]).mean())


def reliability_bins(labels, probs, n_bins=10):
    r"""Per-bin mean confidence, accuracy and count of the top-class predictions.

    The top-class confidence :math:`\max_c p_c` of each item falls into one of
    ``n_bins`` equal-width bins of (0, 1] (right-closed, as in Guo et al.,
    2017). Returns ``(confidence, accuracy, count)``, three arrays of length
    ``n_bins``; empty bins hold NaN confidence and accuracy. A perfectly
    calibrated model has ``accuracy == confidence`` in every bin.

    >>> import numpy as np
    >>> from xentlib import metrics
    >>> p = np.array([[0.95, 0.05], [0.9, 0.1], [0.4, 0.6], [0.35, 0.65]])
    >>> conf, acc, count = metrics.reliability_bins([0, 1, 1, 0], p, n_bins=2)
    >>> conf.tolist(), acc.tolist(), count.tolist()
    ([nan, 0.775], [nan, 0.5], [0, 4])
    """
    labels = _labels(labels).ravel()
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs.reshape(-1, probs.shape[-1])
    if probs.shape[0] != labels.size:
        raise ValueError(f"probs must have one row per label ({labels.size}); got {probs.shape[0]}")
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}")
    top = probs.max(-1)
    correct = probs.argmax(-1) == labels
    which = width_bins(top, n_bins)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        conf = np.bincount(which, weights=top, minlength=n_bins) / count
        acc = np.bincount(which, weights=correct, minlength=n_bins) / count
    return conf, acc, count


def expected_calibration_error(labels, probs, n_bins=10):
    r"""Expected calibration error (ECE) of the top-class confidence, equal-width bins.

    .. math:: \mathrm{ECE} = \sum_{b=1}^{B} \frac{|B_b|}{N}\,
              \big|\operatorname{acc}(B_b) - \operatorname{conf}(B_b)\big|

    (Guo et al., 2017). 0 is perfect; a model that is 90 % sure and right half
    the time scores 0.4. The value depends on ``n_bins``; report it with the
    score.

    >>> import numpy as np
    >>> from xentlib import metrics
    >>> p = np.array([[0.95, 0.05], [0.9, 0.1], [0.4, 0.6], [0.35, 0.65]])
    >>> round(metrics.expected_calibration_error([0, 1, 1, 0], p, n_bins=2), 4)
    0.275
    """
    conf, acc, count = reliability_bins(labels, probs, n_bins)
    kept = count > 0
    return float((count[kept] * np.abs(acc[kept] - conf[kept])).sum() / count.sum())


def _tag_names(tags, tag_names):
    tags = list(tags)
    if tag_names is None:
        return [str(t) for t in tags]
    return [tag_names[int(t)] for t in tags]


def entity_spans(tags, tag_names=None):
    """The entities of one BIO-tagged sequence, as ``(type, start, end)`` triples.

    ``tags`` holds tag strings (``"B-PER"``, ``"I-PER"``, ``"O"``) or, with
    ``tag_names``, integer ids into it. ``end`` is exclusive. A chunk starts at
    ``B-X``, or at an ``I-X`` that does not continue a chunk of type ``X``
    (``conlleval``'s reading of an ill-formed ``O I-X``), and runs over the
    ``I-X`` tags that follow it. Any tag without a ``B-``/``I-`` prefix
    (``O``, padding) is outside every entity.

    >>> from xentlib import metrics
    >>> metrics.entity_spans(["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"])
    [('PER', 0, 2), ('LOC', 3, 4), ('LOC', 4, 5), ('ORG', 5, 6)]
    """
    spans, kind, start = [], None, 0
    for i, tag in enumerate(_tag_names(tags, tag_names) + ["O"]):
        prefix, _, tag_type = tag.partition("-")
        if kind is not None and not (prefix == "I" and tag_type == kind):
            spans.append((kind, start, i))      # the open chunk ends before this tag
            kind = None
        if prefix in ("B", "I") and kind is None:
            kind, start = tag_type, i
    return spans


def entity_scores(true_tags, pred_tags, tag_names=None):
    r"""Entity-level precision, recall and F1 per type and overall (exact span match).

    ``true_tags`` and ``pred_tags`` are sequences of tag sequences (one per
    sentence, pairs of the same length), read by :func:`entity_spans`. A
    predicted entity is correct only if the true tags hold an entity of the
    same type with the same start and end:

    .. math:: P = \frac{\#\text{correct}}{\#\text{predicted}}, \quad
              R = \frac{\#\text{correct}}{\#\text{true}}, \quad
              F_1 = \frac{2PR}{P + R},

    counted over all sentences (micro-averaged), as ``conlleval`` does; a
    ratio whose denominator is 0 is reported as 0. Returns a dict from each
    entity type, in sorted order, and ``"overall"`` to a dict with
    ``precision``, ``recall``, ``f1``, ``true``, ``predicted`` and ``correct``.

    >>> from xentlib import metrics
    >>> true = [["B-PER", "I-PER", "O", "B-LOC"]]
    >>> pred = [["B-PER", "I-PER", "O", "B-ORG"]]     # the person right, the place missed
    >>> s = metrics.entity_scores(true, pred)["overall"]
    >>> s["precision"], s["recall"], s["f1"], s["correct"]
    (0.5, 0.5, 0.5, 1)
    """
    true_tags, pred_tags = list(true_tags), list(pred_tags)
    if len(true_tags) != len(pred_tags):
        raise ValueError(f"pred_tags must have one tag sequence per sentence ({len(true_tags)}); "
                         f"got {len(pred_tags)}")
    true_set, pred_set = set(), set()
    for n, (t, p) in enumerate(zip(true_tags, pred_tags)):
        t, p = _tag_names(t, tag_names), _tag_names(p, tag_names)
        if len(t) != len(p):
            raise ValueError(f"pred_tags must match the true tags' lengths; sentence {n} has "
                             f"{len(t)} true tags and {len(p)} predicted (cut off the padding first)")
        true_set.update((n, *span) for span in entity_spans(t))
        pred_set.update((n, *span) for span in entity_spans(p))
    types = sorted({span[1] for span in true_set | pred_set})
    out = {}
    for kind in types + ["overall"]:
        t = {s for s in true_set if kind in ("overall", s[1])}
        p = {s for s in pred_set if kind in ("overall", s[1])}
        correct = len(t & p)
        precision = correct / len(p) if p else 0.0
        recall = correct / len(t) if t else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[kind] = {"precision": precision, "recall": recall, "f1": f1,
                     "true": len(t), "predicted": len(p), "correct": correct}
    return out
