r"""xentlib.tensorflow: the TensorFlow backend, tensor for tensor the same API as :mod:`xentlib.numpy`.

``from xentlib import tensorflow as xl`` gives the names of ``xentlib.numpy``
(all but the NumPy-only ``gradient_descent``) with the same signatures,
formulas and error messages; it is tested against that reference and against
TensorFlow's and Keras' own losses. The extra :func:`keras_loss` wraps any
loss for ``model.compile(loss=...)``.

Conventions (as in :mod:`xentlib.numpy`, plus what is TensorFlow's own)
------------------------------------------------------------------------
* **Inputs** are ``tf.Tensor``/``tf.Variable``; lists and NumPy arrays are
  converted (Python lists become float64, as in NumPy). **Outputs** are tensors.
* **Class axis** is the last one (``axis=-1``), as in Keras and ``tf.nn``;
  PyTorch's is axis 1.
* **Probabilities are exact**: :math:`0 \log 0 = 0` and :math:`p > 0` where
  :math:`q = 0` gives :math:`+\infty`. Keras clips probabilities to
  :math:`[10^{-7}, 1-10^{-7}]` and renormalises categorical rows; this module
  does neither (see ``tests/test_builtins_tensorflow.py`` for the differences).
* **Dtypes**: float64 stays float64, float32 stays float32; float16 and bfloat16
  are computed in float32; building blocks return the input dtype, losses float32.
* **Gradients**: every function is differentiable with ``tf.GradientTape``;
  terms that are 0 by the :math:`0 \log 0` convention have gradient 0, not NaN,
  and so have the focal factors at :math:`q \in \{0, 1\}` and an infinite
  term (:math:`p > 0` at :math:`q = 0`; also where a caller masks it out).
* **Graph mode**: every function works inside ``tf.function``. Shape, dtype and
  option errors raise ``ValueError``/``TypeError`` at trace time. The value
  checks (NaN, probability ranges, sums, label range) raise ``ValueError`` in
  eager mode; in a ``tf.function`` they become ``tf.debugging.Assert`` ops with
  the same message, which raise ``tf.errors.InvalidArgumentError`` when the
  function runs. ``xentlib.value_checks(False)`` skips them (in graph mode it is
  read when the function is traced).
* **Repeated eager calls**: the sparse, categorical and binary cross-entropies
  run as one graph (a ``tf.function``) from the fourth eager call with the same
  tensor shapes, dtypes and options: eager TensorFlow would dispatch each of
  their small operations on its own. Beyond eight such signatures a graph with
  unknown lengths (the ranks kept) serves them all. Two differences follow
  from the graph: the gradient with respect to ``class_weight`` or
  ``pos_weight`` (none flows there) is ``None`` eagerly and zeros from the
  graph; and a second derivative by ``tape.jacobian`` of a gradient fails in
  TensorFlow's vectorizer (pfor) at the loss's ``tf.cond`` once the batch
  length is unknown, in that graph or in any ``tf.function`` traced with a
  ``None`` batch (Keras'): pass ``experimental_use_pfor=False`` (it needs a
  ``persistent=True`` tape).
* **XLA** (``tf.function(jit_compile=True)``, and Keras' default on a GPU)
  compiles the assertions away, so no error can be raised there: a label
  outside ``[0, C)`` (and not ``ignore_index``), and a probability outside
  ``[0, 1]`` (beyond the dtype's tolerance), make their loss NaN instead, as
  TensorFlow's own GPU kernels do for labels, so that a bad batch cannot pass
  unseen (a ``'mean'`` or ``'sum'`` over it is NaN). A distribution that does
  not sum to 1 is not marked.
* **Subnormal numbers**: TensorFlow's CPU kernels flush them to 0; the logs of
  probabilities here read their bits instead, so :math:`-\log 10^{-310}` is
  713.8 in float64, as in NumPy. Under XLA the compiled CPU code reads a
  subnormal input as 0: a float32 target of 1.4e-45 against a probability 0
  adds 0 there, where it is :math:`+\infty` eagerly.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from xentlib import _neutral
from xentlib import _validate as V
from xentlib._docs import public_names, shared
from xentlib._linear_keras import LinearCrossEntropyHead as LinearCrossEntropyHead  # in __all__
from xentlib._linear_tensorflow import linear_cross_entropy as linear_cross_entropy  # in __all__
from xentlib._tensorflow_ops import compiled_when_hot, invalid_labels, move_to_last, widen_float32
from xentlib._tensorflow_ops import front_door as _fd

__all__ = public_names("tensorflow")

_LOW_PRECISION = (tf.float16, tf.bfloat16)


# ---- formula helpers -----------------------------------------------------------

def _compute(x):
    """Work in float32 for float16/bfloat16 inputs: float16 overflows at 65504."""
    return tf.cast(x, tf.float32) if x.dtype in _LOW_PRECISION else x


def _loss_dtype(x):
    return tf.float32 if x.dtype in _LOW_PRECISION else x.dtype


def _wide(x):
    """float32 as float64, for weighted item losses: ``w * loss`` (or a weighted sum over
    classes) can pass float32's maximum where the reduced result does not."""
    return widen_float32(x) if x.dtype == tf.float32 else x


def _common(*xs):
    """The compute-dtype versions of ``xs`` cast to the widest of them (as NumPy promotes)."""
    return _fd.ops.promote(*(_compute(x) for x in xs))


def _log(x):
    r"""``log x``, also for subnormal ``x``, which TensorFlow's CPU kernels flush to 0.

    A positive subnormal is its bits (an integer m) times the smallest subnormal
    :math:`2^{-1074}` (float64) or :math:`2^{-149}` (float32): :math:`\log m - 1074 \log 2`.
    """
    if x.dtype not in (tf.float32, tf.float64):
        return tf.math.log(x)
    info = np.finfo(x.dtype.as_numpy_dtype)
    bits = tf.bitcast(x, tf.int64 if x.dtype == tf.float64 else tf.int32)
    subnormal = (bits > 0) & (bits < tf.bitcast(tf.constant(info.tiny, x.dtype), bits.dtype))
    m = tf.where(subnormal, tf.cast(bits, x.dtype), tf.ones_like(x))
    high = 1000 if x.dtype == tf.float64 else 100
    low = -int(np.log2(info.smallest_subnormal)) - high

    @tf.custom_gradient
    def log_subnormal(x):
        def grad(g):  # 1/x = 2^1074 / m (float32: 2^149 / m) in two normal factors (beyond the
            # max: inf, as torch gives it); 0 where g is 0 (not 0 x inf). MulNoNan, not Mul: in a
            # graph Grappler folds the two constant factors of a Mul chain into one, 2^149: inf
            scaled = tf.math.multiply_no_nan(2.0 ** high / m, g)
            return tf.math.multiply_no_nan(scaled, tf.constant(2.0 ** low, g.dtype))
        return tf.math.log(m) + np.log(info.smallest_subnormal), grad

    # the log of a masked argument: the gradient of log(x) at a flushed x would be 0 x inf (NaN)
    return tf.where(subnormal, log_subnormal(x), tf.math.log(tf.where(subnormal, tf.ones_like(x), x)))


