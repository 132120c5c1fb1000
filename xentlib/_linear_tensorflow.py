r"""Linear cross-entropy for TensorFlow: output projection and loss fused, in chunks of rows.

The same design as the PyTorch version (see ``xentlib._linear_torch``): with
``reduction='mean'`` or ``'sum'`` the gradients for ``hidden``, ``weight`` and
``bias`` are accumulated chunk by chunk in the forward pass and the gradient
function of ``tf.custom_gradient`` only scales them by the upstream scalar;
with ``reduction='none'`` the gradient function recomputes each chunk of logits
with the per-row upstream gradient. The chunks run in a ``tf.while_loop``, so the
function works eagerly and inside ``tf.function`` (also with an unknown number
of rows); at most one ``(chunk_size, V)`` block of logits is alive at a time.
"""
from __future__ import annotations

import tensorflow as tf

from xentlib import _validate as V
from xentlib._linear_numpy import check_linear_args, default_chunk_size

__all__ = ["linear_cross_entropy"]

_FLOATS = ("float16", "bfloat16", "float32", "float64")

#: Default logits per chunk: 2**22, half of PyTorch's, because an eager TensorFlow
#: chunk keeps about twice as many (chunk, V) temporaries alive as the in-place
#: PyTorch version.
TF_CHUNK_ELEMENTS = 1 << 22


def linear_cross_entropy(hidden, weight, labels, *, bias=None, ignore_index=None,
                         label_smoothing=0.0, reduction="mean", chunk_size=None):
    r"""Cross-entropy of the logits :math:`z = h W^\top + b`, in chunks, with gradients.

    .. math:: z_n = W h_n + b, \qquad
              \ell_n = (1-\varepsilon)\big(\operatorname{lse}(z_n) - z_{n,y_n}\big)
              + \frac{\varepsilon}{V}\sum_{c=1}^{V}\big(\operatorname{lse}(z_n) - z_{n,c}\big)

    Equals ``sparse_categorical_cross_entropy(labels, hidden @ weight.T + bias,
    from_logits=True, ...)`` in value and in the gradients for ``hidden``,
    ``weight`` and ``bias`` (``tf.GradientTape`` works as usual; ``tf.Variable``
    arguments are fine), while holding at most ``chunk_size`` rows of logits
    (default: about :math:`2^{22}` logits). ``weight`` has shape ``(V, d)``, the
    transpose of a Keras ``Dense`` kernel: pass ``tf.transpose(dense.kernel)``.
    float16/bfloat16 are computed in float32; chunk losses are summed in
    float64. The data-dependent checks (finite inputs, labels in range) run in
    eager mode only.

    >>> import tensorflow as tf
    >>> from xentlib._linear_tensorflow import linear_cross_entropy
    >>> h = tf.random.stateless_normal((6, 4), seed=(0, 1))
    >>> w = tf.random.stateless_normal((10, 4), seed=(0, 2))
    >>> y = tf.constant([1, 2, 3, 4, 5, 9])
    >>> loss = linear_cross_entropy(h, w, y, chunk_size=4)
    >>> naive = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, h @ tf.transpose(w)))
    >>> abs(float(loss - naive)) < 1e-6
    True
    """
    hidden = _as_tensor(hidden, "hidden")
    weight = _as_tensor(weight, "weight")
    labels = _as_tensor(labels, "labels")
    bias = None if bias is None else _as_tensor(bias, "bias")
    ignore_index, eps, reduction, chunk_size = check_linear_args(
        hidden.shape, hidden.dtype.name, weight.shape, weight.dtype.name, labels.shape,
        labels.dtype.is_integer, labels.dtype.name,
        None if bias is None else bias.shape, None if bias is None else bias.dtype.name,
        ignore_index, label_smoothing, reduction, chunk_size, float_kinds=_FLOATS)
    vocab, d = weight.shape
    h2 = tf.reshape(hidden, (-1, d))
    y = tf.reshape(tf.cast(labels, tf.int64), (-1,))
    _check_values(h2, weight, bias, y, vocab, ignore_index)
    kept = tf.ones_like(y, tf.bool) if ignore_index is None else tf.not_equal(y, ignore_index)
    n_static = h2.shape[0]
    rows = chunk_size or default_chunk_size(n_static if n_static is not None else 1 << 16, vocab,
                                            TF_CHUNK_ELEMENTS)
    dtypes = [t.dtype for t in (hidden, weight, bias) if t is not None]
    work = tf.float64 if tf.float64 in dtypes else tf.float32

    @tf.custom_gradient
    def fused(*params):
        # Eager custom_gradient lets an outer GradientTape record every op inside and so
        # keep each chunk's logits alive; cut the inputs off the tape (the custom
        # gradient below reconnects them) so that a chunk is freed after use.
        h, w = tf.stop_gradient(params[0]), tf.stop_gradient(params[1])
        b = tf.stop_gradient(params[2]) if len(params) > 2 else None
        count = tf.reduce_sum(tf.cast(kept, work))
        fuse = reduction != "none"
        if reduction == "mean":
            scale = tf.math.divide_no_nan(tf.ones((), work), count)
        else:
            scale = tf.ones((), work)
        per_item, gh, gw, gb = _sweep(h, w, b, y, kept, eps, rows, scale, fuse, work)
        out = _reduce(per_item, reduction, count, work)

        def grad(upstream):
            if fuse:
                g = tf.cast(upstream, work)
                grads = [gh * g, gw * g] + ([] if b is None else [gb * g])
            else:
                _, g_h, g_w, g_b = _sweep(h, w, b, y, kept, eps, rows,
                                          tf.cast(upstream, work), True, work)
                grads = [g_h, g_w] + ([] if b is None else [g_b])
            return [tf.cast(g, p.dtype) for g, p in zip(grads, params)]

        return out, grad

    params = [h2, weight] + ([] if bias is None else [bias])
    out = fused(*params)
    return tf.reshape(out, tf.shape(labels)) if reduction == "none" else out


