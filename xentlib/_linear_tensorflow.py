r"""Linear cross-entropy for TensorFlow: output projection and loss fused, in chunks of rows.

The same design as the PyTorch version (see ``xentlib._linear_torch``): with
``reduction='mean'`` or ``'sum'`` the gradients for ``hidden``, ``weight`` and
``bias`` are accumulated chunk by chunk in the forward pass and the gradient
function of ``tf.custom_gradient`` only scales them by the upstream scalar;
with ``reduction='none'`` the gradient function recomputes each chunk of logits
with the per-row upstream gradient. The rows are padded to a whole number of
chunks, so every chunk has the same static shape and the ``tf.while_loop`` over
them runs eagerly, inside ``tf.function`` (also with an unknown number of rows)
and under XLA (``jit_compile=True``). At most one ``(chunk_size, V)`` block of
logits is alive at a time.
"""
from __future__ import annotations

import tensorflow as tf

from xentlib import _linear
from xentlib._tensorflow_ops import front_door, invalid_labels

__all__ = ["linear_cross_entropy"]

#: Default logits per chunk: 2**22, half of PyTorch's, because a TensorFlow chunk
#: keeps about twice as many (chunk, V) temporaries alive as the in-place PyTorch one.
TF_CHUNK_ELEMENTS = 1 << 22

#: From this ``d`` on a chunk's logits are computed as ``(W h^T)^T``, not ``h W^T``: the
#: product with a transposed second operand repacks the whole ``(V, d)`` weight for each
#: chunk. Measured (CPU time, two threads, oneDNN): 512 rows, d = 1024, V = 32768 0.43 s
#: against 0.34 s with the transpose of the result; 256 rows, d = 4096: 1.07 s against
#: 0.72 s; at d = 256 the same, at d = 64 1.6x slower.
WEIGHT_FIRST_MIN_DIM = 512


def linear_cross_entropy(hidden, weight, labels, **options):
    hidden, weight, labels, bias, class_weight, o = _linear.prepare(
        front_door, hidden, weight, labels, options, chunk_elements=TF_CHUNK_ELEMENTS)
    h2 = tf.reshape(hidden, (-1, o.dim))
    y = tf.reshape(labels, (-1,))
    # where no check could raise (a graph under XLA, or checks off), an invalid label is NaN
    invalid = invalid_labels(y, o.vocab, o.ignore_index)
    kept = tf.ones_like(y, tf.bool) if o.ignore_index is None else tf.not_equal(y, o.ignore_index)
    kept &= ~invalid
    work = tf.float64 if tf.float64 in (hidden.dtype, weight.dtype) else tf.float32
    cw = None if class_weight is None else tf.cast(class_weight, work)
    weights = tf.cast(kept, work) if cw is None else tf.where(kept, tf.gather(cw, tf.where(
        kept, y, 0)), tf.zeros((), work))
    denominator = tf.reduce_sum(tf.cast(weights, tf.float64))
    if o.reduction == "mean":
        scale = tf.cast(tf.math.divide_no_nan(tf.ones((), tf.float64), denominator), work)
    else:
        scale = tf.ones((), work)

    @tf.custom_gradient
    def fused(*params):
        # Eager custom_gradient lets an outer GradientTape record every op inside and so
        # keep each chunk's logits alive; cut the inputs off the tape (the custom
        # gradient below reconnects them) so that a chunk is freed after use.
        h, w = tf.stop_gradient(params[0]), tf.stop_gradient(params[1])
        b = tf.stop_gradient(params[2]) if len(params) > 2 else None
        fuse = o.reduction != "none"
        per_item, extra, grads = _sweep(h, w, b, y, kept, invalid, cw, o, scale, fuse, work)
        if o.reduction == "none":
            out = per_item
        else:
            out = tf.cast(tf.reduce_sum(tf.cast(per_item, tf.float64)) * tf.cast(scale, tf.float64),
                          work)

        def grad(upstream, *_):
            if fuse:
                g = tf.cast(upstream, work)
                one = tf.executing_eagerly() and bool(g == 1)  # usual case 1: the buffers, no copies
                result = [x if one else x * g for x in grads if x is not None]
            else:
                _, _, result = _sweep(h, w, b, y, kept, invalid, cw, o, tf.cast(upstream, work),
                                      True, work)
                result = [x for x in result if x is not None]
            return [tf.cast(g, p.dtype) for g, p in zip(result, params)]

        return (out, *extra), grad

    params = [h2, weight] + ([] if bias is None else [bias])
    out, *extra = fused(*params)
    if o.reduction == "none":
        out = tf.reshape(out, tf.shape(labels))
    if not o.extras:
        return out
    return out, {name: tf.reshape(tf.stop_gradient(x), tf.shape(labels))
                 for name, x in zip(o.extras, extra)}