def _sqrt(x):
    r"""``sqrt x``, also for subnormal ``x``, which TensorFlow's CPU kernels flush to 0: its bits
    (an integer m) times :math:`2^{-1074}` have the root :math:`\sqrt m\, 2^{-537}` (float32:
    :math:`\sqrt{2m}\, 2^{-75}`), a normal number."""
    if x.dtype not in (tf.float32, tf.float64):
        return tf.sqrt(x)
    bits = tf.bitcast(x, tf.int64 if x.dtype == tf.float64 else tf.int32)
    subnormal = (bits > 0) & (bits < tf.bitcast(tf.constant(np.finfo(x.dtype.as_numpy_dtype).tiny, x.dtype),
                                                 bits.dtype))
    m = tf.cast(bits, x.dtype)
    root = tf.sqrt(m) * 2.0 ** -537 if x.dtype == tf.float64 else tf.sqrt(2 * m) * 2.0 ** -75
    return tf.where(subnormal, tf.stop_gradient(root), tf.sqrt(x))


def _nonzero(x):
    """``x != 0`` read on the bits: TensorFlow's CPU kernels take a subnormal input for 0."""
    if x.dtype not in (tf.float32, tf.float64):
        return tf.not_equal(x, 0)
    ints = tf.int64 if x.dtype == tf.float64 else tf.int32
    magnitude = tf.bitwise.bitwise_and(tf.bitcast(x, ints), tf.constant(np.iinfo(ints.as_numpy_dtype).max, ints))
    return tf.not_equal(magnitude, 0)


def _scaled(x, term):
    """``x * term`` for ``x >= 0``; ``term`` where it is infinite and ``x`` is not 0: the CPU
    kernels make a subnormal x times inf NaN (x read as 0), where it is inf. The product is of
    a masked term: its gradient to ``x`` would be 0 x inf (NaN) where ``term`` is infinite."""
    infinite = tf.math.is_inf(term)
    return tf.where(infinite, term, x * tf.where(infinite, tf.zeros_like(term), term))


def _xlogy(x, y):
    r""":math:`x \log y` with :math:`0 \log 0 = 0`; ``x >= 0``, ``y >= 0``. The log is of a masked argument:
    where :math:`y = 0` the term is the constant 0 or :math:`-\infty` (a subnormal x too; gradient 0: a
    mask of the product alone passes 0 x inf back, NaN, also where a caller masks an infinite loss).
    Elsewhere the gradient is :math:`\log y` to ``x`` (also at :math:`x = 0`) and :math:`x / y` to ``y``."""
    positive = _nonzero(y)
    terms = x * _log(tf.where(positive, y, tf.ones_like(y)))  # 0 log 1 = 0 where x = y = 0
    return tf.where(positive | ~_nonzero(x), terms, _minus_inf(terms))


def _xlog1p(x, u):
    r""":math:`x \log(1 + u)` as :func:`_xlogy` (constant where :math:`u = -1`)."""
    positive = tf.not_equal(u, -1)
    terms = x * tf.math.log1p(tf.where(positive, u, tf.zeros_like(u)))
    return tf.where(positive | ~_nonzero(x), terms, _minus_inf(terms))


def _minus_inf(like):
    return tf.constant(-np.inf, like.dtype) + tf.zeros_like(like)


def _power(base, gamma):
    r""":math:`b^\gamma` (:math:`b \ge 0`, :math:`\gamma > 0`) with gradient 0 at :math:`b = 0`, where
    :math:`\gamma b^{\gamma - 1}` is 0 x inf (:math:`\gamma < 1`) or multiplies a 0 x inf."""
    zero = ~_nonzero(base)
    powered = tf.where(zero, tf.ones_like(base), base) ** gamma
    return tf.where(zero, tf.zeros_like(powered), powered)


def _clip_unit(x):
    """``x`` clipped to [0, 1] by selection: ``tf.clip_by_value`` flushes subnormals to 0 on
    the CPU, and then :math:`-\\log 10^{-310}` would be inf."""
    return tf.where(x > 1, tf.ones_like(x), tf.where(x < 0, tf.zeros_like(x), x))


def _times(weight, nll):
    """``weight * nll`` with ``0 * inf = 0``: a term of weight 0 adds nothing; ``weight >= 0``
    (a subnormal weight times inf is inf)."""
    unused = ~_nonzero(weight) & tf.math.is_inf(nll)  # only 0 x inf masked: a weight 0 takes its gradient
    zeros = tf.zeros_like(nll)
    return tf.where(unused, zeros, _scaled(weight, tf.where(unused, zeros, nll)))


def _sum(x):
    """The sum of ``x``; float32 items are summed in float64, so that a mean of finite losses
    stays finite, but through a float32 sum (about 10x faster than casting every item)
    unless that one overflows."""
    if x.dtype != tf.float32:
        return tf.reduce_sum(x)
    total = tf.reduce_sum(x)
    return tf.cond(tf.math.is_finite(total), lambda: tf.cast(total, tf.float64),
                   lambda: tf.reduce_sum(tf.cast(x, tf.float64)))