def _as_tensor(x, name):
    try:
        return tf.convert_to_tensor(x)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a tensor or array; got {type(x).__name__}") from None


def _check_values(h, weight, bias, y, vocab, ignore_index):
    if not (V.value_checks_enabled() and tf.executing_eagerly()):
        return
    for name, x in (("hidden", h), ("weight", weight), ("bias", bias)):
        if x is not None and not bool(tf.reduce_all(tf.math.is_finite(x))):
            raise V.not_finite(name)
    bad = (y < 0) | (y >= vocab)
    if ignore_index is not None:
        bad &= tf.not_equal(y, ignore_index)
    if bool(tf.reduce_any(bad)):
        wrong = tf.boolean_mask(y, bad)
        raise V.bad_labels("labels", int(tf.reduce_min(wrong)), int(tf.reduce_max(wrong)),
                           vocab, ignore_index)


def _reduce(per_item, reduction, count, work):
    out_dtype = tf.float64 if work == tf.float64 else tf.float32
    if reduction == "none":
        return tf.cast(per_item, out_dtype)
    total = tf.reduce_sum(tf.cast(per_item, tf.float64))
    if reduction == "mean":
        total = tf.math.divide_no_nan(total, tf.cast(count, tf.float64))
    return tf.cast(total, out_dtype)


def _sweep(h, w, b, y, kept, eps, rows, row_scale, grads, work):
    """Per-row losses and (if ``grads``) gradients, one chunk of rows at a time."""
    n = tf.shape(h, out_type=tf.int64)[0]
    vocab, d = w.shape
    wk = tf.cast(w, work)
    bk = None if b is None else tf.cast(b, work)
    per_row_scale = row_scale.shape.rank == 1
    losses = tf.TensorArray(work, size=0, dynamic_size=True, infer_shape=False,
                            element_shape=tf.TensorShape([None]))
    ghs = tf.TensorArray(work, size=0, dynamic_size=True, infer_shape=False,
                         element_shape=tf.TensorShape([None, d]))
    # An empty first element keeps concat() valid when there are no rows at all.
    losses = losses.write(0, tf.zeros((0,), work))
    ghs = ghs.write(0, tf.zeros((0, d), work))
    gw0 = tf.zeros_like(wk) if grads else tf.zeros((), work)
    gb0 = tf.zeros((vocab,), work) if grads and b is not None else tf.zeros((), work)

    def body(i, start, losses, ghs, gw, gb):
        stop = tf.minimum(start + rows, n)
        hk = tf.cast(h[start:stop], work)
        z = tf.matmul(hk, wk, transpose_b=True)
        if bk is not None:
            z = z + bk
        k = kept[start:stop]
        safe = tf.where(k, y[start:stop], tf.zeros_like(y[start:stop]))
        row_max = tf.reduce_max(z, axis=1)
        z_y = tf.gather(z, safe, batch_dims=1) - row_max
        z_mean = tf.reduce_mean(z, axis=1) - row_max if eps > 0 else None
        e = tf.exp(z - row_max[:, None])
        del z  # at most two (chunk, V) buffers alive from here on
        sum_exp = tf.reduce_sum(e, axis=1)
        lse = tf.math.log(sum_exp)
        loss = (1 - eps) * (lse - z_y)
        if z_mean is not None:
            loss += eps * (lse - z_mean)
        losses = losses.write(i, tf.where(k, loss, tf.zeros_like(loss)))
        if grads:
            s = row_scale[start:stop] if per_row_scale else tf.fill(tf.shape(sum_exp), row_scale)
            s = tf.where(k, s, tf.zeros_like(s))
            shift = (eps / vocab) * s if eps > 0 else None
            g = e * (s / sum_exp)[:, None] if shift is None \
                else e * (s / sum_exp)[:, None] - shift[:, None]
            del e
            idx = tf.stack([tf.range(tf.size(safe, out_type=tf.int64)), safe], axis=1)
            g = tf.tensor_scatter_nd_sub(g, idx, (1 - eps) * s)
            ghs = ghs.write(i, tf.matmul(g, wk))
            gw = gw + tf.matmul(g, hk, transpose_a=True)
            if bk is not None:
                gb = gb + tf.reduce_sum(g, axis=0)
        return i + 1, stop, losses, ghs, gw, gb

    _, _, losses, ghs, gw, gb = tf.while_loop(
        lambda i, start, *_: start < n, body,
        (tf.constant(1, tf.int32), tf.constant(0, tf.int64), losses, ghs, gw0, gb0),
        parallel_iterations=1)
    per_item = tf.reshape(losses.concat(), (-1,))
    if not grads:
        return per_item, None, None, None
    gh = tf.reshape(ghs.concat(), (-1, d))
    return per_item, gh, gw, (gb if b is not None else None)
