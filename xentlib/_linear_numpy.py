r"""Linear cross-entropy (output projection fused with the loss), NumPy reference.

Shared pieces for the three backends live here too: the argument checks
(:func:`check_linear_args`, framework-free, called with shapes and dtype names)
and the default chunk size (:func:`default_chunk_size`).
"""
from __future__ import annotations

import numpy as np

from xentlib import _validate as V

__all__ = ["linear_cross_entropy"]

#: Logits held at once by the default chunking: 2**23 numbers (32 MiB in float32).
#: Smaller chunks save memory but re-read and re-write the (V, d) weight gradient
#: once per chunk; at V = 65536 this is 128 rows per chunk.
CHUNK_ELEMENTS = 1 << 23


def default_chunk_size(num_rows: int, vocab: int, elements: int = CHUNK_ELEMENTS) -> int:
    """Rows per chunk so that one chunk of logits holds about ``elements`` numbers."""
    return max(1, min(max(num_rows, 1), elements // max(vocab, 1)))


def check_linear_args(hidden_shape, hidden_dtype, weight_shape, weight_dtype, labels_shape,
                      labels_is_int, labels_dtype, bias_shape=None, bias_dtype=None,
                      ignore_index=None, label_smoothing=0.0, reduction="mean",
                      chunk_size=None, float_kinds=("float16", "bfloat16", "float32", "float64")):
    """Shape, dtype and option checks of ``linear_cross_entropy`` (every backend).

    Returns ``(ignore_index, label_smoothing, reduction, chunk_size)`` normalised.
    """
    for name, dtype in (("hidden", hidden_dtype), ("weight", weight_dtype)):
        if str(dtype) not in float_kinds:
            raise V.not_float(name, dtype)
    if bias_shape is not None and str(bias_dtype) not in float_kinds:
        raise V.not_float("bias", bias_dtype)
    if not labels_is_int:
        raise V.not_integer("labels", labels_dtype)
    label_smoothing = V.check_fraction("label_smoothing", label_smoothing)
    ignore_index = V.check_int("ignore_index", ignore_index, allow_none=True)
    V.check_reduction(reduction)
    chunk_size = V.check_int("chunk_size", chunk_size, minimum=1, allow_none=True)
    hidden_shape, weight_shape = tuple(hidden_shape), tuple(weight_shape)
    if len(hidden_shape) < 1:
        raise ValueError(f"hidden must have shape (..., d), at least one axis; got {hidden_shape}")
    if len(weight_shape) != 2 or weight_shape[1] != hidden_shape[-1]:
        raise ValueError(
            f"weight has shape {weight_shape} but hidden has shape {hidden_shape}; weight must "
            f"have shape (V, d) with d = hidden.shape[-1] = {hidden_shape[-1]}")
    if weight_shape[0] < 1:
        raise ValueError(f"weight must have at least one row (one class); got shape {weight_shape}")
    if tuple(labels_shape) != hidden_shape[:-1]:
        raise ValueError(
            f"labels has shape {tuple(labels_shape)}; expected {hidden_shape[:-1]} "
            f"(hidden's shape without its last axis)")
    if bias_shape is not None and tuple(bias_shape) != (weight_shape[0],):
        raise ValueError(
            f"bias must have shape ({weight_shape[0]},), one entry per row of weight; "
            f"got {tuple(bias_shape)}")
    return ignore_index, label_smoothing, reduction, chunk_size


def linear_cross_entropy(hidden, weight, labels, *, bias=None, ignore_index=None,
                         label_smoothing=0.0, reduction="mean", chunk_size=None):
    r"""Cross-entropy of the logits :math:`z = h W^\top + b`, never forming all of them.

    .. math:: z_n = W h_n + b, \qquad
              \ell_n = (1-\varepsilon)\big(\operatorname{lse}(z_n) - z_{n,y_n}\big)
              + \frac{\varepsilon}{V}\sum_{c=1}^{V}\big(\operatorname{lse}(z_n) - z_{n,c}\big)

    with :math:`\operatorname{lse}(z) = \log\sum_c e^{z_c}`. The value equals
    ``sparse_categorical_cross_entropy(labels, hidden @ weight.T + bias,
    from_logits=True, ...)`` (PyTorch semantics for ``ignore_index`` and
    ``label_smoothing``; ``'mean'`` over the kept items, 0 if none is kept), but
    the rows are processed ``chunk_size`` at a time, so at most a
    ``(chunk_size, V)`` block of logits exists. ``hidden`` has shape ``(..., d)``,
    ``weight`` ``(V, d)`` (PyTorch's ``nn.Linear`` layout), ``labels`` ``(...)``.
    The default chunk holds about :math:`2^{23}` logits. Float32 inputs are
    summed in float64 across chunks, so the chunk size does not change the
    result beyond rounding.

    >>> import numpy as np
    >>> from xentlib import numpy as xl
    >>> rng = np.random.default_rng(0)
    >>> h, w, y = rng.normal(size=(6, 4)), rng.normal(size=(10, 4)), rng.integers(0, 10, 6)
    >>> naive = xl.sparse_categorical_cross_entropy(y, h @ w.T, from_logits=True)
    >>> from xentlib._linear_numpy import linear_cross_entropy
    >>> bool(np.isclose(linear_cross_entropy(h, w, y, chunk_size=4), naive))
    True
    """
    hidden = np.asarray(hidden)
    weight = np.asarray(weight)
    labels = np.asarray(labels)
    bias = None if bias is None else np.asarray(bias)
    ignore_index, eps, reduction, chunk_size = check_linear_args(
        hidden.shape, hidden.dtype.name, weight.shape, weight.dtype.name, labels.shape,
        labels.dtype.kind in "iu", labels.dtype, None if bias is None else bias.shape,
        None if bias is None else bias.dtype.name, ignore_index, label_smoothing, reduction,
        chunk_size, float_kinds=("float16", "float32", "float64"))
    vocab = weight.shape[0]
    h = hidden.reshape(-1, hidden.shape[-1])
    y = labels.reshape(-1)
    _check_values(h, weight, bias, y, vocab, ignore_index)
    work = np.float64 if np.float64 in (hidden.dtype, weight.dtype) else np.float32
    out_dtype = np.float64 if work == np.float64 else np.float32
    kept = np.ones(y.shape, bool) if ignore_index is None else y != ignore_index
    rows = chunk_size or default_chunk_size(len(y), vocab)
    per_item = np.zeros(len(y), work)
    wt = weight.astype(work).T
    b = None if bias is None else bias.astype(work)
    for start in range(0, len(y), rows):
        sl = slice(start, start + rows)
        z = h[sl].astype(work) @ wt
        if b is not None:
            z += b
        per_item[sl] = _chunk_loss(z, y[sl], kept[sl], eps)
    per_item = per_item.reshape(labels.shape)
    if reduction == "none":
        return per_item.astype(out_dtype)
    total = per_item.sum(dtype=np.float64)
    if reduction == "mean":
        count = int(kept.sum())
        total = total / count if count else 0.0
    return np.asarray(total, dtype=out_dtype)[()]


def _check_values(h, weight, bias, y, vocab, ignore_index):
    if not V.value_checks_enabled():
        return
    for name, x in (("hidden", h), ("weight", weight), ("bias", bias)):
        if x is not None and not np.isfinite(x).all():
            raise V.not_finite(name)
    bad = (y < 0) | (y >= vocab)
    if ignore_index is not None:
        bad &= y != ignore_index
    if bad.any():
        raise V.bad_labels("labels", int(y[bad].min()), int(y[bad].max()), vocab, ignore_index)


def _chunk_loss(z, y, kept, eps):
    """Per-row loss of one chunk of logits; ignored rows give 0."""
    m = z.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
    safe = np.where(kept, y, 0)
    loss = (1 - eps) * (lse - z[np.arange(len(y)), safe])
    if eps > 0:
        loss = loss + eps * (lse - z.mean(axis=1))
    return np.where(kept, loss, 0.0)