def _reduce(per_item, reduction, denominator=None):
    if reduction == "none":
        return per_item
    wide = tf.float64 if per_item.dtype == tf.float32 else per_item.dtype
    total = _sum(per_item)
    if reduction == "sum":
        return tf.cast(total, per_item.dtype)
    count = tf.cast(tf.cast(tf.size(per_item), wide) if denominator is None else denominator, wide)
    mean = tf.math.divide_no_nan(total, count)  # 0 items -> 0
    if per_item.dtype == tf.float64:  # items near its maximum: their sum overflows, their mean need not
        mean = tf.cond(tf.math.is_inf(total), lambda: tf.reduce_sum(tf.math.divide_no_nan(per_item, count)),
                       lambda: mean)
    return tf.cast(mean, per_item.dtype)


def _shift_by_max(z, axis):
    """``(z - m, m)`` with ``m`` the maximum along ``axis`` (no gradient); exponents of ``z - m`` <= 0."""
    m = tf.reduce_max(z, axis=axis, keepdims=True)
    m = tf.stop_gradient(tf.where(tf.math.is_finite(m), m, tf.zeros_like(m)))  # rows of -inf
    return z - m, m


def _smoothed(y, epsilon, axis):
    """Label smoothing in the compute dtype. The class count K may be known only when it runs:
    then the front door could not bound eps / K, and it is bounded here (at least the smallest
    normal, :func:`xentlib._validate.smoothing_taken`)."""
    y = _compute(y)
    if not epsilon:
        return y
    k = _fd.ops.dim(y, axis)
    if isinstance(k, int):
        uniform = tf.constant(epsilon / k, tf.float64)
    else:
        uniform = tf.maximum(epsilon / tf.cast(k, tf.float64), V.smallest_normal(y.dtype.name))
    return tf.constant(1 - epsilon, y.dtype) * y + tf.cast(uniform, y.dtype)


def _x_log_ratio(a, *bs):
    r""":math:`a \log(a / \prod b)` as :math:`a (\log a - \sum \log b)`, 0 where :math:`a = 0` (there
    a b may be 0): a ratio or product below the smallest normal, which TensorFlow's CPU kernels
    flush to 0, would give :math:`\log 0` (a bfloat16 table with an entry of 1.2e-38 had a
    conditional entropy of inf)."""
    zero = tf.equal(a, 0)
    one = tf.ones_like(a)
    log_b = sum(_log(tf.where(zero, one, b * one)) for b in bs)
    terms = a * (_log(tf.where(zero, one, a)) - log_b)
    return tf.where(zero, tf.zeros_like(terms), terms)


# ---- building blocks -----------------------------------------------------------

@shared
def logsumexp(x, *, axis=-1, keepdims=False):
    """
    Matches ``tf.math.reduce_logsumexp(z, axis)``; the gradient is
    :math:`\\operatorname{softmax}(z)`.
    """
    x, axis = _fd.one_array(x, axis=axis)
    V.check_bool("keepdims", keepdims)
    shifted, m = _shift_by_max(_compute(x), axis)
    out = tf.math.log(tf.reduce_sum(tf.exp(shifted), axis=axis, keepdims=True)) + m
    if not keepdims:
        out = tf.squeeze(out, axis=axis)
    return tf.cast(out, x.dtype)


@shared
def softmax(x, *, axis=-1):
    """
    Matches ``tf.nn.softmax``.
    """
    x, axis = _fd.one_array(x, axis=axis, softmax=True)
    e = tf.exp(_shift_by_max(_compute(x), axis)[0])
    return tf.cast(e / tf.reduce_sum(e, axis=axis, keepdims=True), x.dtype)


@shared
def log_softmax(x, *, axis=-1):
    """
    Computed as ``tf.nn.log_softmax`` does, in the second form.
    """
    x, axis = _fd.one_array(x, axis=axis, softmax=True)
    shifted = _shift_by_max(_compute(x), axis)[0]
    return tf.cast(shifted - tf.math.log(tf.reduce_sum(tf.exp(shifted), axis=axis, keepdims=True)),
                   x.dtype)


@shared
def sigmoid(x):
    x, _ = _fd.one_array(x)
    return tf.cast(tf.exp(-tf.nn.softplus(-_compute(x))), x.dtype)


@shared
def log_sigmoid(x):
    """
    Matches ``tf.math.log_sigmoid``.
    """
    x, _ = _fd.one_array(x)
    return tf.cast(-tf.nn.softplus(-_compute(x)), x.dtype)


# ---- information theory -----------------------------------------------------------

@shared
def entropy(p, *, axis=-1, base=None):
    p, axis, divisor = _fd.distribution_args(p, axis, base)
    pc = _compute(p)
    return tf.cast(-tf.reduce_sum(_xlogy(pc, pc), axis=axis) / divisor, p.dtype)


@shared
def cross_entropy(p, q, *, axis=-1, base=None):
    """
    ``p`` and ``q`` of different float dtypes are computed in the wider one.
    """
    p, q, axis, divisor = _fd.two_distributions(p, q, axis, base)
    h = -tf.reduce_sum(_xlogy(*_common(p, q)), axis=axis) / divisor
    return tf.cast(h, p.dtype)


@shared
def kl_divergence(p, q, *, axis=-1, base=None):
    """
    ``keras.losses.KLDivergence`` clips both arguments to :math:`[10^{-7}, 1]` instead.
    """
    p, q, axis, divisor = _fd.two_distributions(p, q, axis, base)
    pc, qc = _common(p, q)
    zero = ~_nonzero(pc)
    one = tf.ones_like(pc)
    terms = _scaled(pc, _log(tf.where(zero, one, pc)) - _log(tf.where(zero, one, qc)))
    terms = tf.where(zero, tf.zeros_like(terms), terms)
    return tf.cast(tf.reduce_sum(terms, axis=axis) / divisor, p.dtype)


@shared
def joint_entropy(p_xy, *, base=None):
    p_xy, divisor = _fd.joint(p_xy, base)
    pc = _compute(p_xy)
    return tf.cast(-tf.reduce_sum(_xlogy(pc, pc), axis=(-2, -1)) / divisor, p_xy.dtype)


@shared
def conditional_entropy(p_xy, *, base=None):
    p_xy, divisor = _fd.joint(p_xy, base)
    pc = _compute(p_xy)
    p_x = tf.reduce_sum(pc, axis=-1, keepdims=True)
    h = -tf.reduce_sum(_x_log_ratio(pc, p_x), axis=(-2, -1))
    return tf.cast(tf.maximum(h, 0.0) / divisor, p_xy.dtype)