_linear.public(linear_cross_entropy, """
TensorFlow: gradients for ``hidden``, ``weight`` and ``bias`` through
``tf.GradientTape`` (``tf.Variable`` arguments are fine; none for
``class_weight``). Works eagerly, in ``tf.function`` and under XLA. ``weight``
has shape ``(V, d)``, the transpose of a Keras ``Dense`` kernel (see
:class:`~xentlib.tensorflow.LinearCrossEntropyHead` for ``model.fit``). The
value checks raise in eager mode and add assertions in a graph; under XLA, where
assertions are dropped, an item with an out-of-range label gets a NaN loss and
NaN gradients instead. The default chunk holds about :math:`2^{22}` logits.""", """
>>> import tensorflow as tf
>>> from xentlib import tensorflow as xl
>>> h = tf.random.stateless_normal((6, 4), seed=(0, 1))
>>> w = tf.random.stateless_normal((10, 4), seed=(0, 2))
>>> y = tf.constant([1, 2, 3, 4, 5, 9])
>>> loss = xl.linear_cross_entropy(h, w, y, chunk_size=4)
>>> naive = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, h @ tf.transpose(w)))
>>> abs(float(loss - naive)) < 1e-6
True
""", chunk_elements=TF_CHUNK_ELEMENTS)


def _sweep(h, w, b, y, kept, invalid, cw, o, row_scale, grads, work):
    """Per-row losses, extras and (if ``grads``) gradients, one chunk of rows at a time."""
    vocab, d, rows, eps = o.vocab, o.dim, o.rows, o.label_smoothing
    n = tf.shape(h)[0]
    chunks = (n + rows - 1) // rows
    pad = chunks * rows - n
    hp = tf.pad(h, [[0, pad], [0, 0]])
    yp = tf.pad(y, [[0, pad]])
    kp = tf.pad(kept, [[0, pad]])
    nan_p = tf.pad(invalid, [[0, pad]])
    per_row_scale = row_scale.shape.rank == 1
    sp = tf.pad(row_scale, [[0, pad]]) if per_row_scale else None
    wk = tf.cast(w, work)
    bk = None if b is None else tf.cast(b, work)
    w_mean = 1.0 if cw is None else tf.reduce_mean(cw)
    nan = tf.constant(float("nan"), work)

    def array(shape, dtype=work):
        return tf.TensorArray(dtype, size=chunks, element_shape=tf.TensorShape(shape))

    arrays = {"loss": array([rows])}
    arrays.update({name: array([rows], tf.int64 if name == "argmax" else work)
                   for name in o.extras})
    if grads:
        arrays["gh"] = array([rows, d])
    # eagerly the weight gradient is summed in place (see _InPlaceSum); in a graph it is a
    # loop variable
    in_place = _InPlaceSum(wk) if grads and _InPlaceSum.usable() else None
    gw0 = tf.zeros_like(wk) if grads and in_place is None else tf.zeros((), work)
    gb0 = tf.zeros((vocab,), work) if grads and b is not None else tf.zeros((), work)

    def body(i, arrays, gw, gb):
        start = i * rows
        hk = tf.cast(tf.slice(hp, [start, 0], [rows, d]), work)
        k = tf.slice(kp, [start], [rows])
        bad = tf.slice(nan_p, [start], [rows])
        safe = tf.where(k, tf.slice(yp, [start], [rows]), tf.zeros((), yp.dtype))
        if o.dim >= WEIGHT_FIRST_MIN_DIM:
            z = tf.transpose(tf.matmul(wk, tf.transpose(hk)))
        else:
            z = tf.matmul(hk, wk, transpose_b=True)
        if bk is not None:
            z = z + bk
        if o.softcap is not None:
            tanh = tf.tanh(z / o.softcap)
            z = tanh * o.softcap
        out = dict(arrays)
        if "argmax" in arrays:
            out["argmax"] = arrays["argmax"].write(i, tf.argmax(z, axis=1))
        row_max = tf.reduce_max(z, axis=1)
        z = z - row_max[:, None]
        z_y = tf.gather(z, safe, batch_dims=1)
        w_z = None if eps == 0 else tf.reduce_mean(z, axis=1) if cw is None \
            else tf.linalg.matvec(z, cw) / vocab
        e = tf.exp(z)
        entropy_sum = tf.reduce_sum(tf.math.xlogy(e, e), axis=1) if "entropy" in arrays else None
        del z  # at most two (chunk, V) buffers alive from here on (three with softcap's tanh)
        sum_exp = tf.reduce_sum(e, axis=1)
        lse = tf.math.log(sum_exp)                        # of the shifted logits
        zero = tf.zeros_like(lse)
        w_y = tf.where(k, tf.ones_like(lse) if cw is None else tf.gather(cw, safe), zero)
        loss = (1 - eps) * w_y * (lse - z_y)
        if w_z is not None:
            loss += eps * (w_mean * lse - w_z)
        full_lse = lse + row_max
        if o.z_loss:
            loss += o.z_loss * w_y * tf.square(full_lse)
        loss = tf.where(bad, nan, tf.where(k, loss, zero))
        out["loss"] = arrays["loss"].write(i, loss)
        if "lse" in arrays:
            out["lse"] = arrays["lse"].write(i, full_lse)
        if "label_logprob" in arrays:
            out["label_logprob"] = arrays["label_logprob"].write(i, tf.where(k, z_y - lse, zero))
        if "entropy" in arrays:
            out["entropy"] = arrays["entropy"].write(i, lse - entropy_sum / sum_exp)
        if grads:
            s = tf.slice(sp, [start], [rows]) if per_row_scale else tf.fill([rows], row_scale)
            s = tf.where(bad, nan, tf.where(k, s, zero))
            coef = (1 - eps) * w_y + eps * w_mean
            if o.z_loss:
                coef += 2 * o.z_loss * w_y * full_lse
            g = e * (s * coef / sum_exp)[:, None]
            del e
            if eps > 0:
                g -= (eps / vocab * s)[:, None] * (1.0 if cw is None else cw[None, :])
            idx = tf.stack([tf.range(rows, dtype=safe.dtype), safe], axis=1)
            g = tf.tensor_scatter_nd_sub(g, idx, (1 - eps) * s * w_y)
            if o.softcap is not None:
                g *= 1 - tf.square(tanh)
            out["gh"] = arrays["gh"].write(i, tf.matmul(g, wk))
            if in_place is None:
                gw = gw + tf.matmul(g, hk, transpose_a=True)
            else:
                in_place.add(tf.matmul(g, hk, transpose_a=True))
            if bk is not None:
                gb = gb + tf.reduce_sum(g, axis=0)
            # eagerly, g was otherwise still alive in the next chunk: a third (chunk, V) buffer
            # beside its logits and exponentials (measured: 3 chunks of temporaries, now 2)
            del g
        return i + 1, out, gw, gb

    _, arrays, gw, gb = tf.while_loop(lambda i, *_: i < chunks, body,
                                      (tf.constant(0), arrays, gw0, gb0), parallel_iterations=1)

    def rows_of(name):
        return tf.reshape(arrays[name].stack(), [chunks * rows] + ([d] if name == "gh" else []))[:n]

    per_item = rows_of("loss")
    extra = [rows_of(name) for name in o.extras]
    if not grads:
        return per_item, extra, (None, None, None)
    if in_place is not None:
        gw = in_place.value()
    return per_item, extra, (rows_of("gh"), gw, gb if b is not None else None)


class _InPlaceSum:
    """A sum of ``(V, d)`` terms held in one buffer, for eager execution.

    Eagerly, ``total + term`` allocates a new buffer while ``total`` and ``term`` are
    alive: three ``(V, d)`` buffers at the peak, and a zero-filled fourth to start from.
    Here ``total`` is a variable made from the first term (its buffer, no copy), and
    each further term is added into it in place (``assign_add``): at most ``total``
    and one term. Not under a distribution strategy, whose scope would turn the
    variable into a distributed one.
    """

    def __init__(self, like):
        self.like, self.total = like, None

    @staticmethod
    def usable():
        return tf.executing_eagerly() and not tf.distribute.has_strategy()

    def add(self, term):
        if self.total is None:
            self.total = tf.Variable(term, trainable=False)
        else:
            self.total.assign_add(term)

    def value(self):
        """The sum (zeros for no terms); shares the variable's buffer, which is then let go."""
        if self.total is None:
            return tf.zeros_like(self.like)
        total, self.total = tf.convert_to_tensor(self.total), None
        return total
