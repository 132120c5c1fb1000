"""Linear cross-entropy (output projection fused with the loss), NumPy reference.

The value and the extras only (NumPy has no autodiff); the options and the
formula are described once in :mod:`xentlib._linear`.
"""
from __future__ import annotations

import numpy as np

from xentlib import _linear
from xentlib._numpy_ops import front_door

__all__ = ["linear_cross_entropy"]


def linear_cross_entropy(hidden, weight, labels, **options):
    hidden, weight, labels, bias, class_weight, o = _linear.prepare(
        front_door, hidden, weight, labels, options)
    work = np.float64 if np.float64 in (hidden.dtype, weight.dtype) else np.float32
    h = hidden.reshape(-1, o.dim)
    y = labels.reshape(-1)
    kept = np.ones(y.shape, bool) if o.ignore_index is None else y != o.ignore_index
    wt = weight.astype(work).T
    b = None if bias is None else bias.astype(work)
    cw = None if class_weight is None else class_weight.astype(work)
    per_item = np.zeros(len(y), work)
    extra = {name: np.zeros(len(y), np.int64 if name == "argmax" else work) for name in o.extras}
    for start in range(0, len(y), o.rows):
        rows = slice(start, start + o.rows)
        z = h[rows].astype(work) @ wt
        if b is not None:
            z += b
        per_item[rows] = _chunk(z, y[rows], kept[rows], cw, o, {k: v[rows] for k, v in extra.items()})
    extra = {k: v.reshape(labels.shape) for k, v in extra.items()}
    per_item = per_item.reshape(labels.shape)
    if o.reduction == "none":
        loss = per_item
    else:
        loss = per_item.sum(dtype=np.float64)
        if o.reduction == "mean":
            w_y = kept if cw is None else np.where(kept, cw[np.where(kept, y, 0)], 0.0)
            denominator = w_y.sum(dtype=np.float64)
            loss = loss / denominator if denominator else 0.0
        loss = np.asarray(loss, dtype=work)[()]
    return (loss, extra) if o.extras else loss


_linear.public(linear_cross_entropy, """
NumPy: the value and the extras (no gradients); float16 is computed in float32.""", """
>>> import numpy as np
>>> from xentlib import numpy as xl
>>> rng = np.random.default_rng(0)
>>> h, w, y = rng.normal(size=(6, 4)), rng.normal(size=(10, 4)), rng.integers(0, 10, 6)
>>> naive = xl.sparse_categorical_cross_entropy(y, h @ w.T, from_logits=True)
>>> loss, extras = xl.linear_cross_entropy(h, w, y, chunk_size=4, extras=("argmax",))
>>> bool(np.isclose(loss, naive)), bool((extras["argmax"] == (h @ w.T).argmax(-1)).all())
(True, True)
""")


def _chunk(z, y, kept, cw, o, extra):
    """Per-row loss of one chunk of logits (ignored rows give 0); fills ``extra`` in place."""
    if o.softcap is not None:
        z = o.softcap * np.tanh(z / o.softcap)
    if "argmax" in extra:
        extra["argmax"][:] = z.argmax(axis=1)
    m = z.max(axis=1, keepdims=True)
    z = z - m
    e = np.exp(z)
    sum_exp = e.sum(axis=1)
    lse = np.log(sum_exp)                      # of the shifted logits
    safe = np.where(kept, y, 0)
    z_y = z[np.arange(len(y)), safe]
    w_y = np.where(kept, 1.0 if cw is None else cw[safe], 0.0)
    eps = o.label_smoothing
    loss = (1 - eps) * w_y * (lse - z_y)
    if eps > 0:
        w_mean = 1.0 if cw is None else cw.mean()
        w_z = z.mean(axis=1) if cw is None else z @ cw / o.vocab
        loss = loss + eps * (w_mean * lse - w_z)
    full_lse = lse + m[:, 0]
    if o.z_loss:
        loss = loss + o.z_loss * w_y * full_lse ** 2
    if "lse" in extra:
        extra["lse"][:] = full_lse
    if "label_logprob" in extra:
        extra["label_logprob"][:] = np.where(kept, z_y - lse, 0.0)
    if "entropy" in extra:
        extra["entropy"][:] = lse - (e * z).sum(axis=1) / sum_exp
    return np.where(kept, loss, 0.0)