@shared
def mutual_information(p_xy, *, base=None):
    p_xy, divisor = _fd.joint(p_xy, base)
    pc = _compute(p_xy)
    marginals = tf.reduce_sum(pc, axis=-1, keepdims=True), tf.reduce_sum(pc, axis=-2, keepdims=True)
    mi = tf.reduce_sum(_x_log_ratio(pc, *marginals), axis=(-2, -1))
    return tf.cast(tf.maximum(mi, 0.0) / divisor, p_xy.dtype)


# ---- label smoothing ------------------------------------------------------------------

@shared
def smooth_labels(y, epsilon, *, axis=-1):
    y, epsilon, axis = _fd.smoothing(y, epsilon, axis)
    return tf.cast(_smoothed(y, epsilon, axis), y.dtype)


# ---- fast paths from logits: one pass for the softmax, analytic gradients -----------------
#
# ``tf.custom_gradient`` functions that compute the log-sum-exp once in forward, keep
# exp(z - max) for backward and return the gradient in closed form,
# (softmax(z) - smoothed target) * weight / denominator. Gradients flow to the logits (and
# to the targets of the categorical and binary losses), not to class_weight/pos_weight;
# the gradient functions are not themselves differentiable: no second-order gradients.

def _row_factor(g, reduction, like, denominator):
    """Upstream gradient per item for each reduction."""
    if reduction == "none":
        return g
    if reduction == "mean":
        g = tf.math.divide_no_nan(g, denominator)
    return g * tf.ones_like(like)


def _redone_wide_if_not_finite(values, wide, logits_dtype):
    """``values``, or ``wide()`` (the same computed from float64 logits) where the values of
    float32 logits are not all finite: a logit spread beyond float32's maximum gives a
    log-probability of -inf (or a float32 class sum overflows) where the loss may be finite."""
    if logits_dtype != tf.float32:
        return values
    return tf.cond(tf.reduce_all(tf.math.is_finite(values)), lambda: values,
                   lambda: tf.cast(wide(), values.dtype))


def _halved_rows(t, z):
    r""":math:`\sum_c t_c (\operatorname{lse}(z) - z_c)` (classes last) for float64 logits near its
    maximum, every term halved: :math:`m/2 - z_c/2` cannot overflow where :math:`z_c - m` does (see
    the NumPy reference)."""
    half_gap = tf.reduce_max(z, axis=-1, keepdims=True) / 2 - z / 2
    log_s = tf.math.log(tf.reduce_sum(tf.exp(-2 * half_gap), axis=-1))
    return 2 * (tf.reduce_sum(t * half_gap, axis=-1) + tf.reduce_sum(t, axis=-1) * (log_s / 2))


def _finite_where_possible(rows, t, z):
    """``rows`` of float64 logits ``z`` with those that overflowed (or are NaN: a class weight 0
    times -log 0 in a matvec) redone by :func:`_halved_rows` (``t()``: the targets, classes
    last), in one ``tf.cond``."""
    if z.dtype != tf.float64:
        return rows
    finite = tf.math.is_finite(rows)
    return tf.cond(tf.reduce_all(finite), lambda: rows, lambda: tf.where(finite, rows, _halved_rows(t(), z)))


def _shifted(z):
    """The logits minus their row maximum (classes last), and the log of the row sum of their exp."""
    e = z - tf.reduce_max(z, axis=-1, keepdims=True)
    ex = tf.exp(e)
    s = tf.reduce_sum(ex, axis=-1)
    return e, ex, s, tf.math.log(s)


def _sparse_from_logits(labels, z, kept, weight, eps, reduction):
    """Sparse CE from logits ``z`` with classes last; per-item output shaped like ``labels``."""
    dtype = z.dtype
    z2 = tf.reshape(z, tf.stack([-1, tf.shape(z)[-1]]))
    kept2 = tf.reshape(kept, [-1])
    safe = tf.cast(tf.reshape(tf.where(kept, labels, tf.zeros_like(labels)), [-1]), tf.int64)
    num_classes = tf.cast(tf.shape(z2)[1], dtype)
    zeros = tf.zeros_like(kept2, dtype)
    w_y = tf.cast(kept2, dtype) if weight is None else tf.where(kept2, tf.gather(weight, safe), zeros)
    denominator = tf.reduce_sum(w_y)
    total_w = num_classes if weight is None else tf.reduce_sum(weight)

    def items(e, log_s):
        """Per-item losses of the shifted logits ``e`` (0 where not kept), float64 with weights."""
        e_y = tf.gather(e, safe, axis=1, batch_dims=1)
        k = tf.cast(num_classes, e.dtype)
        if weight is None:  # eps = 1 at an nll of inf: 0, not 0 x inf
            per_item = _times((1 - eps) * tf.cast(w_y, e.dtype), log_s - e_y)
            if eps > 0:  # -sum_c log q_c / C
                per_item += eps * (k * log_s - tf.reduce_sum(e, axis=1)) / k
        else:
            per_item = _times((1 - eps) * _wide(w_y), _wide(log_s - e_y))
            if eps > 0:  # -sum_c w_c log q_c / C
                e_w = tf.linalg.matvec(_wide(e), _wide(weight))
                per_item += eps * (_wide(total_w) * _wide(log_s) - e_w) / _wide(k)
        return tf.where(kept2, per_item, tf.zeros_like(per_item))

    def targets():  # t_c = eps w_c / K + (1 - eps) w_y [c = y], 0 for ignored items
        uniform = eps / num_classes * (tf.ones_like(z2) if weight is None else weight + tf.zeros_like(z2))
        t = uniform + tf.one_hot(safe, tf.shape(z2)[1], dtype=dtype) * ((1 - eps) * w_y)[:, None]
        return tf.where(kept2[:, None], t, tf.zeros_like(t))

    @tf.custom_gradient
    def loss(z2):
        e, ex, s, log_s = _shifted(z2)
        per_item = _redone_wide_if_not_finite(
            items(e, log_s), lambda: items(*_shifted(_wide(z2))[::3]), dtype)
        per_item = _finite_where_possible(per_item, targets, z2)
        # float64 with weights (see _wide), back to the logits' dtype at the end; _reduce: a
        # float32 sum that overflows is redone in float64, and a mean over no kept item is 0
        if reduction == "none":
            out = tf.cast(tf.reshape(per_item, tf.shape(labels)), dtype)
        else:
            out = tf.cast(_reduce(per_item, reduction, denominator), dtype)

        def grad(g):
            g = _row_factor(tf.reshape(g, [-1]) if reduction == "none" else g,
                            reduction, w_y, denominator)
            target = (1 - eps) * w_y * g  # 0 for ignored items
            row = target
            if eps > 0:
                uniform_g = tf.where(kept2, g, zeros) * (eps / num_classes)
                row = target + uniform_g * total_w
            dz = ex * (row / s)[:, None]  # softmax = ex / s
            if eps > 0:
                dz -= uniform_g[:, None] * (1.0 if weight is None else weight)
            index = tf.stack([tf.range(tf.size(safe, tf.int64), dtype=tf.int64), safe], axis=1)
            return tf.tensor_scatter_nd_sub(dz, index, target)

        return out, grad

    return loss(z2)


def _categorical_from_logits(target, z, reduction):
    """Categorical CE from logits ``z`` with classes last; gradients for logits and target."""

    def rows(e, log_s, t, total_t):  # -sum_c t_c log q_c, both terms >= 0; 0 (-inf) = 0
        t_e = tf.reduce_sum(tf.where(tf.equal(t, 0), tf.zeros_like(e), t * e), axis=-1)
        return total_t * log_s - t_e

    @tf.custom_gradient
    def loss(z, t):
        e, ex, s, log_s = _shifted(z)
        total_t = tf.reduce_sum(t, axis=-1)
        per_row = _redone_wide_if_not_finite(
            rows(e, log_s, t, total_t),
            lambda: rows(*_shifted(_wide(z))[::3], _wide(t), _wide(total_t)), z.dtype)
        per_row = _finite_where_possible(per_row, lambda: t, z)
        out = _reduce(per_row, reduction)

        def grad(g):
            count = tf.cast(tf.size(per_row), per_row.dtype)
            g = _row_factor(g, reduction, per_row, count)[..., None]
            dz = ex * (total_t[..., None] * g / s[..., None]) - t * g
            dt = -g * (e - log_s[..., None])  # -g log q
            return dz, dt

        return out, grad

    return loss(z, target)


def _binary_from_logits(y, z, w_pos, eps, reduction):
    """Binary CE from logits; gradients for logits and targets. ``y`` is smoothed here, so that
    the target gradient takes its factor 1 - eps before the weight: it is then inf only where
    it is beyond the maximum (the smoothed targets' gradient times 1 - eps may overflow first)."""

    @tf.custom_gradient
    def loss(z, y):
        t = _neutral.smoothed_binary(y, eps) if eps else y
        if w_pos is None:  # -log sigma(z) = softplus(-z), as TF computes log_sigmoid: one op fewer
            per_elem = (1 - t) * z + tf.math.softplus(-z)
        else:  # (w t + 1 - t) log p may overflow where the element does not: then two terms >= 0
            log_p = tf.math.log_sigmoid(z)  # log(1 - sigma(z)) = log_p - z
            per_elem = (1 - t) * z - (w_pos * t + (1 - t)) * log_p
            per_elem = tf.cond(tf.reduce_all(tf.math.is_finite(per_elem)), lambda: per_elem,
                               lambda: -(w_pos * t) * log_p + (1 - t) * tf.math.softplus(z))
        out = _reduce(per_elem, reduction)

        def grad(g):
            count = tf.cast(tf.size(per_elem), per_elem.dtype)
            g = _row_factor(g, reduction, per_elem, count)
            sig, g_y = tf.sigmoid(z), g * (1 - eps)
            if w_pos is None:
                return (sig - t) * g, -z * g_y
            wt = w_pos * t  # d/dt = w softplus(-z) - softplus(z): two terms >= 0, the weight last
            return ((sig * (wt + (1 - t)) - wt) * g,
                    g_y * tf.math.softplus(-z) * w_pos - g_y * tf.math.softplus(z))

        return out, grad

    return loss(z, y)


# ---- losses -------------------------------------------------------------------------

@shared
@compiled_when_hot
def categorical_cross_entropy(y_true, y_pred, *, from_logits=False, label_smoothing=0.0,
                              axis=-1, reduction="mean"):
    """
    As ``keras.losses.CategoricalCrossentropy``, but not clipped; with logits it
    equals ``tf.nn.softmax_cross_entropy_with_logits``, with an analytic
    gradient (``tf.custom_gradient``: softmax computed once) to the logits and
    targets.
    """
    y_true, y_pred, label_smoothing, axis = _fd.categorical(
        y_true, y_pred, from_logits, label_smoothing, axis, reduction)
    target, z = _common(_smoothed(y_true, label_smoothing, axis), y_pred)
    if from_logits:
        per_row = _categorical_from_logits(move_to_last(target, axis), move_to_last(z, axis), "none")
    else:
        per_row = -tf.reduce_sum(_xlogy(target, z), axis=axis)
    return tf.cast(_reduce(per_row, reduction), _loss_dtype(y_pred))


@shared
@compiled_when_hot
def sparse_categorical_cross_entropy(labels, y_pred, *, from_logits=False, label_smoothing=0.0,
                                     ignore_index=None, class_weight=None, axis=-1,
                                     reduction="mean"):
    """
    Without options it equals ``tf.nn.sparse_softmax_cross_entropy_with_logits``;
    ``ignore_index`` gives the mean of
    ``keras.losses.SparseCategoricalCrossentropy(ignore_class=...)``, but with
    ``class_weight`` the mean divides by the summed weights, not the item
    count as Keras' ``sample_weight`` does. Keras passes labels as floats: use
    :func:`keras_loss`. From logits the gradient is analytic
    (``tf.custom_gradient``) and flows to the logits, not to ``class_weight``.
    """
    args = _fd.sparse(labels, y_pred, from_logits, label_smoothing, ignore_index, class_weight,
                      axis, reduction)
    return _sparse(*args, from_logits, reduction)


def _sparse(labels, y_pred, label_smoothing, ignore_index, weight, axis, num_classes,
            from_logits, reduction):
    z = move_to_last(_compute(y_pred), axis)
    kept = tf.ones_like(labels, tf.bool) if ignore_index is None else tf.not_equal(labels, ignore_index)
    if weight is not None:
        weight = tf.cast(weight, z.dtype)
    if from_logits:
        out = _sparse_from_logits(labels, z, kept, weight, label_smoothing, reduction)
    else:
        per_item, w_y = _sparse_terms(labels, z, kept, weight, label_smoothing, num_classes)
        out = _reduce(per_item, reduction, denominator=tf.reduce_sum(w_y))
    if not tf.executing_eagerly() and V.value_checks_enabled():
        out = _nan_where_invalid(out, invalid_labels(labels, num_classes, ignore_index), reduction)
    return tf.cast(out, _loss_dtype(y_pred))


def _nan_where_invalid(out, invalid, reduction):
    """In a graph (where XLA drops the label assertion): NaN for a bad label, not a silent number."""
    nan = tf.constant(np.nan, out.dtype)
    if reduction == "none":
        return tf.where(invalid, nan, out)
    return tf.where(tf.reduce_any(invalid), nan, out)


def _sparse_terms(labels, z, kept, weight, label_smoothing, num_classes):
    """Per-item losses from probabilities (0 where not kept) and their weights w[y]; classes last."""
    safe = tf.where(kept, labels, tf.zeros_like(labels))
    q = tf.where(kept[..., None], z, tf.ones_like(z))  # gather first: log(0) at other classes
    q_y = tf.gather(q, safe, axis=-1, batch_dims=labels.shape.rank)
    w_y = tf.ones_like(q_y) if weight is None else tf.gather(weight, safe)
    w_y = tf.where(kept, w_y, tf.zeros_like(w_y))
    # a weight 0 at a probability 0: a term 0, and no gradient through log 0 (0 x inf: NaN)
    unused = ~_nonzero(w_y) & ~_nonzero(q_y)
    nll = -_log(tf.where(unused, tf.ones_like(q_y), q_y))
    if weight is not None:
        nll, w_y = _wide(nll), _wide(w_y)
    per_item = _times((1 - label_smoothing) * w_y, nll)
    if label_smoothing > 0:
        if weight is None:
            w_log_q = _log(q)
        else:  # a class of weight 0 adds nothing, even where its probability is 0 (0 log 0 = 0)
            log_q = _log(tf.where(tf.equal(weight, 0), tf.ones_like(q), q))
            w_log_q = -_times(_wide(weight), -_wide(log_q))
        uniform = -tf.reduce_sum(w_log_q, axis=-1) / tf.cast(num_classes, w_log_q.dtype)
        # eps x inf kept inf: in a graph Grappler folds eps / K, below the smallest normal for
        # eps = 1.2e-38, to 0 (0 x inf: NaN)
        per_item = per_item + _scaled(label_smoothing, tf.where(kept, uniform, tf.zeros_like(uniform)))
    return tf.where(kept, per_item, tf.zeros_like(per_item)), w_y


def _complement(y0, epsilon):
    """The smoothed complement of the targets ``y0`` (not 1 - the smoothed target: see
    :func:`xentlib._neutral.smoothed_binary`)."""
    not_y = _neutral.smoothed_binary(1 - y0, epsilon)
    if epsilon:  # in a graph Grappler reassociates it, (1 - eps + eps/2) - y (1 - eps): 0 at y = 1;
        # there eps/2, with the gradient -(1 - eps) to y0 still (a maximum, 0 at y0 = 1, which
        # Grappler does not distribute; its gradient at the tie goes to the first argument)
        zero = tf.maximum((tf.stop_gradient(y0) - y0) * (1 - epsilon), tf.zeros_like(y0))
        at_one = zero + epsilon / 2
        not_y = tf.where(tf.equal(y0, 1), at_one, not_y)
    return not_y


@shared
@compiled_when_hot
def binary_cross_entropy(y_true, y_pred, *, from_logits=False, label_smoothing=0.0,
                         pos_weight=None, reduction="mean"):
    """
    As ``keras.losses.BinaryCrossentropy``, but probabilities are not clipped
    (Keras clips them to :math:`[10^{-7}, 1-10^{-7}]`); ``pos_weight`` as in
    ``tf.nn.weighted_cross_entropy_with_logits``. With logits it equals
    ``tf.nn.sigmoid_cross_entropy_with_logits``, with an analytic gradient
    (``tf.custom_gradient``) to the logits and targets, not to ``pos_weight``.
    """
    y_true, y_pred, label_smoothing, pos_weight = _fd.binary(
        y_true, y_pred, from_logits, label_smoothing, pos_weight, reduction)
    z = _compute(y_pred)
    y0 = tf.cast(_compute(y_true), z.dtype)  # cast once: a 16-bit target's gradient is summed in z's dtype
    w_pos = None if pos_weight is None else tf.cast(pos_weight, z.dtype)
    if from_logits:
        out = _binary_from_logits(y0, z, w_pos, label_smoothing, reduction)
        return tf.cast(out, _loss_dtype(y_pred))
    y = _neutral.smoothed_binary(y0, label_smoothing) if label_smoothing else y0
    q = _clip_unit(z)  # 1 + 1e-16 from round-off: log(1 - q) stays real
    positive = _xlogy(y, q) if w_pos is None else _times(w_pos, _xlogy(y, q))  # 0 * -inf = 0
    not_y = _complement(y0, label_smoothing)
    per_elem = -(positive + _xlogy(not_y, 1 - q))
    return tf.cast(_reduce(per_elem, reduction), _loss_dtype(y_pred))


@shared
def mean_squared_error(y_true, y_pred, *, reduction="mean"):
    """
    Keras' ``MeanSquaredError`` averages the last axis first; the ``'mean'``
    values agree.
    """
    y_true, y_pred = _fd.regression(y_true, y_pred, reduction)
    y, z = _common(y_true, y_pred)
    return tf.cast(_reduce(tf.square(y - z), reduction), _loss_dtype(y_pred))


@shared
def gaussian_nll(y_true, mean, variance=1.0, *, full=True, reduction="mean"):
    y_true, mean, variance = _fd.gaussian(y_true, mean, variance, full, reduction)
    y, mu, var = _common(y_true, mean, variance)
    # a subnormal variance, which TensorFlow's kernels flush to 0, keeps its root and log
    per_elem = _neutral.squared_error_over_twice_variance(y, mu, _sqrt(var)) + 0.5 * _log(var)
    if full:
        per_elem = per_elem + 0.5 * np.log(2 * np.pi)
    per_elem = tf.broadcast_to(per_elem, tf.shape(y_true))
    return tf.cast(_reduce(per_elem, reduction), _loss_dtype(mean))


@shared
def perplexity(labels, logits, *, ignore_index=None, axis=-1):
    """
    At least one token must be kept (checked even under ``value_checks(False)``, as in NumPy).
    """
    return tf.exp(_sparse(*_fd.perplexity(labels, logits, ignore_index, axis), True, "mean"))


@shared
def softmax_cross_entropy_grad(y_true, logits, *, axis=-1):
    """
    Equals ``tf.GradientTape`` on ``tf.nn.softmax_cross_entropy_with_logits``
    summed over the batch.
    """
    y_true, logits, axis = _fd.gradient(y_true, logits, axis)
    y, z = _common(y_true, logits)
    return tf.cast(tf.nn.softmax(z, axis=axis) - y, logits.dtype)


@shared
def sigmoid_cross_entropy_grad(y_true, logits):
    y_true, logits, _ = _fd.gradient(y_true, logits)
    y, z = _common(y_true, logits)
    return tf.cast(tf.sigmoid(z) - y, logits.dtype)


# ---- focal losses ---------------------------------------------------------------------

def _others_log_sum_exp(z):
    r""":math:`\log\sum_{j \ne c} e^{z_j}` per class (classes last): prefix and suffix log-sum-exps.
    Of logits shifted by their maximum: near 1e38 unshifted, :math:`+\log 2` is lost to rounding."""
    pad = tf.fill(tf.concat([tf.shape(z)[:-1], [1]], 0), tf.constant(-np.inf, z.dtype))
    before = tf.concat([pad, tf.math.cumulative_logsumexp(z, axis=-1)[..., :-1]], -1)
    after = tf.concat([tf.math.cumulative_logsumexp(z, axis=-1, reverse=True)[..., 1:], pad], -1)
    return _logaddexp(before, after)


class _Math:
    """TensorFlow's math for the formulas written once in :mod:`xentlib._neutral`."""
    exp, log, log1p, sigmoid, tanh, abs, sign = (tf.exp, tf.math.log, tf.math.log1p, tf.sigmoid,
                                                 tf.tanh, tf.abs, tf.sign)
    isinf, log_sigmoid, softplus = tf.math.is_inf, tf.math.log_sigmoid, tf.math.softplus

    @staticmethod
    def logaddexp(a, b):
        return _logaddexp(a, b)

    @staticmethod
    def where(c, x, y):  # x or y may be a Python number
        like = x if tf.is_tensor(x) else y
        return tf.where(c, tf.cast(x, like.dtype), tf.cast(y, like.dtype))

    @staticmethod
    def minimum(x, c):
        return tf.minimum(x, tf.cast(c, x.dtype))

    @staticmethod
    def maximum(x, c):
        return tf.maximum(x, tf.cast(c, x.dtype))

    @staticmethod
    def softmax(z):
        return tf.nn.softmax(z, axis=-1)

    @staticmethod
    def sum_last(x):
        return tf.reduce_sum(x, axis=-1, keepdims=True)


def _broadcast(a, b):
    shape = tf.broadcast_dynamic_shape(tf.shape(a), tf.shape(b))
    return tf.broadcast_to(a, shape), tf.broadcast_to(b, shape)


def _binary_focal_from_logits(z, y, gamma):
    r""":math:`(1 - p_t)^\gamma\,\mathrm{ce}` per element from logits, with the gradients of
    :func:`xentlib._neutral.binary_focal_logit_gradients`."""

    @tf.custom_gradient
    def terms(z, y):
        log_p, log_not_p, not_y = tf.math.log_sigmoid(z), tf.math.log_sigmoid(-z), 1 - y
        value = -(_times(y, log_p) + _times(not_y, log_not_p))
        if gamma:
            value = _scaled(tf.exp(gamma * _logaddexp(tf.math.log(y) + log_not_p, tf.math.log1p(-y) + log_p)), value)
        return value, lambda g: _neutral.binary_focal_logit_gradients(_Math, z, y, gamma, g)

    return terms(*_broadcast(z, y))


def _categorical_focal_from_logits(z, t, gamma):
    r""":math:`t_c (1 - q_c)^\gamma (-\log q_c)` per class from logits (classes last), with the
    gradients of :func:`xentlib._neutral.categorical_focal_logit_gradients`."""

    @tf.custom_gradient
    def terms(z, t):
        shifted = z - tf.reduce_max(z, axis=-1, keepdims=True)
        others = _others_log_sum_exp(shifted)
        value = _times(t, -tf.nn.log_softmax(z, axis=-1))
        if gamma:
            log_rest = others - tf.reduce_logsumexp(shifted, axis=-1, keepdims=True)  # log(1 - q)
            value = _scaled(tf.exp(gamma * log_rest), value)
        return value, lambda g: _neutral.categorical_focal_logit_gradients(_Math, shifted, others, t, gamma, g)

    return terms(*_broadcast(z, t))


def _logaddexp(a, b):
    r""":math:`\log(e^a + e^b)`; :math:`-\infty` when both are."""
    top = tf.maximum(a, b)
    top = tf.where(tf.math.is_inf(top), tf.zeros_like(top), top)
    return top + tf.math.log(tf.exp(a - top) + tf.exp(b - top))


def _move_back(x, axis):
    """Undo :func:`move_to_last`."""
    rank = x.shape.rank
    if axis == rank - 1:
        return x
    perm = list(range(rank - 1))
    perm.insert(axis, rank - 1)
    return tf.transpose(x, perm)


@shared
def binary_focal_cross_entropy(y_true, y_pred, *, gamma=2.0, alpha=None, from_logits=False,
                               label_smoothing=0.0, reduction="mean"):
    """
    ``keras.losses.BinaryFocalCrossentropy`` with ``apply_class_balancing=True``
    is ``alpha`` given here; from logits both are exact, from probabilities
    Keras clips them to :math:`[10^{-7}, 1 - 10^{-7}]`.
    """
    y_true, y_pred, label_smoothing, gamma, alpha = _fd.binary_focal(
        y_true, y_pred, gamma, alpha, from_logits, label_smoothing, reduction)
    z = _compute(y_pred)
    y0 = tf.cast(_compute(y_true), z.dtype)
    y = _neutral.smoothed_binary(y0, label_smoothing)
    miss = None
    if from_logits:  # the focal factor times the cross-entropy, gradients in log space
        ce, not_y = _binary_focal_from_logits(z, y, gamma), 1 - y
    else:  # the logs and the power of masked arguments: no 0 x inf in the gradient at q = 0 or 1
        q = _clip_unit(z)
        not_y = _complement(y0, label_smoothing)
        miss = _power(_neutral.binary_miss(y, not_y, q), gamma) if gamma else None
        ce = -(_xlogy(y, q) + _xlog1p(not_y, -q))
    per_elem = _neutral.binary_focal(_times, _scaled, _neutral.unfrozen, y, not_y, ce, miss, alpha)
    return tf.cast(_reduce(per_elem, reduction), _loss_dtype(y_pred))


@shared
def categorical_focal_cross_entropy(y_true, y_pred, *, gamma=2.0, alpha=None, from_logits=False,
                                    label_smoothing=0.0, axis=-1, reduction="mean"):
    """
    ``keras.losses.CategoricalFocalCrossentropy`` applies ``alpha=0.25`` by
    default and clips probabilities: at logits ``[100, -100]``, target class 1,
    it returns 4.0295 where this returns 50 (with ``alpha=0.25``).
    """
    y_true, y_pred, label_smoothing, axis, gamma, alpha = _fd.categorical_focal(
        y_true, y_pred, gamma, alpha, from_logits, label_smoothing, axis, reduction)
    z = _compute(y_pred)
    target = tf.cast(_smoothed(y_true, label_smoothing, axis), z.dtype)

    def rows(z, target):
        miss = None
        if from_logits:  # the focal factor times the terms, gradients in log space
            terms = _move_back(_categorical_focal_from_logits(move_to_last(z, axis), move_to_last(target, axis),
                                                              gamma), axis)
        else:  # masked arguments, as in binary_focal_cross_entropy
            terms = -_xlogy(target, z)
            miss = _power(_clip_unit(1 - z), gamma) if gamma else None
        # a float alpha straight in z's dtype (tf.cast would round it to float32 first)
        weight = None if alpha is None else (tf.constant(alpha, z.dtype) if isinstance(alpha, float)
                                             else tf.cast(alpha, z.dtype)) + tf.zeros_like(z)  # for tf.where
        terms = _neutral.categorical_focal(_times, _scaled, _neutral.unfrozen, terms, miss, weight)
        return tf.reduce_sum(terms, axis=axis)

    per_row = rows(z, target)
    if from_logits:
        per_row = _redone_wide_if_not_finite(per_row, lambda: rows(_wide(z), _wide(target)), z.dtype)
    return tf.cast(_reduce(per_row, reduction), _loss_dtype(y_pred))


# ---- calibration ----------------------------------------------------------------------
#
# Metrics, not losses: the bins are counted on the host (in a tf.function by one
# tf.numpy_function, so not under XLA).

@shared
def expected_calibration_error(labels, probs, *, n_bins=10, binning="width", axis=-1):
    probs, count, gap = _fd.calibration(labels, probs, n_bins, binning, axis)
    return tf.cast(tf.reduce_sum(gap) / tf.reduce_sum(count), _loss_dtype(probs))


@shared
def maximum_calibration_error(labels, probs, *, n_bins=10, binning="width", axis=-1):
    probs, count, gap = _fd.calibration(labels, probs, n_bins, binning, axis)
    return tf.cast(tf.reduce_max(gap / count), _loss_dtype(probs))


@shared
def brier_score(labels, probs, *, axis=-1, reduction="mean"):
    labels, probs = _fd.scored(labels, probs, axis, reduction)
    p = _compute(probs)
    per_item = tf.reduce_sum(tf.square(p - tf.one_hot(labels, tf.shape(p)[-1], dtype=p.dtype)), axis=-1)
    return tf.cast(_reduce(per_item, reduction), _loss_dtype(probs))


@shared
def fit_temperature(logits, labels, *, axis=-1):
    """
    Eager tensors only; the one-dimensional search runs in the NumPy reference.
    """
    from xentlib import numpy as reference

    logits, labels, axis, like = _fd.temperature(logits, labels, axis)
    return tf.constant(reference.fit_temperature(logits, labels, axis=axis), _loss_dtype(like))


# ---- Keras ---------------------------------------------------------------------------

def keras_loss(fn, *, name=None, **kwargs):
    r"""A loss of this module as a serialisable ``keras.losses.Loss`` for ``model.compile``.

    Returns :class:`xentlib.keras.Loss` ``(fn, name=name, **kwargs)``: Keras 3
    converts ``y_true`` to the loss dtype (float32) before calling a loss, so
    integer labels reach :func:`sparse_categorical_cross_entropy` as floats,
    which it rejects; the wrapper casts them back (dropping a trailing length-1
    axis, as Keras does), adapts a length-1 axis of other targets to ``y_pred``,
    forwards ``kwargs`` (``from_logits``, ``ignore_index``, ``class_weight``, ...)
    and takes ``sample_weight`` as Keras' own losses do. A model compiled with
    it saves and loads (``import xentlib.keras`` before ``keras.models.load_model``).
    Losses with float targets also work unwrapped: ``compile(loss=xl.binary_cross_entropy)``.

    .. math:: L = \frac{\sum_n s_n\, \ell_n}{N_{\text{kept}}},
       \qquad \ell_n = \texttt{fn}\big(\operatorname{int}(y_n),\ \hat y_n,\ \texttt{**kwargs}\big)

    >>> from xentlib import tensorflow as xl
    >>> loss = xl.keras_loss("sparse_categorical_cross_entropy", from_logits=True, ignore_index=-1)
    >>> round(float(loss([0.0, -1.0], [[2.0, 0.5], [0.0, 0.0]])), 6)   # labels as Keras passes them
    0.201413
    """
    import xentlib.keras

    if callable(fn) and getattr(fn, "__module__", "") == __name__:
        fn = fn.__name__
    if not isinstance(fn, str):
        raise TypeError(f"fn must be a loss function of xentlib.tensorflow or its name; got {fn!r}")
    return xentlib.keras.Loss(fn, name=name, **kwargs)
