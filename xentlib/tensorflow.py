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
  terms that are 0 by the :math:`0 \log 0` convention have gradient 0, not NaN.
* **Graph mode**: every function works inside ``tf.function``. Shape, dtype and
  option errors raise ``ValueError``/``TypeError`` at trace time. The value
  checks (NaN, probability ranges, sums, label range) raise ``ValueError`` in
  eager mode; in a ``tf.function`` they become ``tf.debugging.Assert`` ops with
  the same message, which raise ``tf.errors.InvalidArgumentError`` when the
  function runs. ``xentlib.value_checks(False)`` skips them (in graph mode it is
  read when the function is traced). XLA compiles the assertions away.
"""
from __future__ import annotations

import re

import numpy as np
import tensorflow as tf

from xentlib import _validate as V

__all__ = [
    "logsumexp", "softmax", "log_softmax", "sigmoid", "log_sigmoid",
    "entropy", "cross_entropy", "kl_divergence",
    "joint_entropy", "conditional_entropy", "mutual_information",
    "smooth_labels",
    "categorical_cross_entropy", "sparse_categorical_cross_entropy",
    "binary_cross_entropy",
    "mean_squared_error", "gaussian_nll", "perplexity",
    "softmax_cross_entropy_grad", "sigmoid_cross_entropy_grad",
    "linear_cross_entropy",
    "keras_loss",
]

_LOW_PRECISION = (tf.float16, tf.bfloat16)


# ---- input handling ----------------------------------------------------------

def _float_tensor(x, name):
    """``x`` as a floating tensor; Python numbers and lists become float64."""
    if isinstance(x, (np.ndarray, np.generic)):
        if x.dtype.kind != "f" and x.dtype.name != "bfloat16":  # ml_dtypes' bfloat16 is kind 'V'
            raise V.not_float(name, x.dtype)
        x = tf.convert_to_tensor(x)
    elif not (tf.is_tensor(x) or isinstance(x, tf.Variable)):
        try:
            x = tf.convert_to_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be an array of floats; got {type(x).__name__}") from None
    if not x.dtype.is_floating:
        raise V.not_float(name, x.dtype.name)
    x = tf.convert_to_tensor(x)
    if x.shape.rank is None:
        raise ValueError(f"{name} must have a known rank (number of dimensions)")
    return x


def _label_tensor(labels, name="labels"):
    if not (tf.is_tensor(labels) or isinstance(labels, tf.Variable)):
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu":
            raise V.not_integer(name, labels.dtype)
        labels = tf.convert_to_tensor(labels)
    if not labels.dtype.is_integer:
        raise V.not_integer(name, labels.dtype.name)
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank is None:
        raise ValueError(f"{name} must have a known rank (number of dimensions)")
    return tf.cast(labels, tf.int64)


def _compute(x):
    """Work in float32 for float16/bfloat16 inputs: float16 overflows at 65504."""
    return tf.cast(x, tf.float32) if x.dtype in _LOW_PRECISION else x


def _loss_dtype(x):
    return tf.float32 if x.dtype in _LOW_PRECISION else x.dtype


def _shape(x):
    return tuple(x.shape.as_list()) if x.shape.rank is not None else ()


def _dim(x, axis):
    """Static length of ``x`` along ``axis``, or a scalar tensor when unknown."""
    n = x.shape[axis]
    return int(n) if n is not None else tf.shape(x)[axis]


def _same_shape(a, a_name, b, b_name):
    if not a.shape.is_compatible_with(b.shape):
        raise V.shape_mismatch(a_name, _shape(a), b_name, _shape(b))
    _same_runtime_shape(a, a_name, b, b_name)


def _same_runtime_shape(a, a_name, b, b_name):
    """In a graph with unknown dimensions (e.g. the batch), check when it runs."""
    if not (a.shape.is_fully_defined() and b.shape.is_fully_defined()):
        return tf.debugging.assert_equal(
            tf.shape(a, tf.int64), tf.shape(b, tf.int64),
            message=f"{a_name} and {b_name} must have the same shape")


def _py(value):
    return value.numpy().item() if tf.is_tensor(value) else value


def _require(ok, builder, *args):
    """Raise ``builder(*args)`` unless ``ok`` (a boolean scalar tensor).

    Eager: a ``ValueError``. Graph: a ``tf.debugging.Assert`` with the same text,
    tensor arguments filled in when it fails, returned so that ops which would
    fail on their own (a gather at a bad label) can be made to run after it.
    Tensor ``args`` are scalars.
    """
    if tf.executing_eagerly():
        if not bool(ok):
            raise builder(*[_py(a) for a in args])
        return
    slots, fake = {}, []
    for i, a in enumerate(args):
        if tf.is_tensor(a):
            sentinel = 918273 + 2 * i  # formats the same with {} and {:.6g}
            slots[str(sentinel)] = a
            a = sentinel
        fake.append(a)
    text = str(builder(*fake))
    parts = re.split("(" + "|".join(slots) + ")", text) if slots else [text]
    return tf.debugging.Assert(ok, [slots.get(p, p) for p in parts if p], summarize=1)


def _check_logits(z, name):
    if not V.value_checks_enabled():
        return
    if z.dtype in (tf.float32, tf.float64):  # one pass: a finite sum means no NaN/inf (else look closer)
        ok = tf.cond(tf.math.is_finite(tf.reduce_sum(z)), lambda: tf.constant(True),
                     lambda: tf.reduce_all(tf.math.is_finite(z)))
    else:  # a 16-bit sum overflows easily
        ok = tf.reduce_all(tf.math.is_finite(z))
    _require(ok, V.not_finite, name)


def _check_finite_values(x, name):
    if V.value_checks_enabled():
        _require(tf.logical_not(tf.reduce_any(tf.math.is_nan(x))), V.has_nan, name)


def _check_probabilities(p, name):
    if not V.value_checks_enabled():
        return
    # Fast reductions only: a sum is NaN only if some value is NaN (or +inf meets -inf: look closer).
    has_nan = tf.cond(tf.math.is_nan(tf.reduce_sum(p)), lambda: tf.reduce_any(tf.math.is_nan(p)),
                      lambda: tf.constant(False))
    _require(tf.logical_not(has_nan), V.has_nan, name)
    # Round-off may push a sum of probabilities a few ulps above 1: tolerated.
    low, high = tf.reduce_min(p), tf.reduce_max(p)
    ok = (low >= 0) & (high <= 1 + V.sum_tolerance(p.dtype.name))
    _require(ok, V.not_probability, name, low, high)


def _worst_sum(sums):
    """The sum farthest from 1 (1 for an empty input)."""
    dev = tf.concat([tf.zeros([1], sums.dtype), tf.reshape(sums - 1, [-1])], 0)
    return 1 + tf.gather(dev, tf.argmax(tf.abs(dev)))


def _check_distribution(p, name, axis):
    _check_probabilities(p, name)
    if V.value_checks_enabled():
        tol = V.sum_tolerance(p.dtype.name)
        exact = lambda: _worst_sum(tf.reduce_sum(tf.cast(p, tf.float64), axis=axis))  # noqa: E731
        if p.dtype == tf.float64:
            worst = exact()
        else:  # a fast float32 sum settles rows clearly within tolerance; float64 otherwise
            quick = tf.reduce_sum(tf.cast(p, tf.float32), axis=axis)
            clear = tf.reduce_all(tf.abs(quick - 1) <= tol / 4)
            worst = tf.cond(clear, lambda: tf.constant(1.0, tf.float64), exact)
        _require(tf.abs(worst - 1) <= tol, V.not_distribution, name, worst, tol, axis)


def _check_real_values(x, name):
    """Neither NaN nor +-inf (regression values: inf - inf would be a silent NaN)."""
    _check_finite_values(x, name)
    if V.value_checks_enabled():
        _require(tf.logical_not(tf.reduce_any(tf.math.is_inf(x))), V.has_inf, name)


def _check_softmax_input(x, axis):
    """+inf, or a slice of only -inf, makes softmax 0/0 or inf/inf: NaN."""
    if V.value_checks_enabled():
        m = tf.reduce_max(x, axis=axis)
        _require(tf.logical_not(tf.reduce_any(tf.math.is_inf(m))), V.softmax_undefined, "x", axis)


def _xlogy(x, y):
    r""":math:`x \log y` with :math:`0 \log y = 0`, and gradient 0 (not NaN) there."""
    zero = tf.equal(x, 0)
    return tf.where(zero, tf.zeros_like(x), x * tf.math.log(tf.where(zero, tf.ones_like(y), y)))


def _reduce(per_item, reduction, denominator=None):
    if reduction == "none":
        return per_item
    total = tf.reduce_sum(per_item)
    if reduction == "sum":
        return total
    count = tf.cast(tf.size(per_item), total.dtype) if denominator is None else denominator
    return tf.math.divide_no_nan(total, tf.cast(count, total.dtype))  # 0 items -> 0


def _shift_by_max(z, axis):
    """``(z - m, m)`` with ``m`` the maximum along ``axis`` (no gradient); exponents of ``z - m`` <= 0."""
    m = tf.reduce_max(z, axis=axis, keepdims=True)
    m = tf.stop_gradient(tf.where(tf.math.is_finite(m), m, tf.zeros_like(m)))  # rows of -inf
    return z - m, m


def _move_to_last(x, axis):
    if axis == x.shape.rank - 1:
        return x
    perm = [d for d in range(x.shape.rank) if d != axis] + [axis]
    return tf.transpose(x, perm)


# ---- building blocks -----------------------------------------------------------

def logsumexp(x, *, axis=-1, keepdims=False):
    r"""Log-sum-exp, computed without overflow.

    .. math:: \operatorname{LSE}(z) = m + \log \sum_i e^{z_i - m}, \qquad m = \max_i z_i

    Matches ``tf.math.reduce_logsumexp(z, axis)``; the gradient is
    :math:`\operatorname{softmax}(z)`.

    >>> from xentlib import tensorflow as xl
    >>> float(xl.logsumexp([1000.0, 1000.0]))   # naive: log(inf) = inf
    1000.6931471805599
    """
    x = _float_tensor(x, "x")
    axis = V.normalize_axis(axis, x.shape.rank)
    _check_finite_values(x, "x")
    shifted, m = _shift_by_max(_compute(x), axis)
    out = tf.math.log(tf.reduce_sum(tf.exp(shifted), axis=axis, keepdims=True)) + m
    if not keepdims:
        out = tf.squeeze(out, axis=axis)
    return tf.cast(out, x.dtype)


def softmax(x, *, axis=-1):
    r"""Softmax: turns logits into a probability distribution.

    .. math:: \operatorname{softmax}(z)_i = \frac{e^{z_i}}{\sum_j e^{z_j}} = e^{z_i - \operatorname{LSE}(z)}

    Invariant to adding a constant to every logit. Matches ``tf.nn.softmax``.

    >>> from xentlib import tensorflow as xl
    >>> xl.softmax([1.0, 2.0, 3.0]).numpy().round(4)
    array([0.09  , 0.2447, 0.6652])
    """
    x = _float_tensor(x, "x")
    axis = V.normalize_axis(axis, x.shape.rank)
    _check_finite_values(x, "x")
    _check_softmax_input(x, axis)
    e = tf.exp(_shift_by_max(_compute(x), axis)[0])
    return tf.cast(e / tf.reduce_sum(e, axis=axis, keepdims=True), x.dtype)


def log_softmax(x, *, axis=-1):
    r"""Log-softmax, the log-probabilities of a categorical distribution.

    .. math:: \log \operatorname{softmax}(z)_i = z_i - \operatorname{LSE}(z)
              = (z_i - m) - \log \sum_j e^{z_j - m}

    The second form (as ``tf.nn.log_softmax`` computes it) avoids cancellation
    between two large numbers for the dominant class. Finite for every finite
    input, unlike ``log(softmax(z))``.

    >>> from xentlib import tensorflow as xl
    >>> xl.log_softmax([0.0, 1000.0]).numpy().tolist()
    [-1000.0, 0.0]
    """
    x = _float_tensor(x, "x")
    axis = V.normalize_axis(axis, x.shape.rank)
    _check_finite_values(x, "x")
    _check_softmax_input(x, axis)
    shifted = _shift_by_max(_compute(x), axis)[0]
    return tf.cast(shifted - tf.math.log(tf.reduce_sum(tf.exp(shifted), axis=axis, keepdims=True)),
                   x.dtype)


def sigmoid(x):
    r"""Logistic sigmoid, computed without overflow.

    .. math:: \sigma(z) = \frac{1}{1 + e^{-z}} = e^{-\operatorname{softplus}(-z)},
       \qquad \operatorname{softplus}(t) = \log(1 + e^{t})

    >>> from xentlib import tensorflow as xl
    >>> xl.sigmoid([-1000.0, 0.0, 1000.0]).numpy().tolist()
    [0.0, 0.5, 1.0]
    """
    x = _float_tensor(x, "x")
    _check_finite_values(x, "x")
    return tf.cast(tf.exp(log_sigmoid(_compute(x))), x.dtype)


def log_sigmoid(x):
    r"""Log of the sigmoid, stable for any input.

    .. math:: \log \sigma(z) = -\operatorname{softplus}(-z) = -\log(1 + e^{-z})

    Matches ``tf.math.log_sigmoid``.

    >>> from xentlib import tensorflow as xl
    >>> xl.log_sigmoid([-1000.0, 0.0]).numpy().round(6).tolist()
    [-1000.0, -0.693147]
    """
    x = _float_tensor(x, "x")
    _check_finite_values(x, "x")
    return tf.cast(-tf.nn.softplus(-_compute(x)), x.dtype)


# ---- information theory -----------------------------------------------------------

def entropy(p, *, axis=-1, base=None):
    r"""Shannon entropy of the distribution(s) ``p`` along ``axis``.

    .. math:: H(P) = -\sum_i p_i \log p_i, \qquad 0 \log 0 = 0

    ``base=2`` gives bits, ``base=10`` bans; ``p`` must sum to 1.

    >>> from xentlib import tensorflow as xl
    >>> float(xl.entropy([0.5, 0.5], base=2))
    1.0
    """
    p = _float_tensor(p, "p")
    axis = V.normalize_axis(axis, p.shape.rank)
    divisor = V.log_base(base)
    _check_distribution(p, "p", axis)
    pc = _compute(p)
    return tf.cast(-tf.reduce_sum(_xlogy(pc, pc), axis=axis) / divisor, p.dtype)


def _two_distributions(p, q, axis):
    p = _float_tensor(p, "p")
    q = _float_tensor(q, "q")
    _same_shape(p, "p", q, "q")
    axis = V.normalize_axis(axis, p.shape.rank)
    _check_distribution(p, "p", axis)
    _check_distribution(q, "q", axis)
    return p, q, axis


def cross_entropy(p, q, *, axis=-1, base=None):
    r"""Cross-entropy of ``q`` relative to the true distribution ``p``.

    .. math:: H(P, Q) = -\sum_i p_i \log q_i = H(P) + D_{\mathrm{KL}}(P \,\|\, Q)

    :math:`+\infty` where some :math:`p_i > 0` has :math:`q_i = 0`.

    >>> from xentlib import tensorflow as xl
    >>> round(float(xl.cross_entropy([0.6, 0.2, 0.2], [0.5, 0.3, 0.2])), 6)
    0.97857
    """
    p, q, axis = _two_distributions(p, q, axis)
    divisor = V.log_base(base)
    h = -tf.reduce_sum(_xlogy(_compute(p), _compute(q)), axis=axis) / divisor
    return tf.cast(h, p.dtype)


def kl_divergence(p, q, *, axis=-1, base=None):
    r"""Kullback–Leibler divergence of ``q`` from ``p`` (argument order as SciPy's and Keras').

    .. math:: D_{\mathrm{KL}}(P \,\|\, Q) = \sum_i p_i \log \frac{p_i}{q_i} \;\ge\; 0

    Exact at :math:`p_i = 0` (term 0) and :math:`q_i = 0 < p_i` (:math:`+\infty`);
    ``keras.losses.KLDivergence`` clips both to :math:`[10^{-7}, 1]` instead.

    >>> from xentlib import tensorflow as xl
    >>> round(float(xl.kl_divergence([0.6, 0.2, 0.2], [0.5, 0.3, 0.2])), 6)
    0.0283
    """
    p, q, axis = _two_distributions(p, q, axis)
    divisor = V.log_base(base)
    pc, qc = _compute(p), _compute(q)
    zero = tf.equal(pc, 0)
    one = tf.ones_like(pc)
    terms = pc * (tf.math.log(tf.where(zero, one, pc)) - tf.math.log(tf.where(zero, one, qc)))
    terms = tf.where(zero, tf.zeros_like(terms), terms)
    return tf.cast(tf.reduce_sum(terms, axis=axis) / divisor, p.dtype)


def _joint_sum_error(worst, tol):
    return ValueError(
        f"p_xy must sum to 1 over its last two axes (tolerance {tol:g}); "
        f"found a sum of {worst:.6g}")


def _joint(p_xy):
    p_xy = _float_tensor(p_xy, "p_xy")
    if p_xy.shape.rank < 2:
        raise ValueError(
            f"p_xy must have at least 2 dimensions (X along axis -2, Y along axis -1); "
            f"got shape {_shape(p_xy)}")
    _check_probabilities(p_xy, "p_xy")
    if V.value_checks_enabled():
        sums = tf.reduce_sum(tf.cast(p_xy, tf.float64), axis=(-2, -1))
        tol = V.sum_tolerance(p_xy.dtype.name)
        worst = _worst_sum(sums)
        _require(tf.abs(worst - 1) <= tol, _joint_sum_error, worst, tol)
    return p_xy


def _safe_ratio(a, b):
    """a / b, with b = 0 replaced by 1 (there a = 0 too, and 0 log 0 = 0)."""
    return a / tf.where(tf.equal(b, 0), tf.ones_like(b), b)


def joint_entropy(p_xy, *, base=None):
    r"""Joint entropy of a table :math:`p(x, y)`, X along axis -2, Y along axis -1.

    .. math:: H(X, Y) = -\sum_{x, y} p(x, y) \log p(x, y)

    >>> from xentlib import tensorflow as xl
    >>> float(xl.joint_entropy([[0.25, 0.25], [0.25, 0.25]], base=2))
    2.0
    """
    p_xy = _joint(p_xy)
    divisor = V.log_base(base)
    pc = _compute(p_xy)
    return tf.cast(-tf.reduce_sum(_xlogy(pc, pc), axis=(-2, -1)) / divisor, p_xy.dtype)


def conditional_entropy(p_xy, *, base=None):
    r"""Conditional entropy :math:`H(Y \mid X)`; X along axis -2, Y along axis -1.

    .. math:: H(Y \mid X) = -\sum_{x, y} p(x, y) \log \frac{p(x, y)}{p(x)} = H(X, Y) - H(X)

    >>> from xentlib import tensorflow as xl
    >>> float(xl.conditional_entropy([[0.5, 0.0], [0.0, 0.5]]))   # Y = X: no doubt left
    0.0
    """
    p_xy = _joint(p_xy)
    divisor = V.log_base(base)
    pc = _compute(p_xy)
    p_x = tf.reduce_sum(pc, axis=-1, keepdims=True)
    h = -tf.reduce_sum(_xlogy(pc, _safe_ratio(pc, p_x)), axis=(-2, -1))
    return tf.cast(tf.maximum(h, 0.0) / divisor, p_xy.dtype)


def mutual_information(p_xy, *, base=None):
    r"""Mutual information of X (axis -2) and Y (axis -1).

    .. math:: I(X; Y) = \sum_{x, y} p(x, y) \log \frac{p(x, y)}{p(x)\,p(y)}
              = D_{\mathrm{KL}}\big(p(x, y) \,\|\, p(x)\,p(y)\big) = H(Y) - H(Y \mid X)

    Clipped at 0, its true lower bound (round-off can leave :math:`-10^{-17}`).

    >>> from xentlib import tensorflow as xl
    >>> float(xl.mutual_information([[0.5, 0.0], [0.0, 0.5]], base=2))   # one shared bit
    1.0
    """
    p_xy = _joint(p_xy)
    divisor = V.log_base(base)
    pc = _compute(p_xy)
    product = tf.reduce_sum(pc, axis=-1, keepdims=True) * tf.reduce_sum(pc, axis=-2, keepdims=True)
    mi = tf.reduce_sum(_xlogy(pc, _safe_ratio(pc, product)), axis=(-2, -1))
    return tf.cast(tf.maximum(mi, 0.0) / divisor, p_xy.dtype)


# ---- label smoothing ------------------------------------------------------------------

def smooth_labels(y, epsilon, *, axis=-1):
    r"""Standard label smoothing: mix the target with the uniform distribution.

    .. math:: \tilde y = (1 - \varepsilon)\, y + \frac{\varepsilon}{K}

    with :math:`K` the number of classes along ``axis``, as in Keras' categorical
    losses and PyTorch's ``cross_entropy(label_smoothing=ε)``. The seeds'
    additive smoothing :math:`(P + \epsilon)/Z` is this with
    :math:`\varepsilon = K\epsilon / (1 + K\epsilon)`.

    >>> from xentlib import tensorflow as xl
    >>> xl.smooth_labels([0.0, 1.0, 0.0, 0.0], 0.1).numpy().tolist()
    [0.025, 0.925, 0.025, 0.025]
    """
    y = _float_tensor(y, "y")
    epsilon = V.check_fraction("epsilon", epsilon)
    axis = V.normalize_axis(axis, y.shape.rank)
    _check_distribution(y, "y", axis)
    return _smoothed(y, epsilon, axis)


def _smoothed(y, epsilon, axis):
    """:func:`smooth_labels` without the checks (for callers that already checked ``y``)."""
    k = _dim(y, axis)
    uniform = epsilon / k if isinstance(k, int) else epsilon / tf.cast(k, tf.float64)
    return tf.constant(1 - epsilon, y.dtype) * y + tf.cast(tf.constant(uniform, tf.float64), y.dtype)


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

    @tf.custom_gradient
    def loss(z2):
        e = z2 - tf.reduce_max(z2, axis=1, keepdims=True)
        e_y = tf.gather(e, safe, axis=1, batch_dims=1)
        if eps > 0:  # sum_c w_c (z_c - m)
            e_w = tf.reduce_sum(e, axis=1) if weight is None else tf.linalg.matvec(e, weight)
        ex = tf.exp(e)
        s = tf.reduce_sum(ex, axis=1)
        log_s = tf.math.log(s)
        per_item = (1 - eps) * w_y * (log_s - e_y)
        if eps > 0:  # -sum_c w_c log q_c / C
            per_item += eps * tf.where(kept2, (total_w * log_s - e_w) / num_classes, zeros)
        per_item = tf.where(kept2, per_item, zeros)
        if reduction == "none":
            out = tf.reshape(per_item, tf.shape(labels))
        else:
            out = tf.reduce_sum(per_item)
            if reduction == "mean":
                out = tf.math.divide_no_nan(out, denominator)  # no kept item -> 0

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

    @tf.custom_gradient
    def loss(z, t):
        e = z - tf.reduce_max(z, axis=-1, keepdims=True)
        t_e = tf.reduce_sum(t * e, axis=-1)
        ex = tf.exp(e)
        s = tf.reduce_sum(ex, axis=-1)
        log_s = tf.math.log(s)
        total_t = tf.reduce_sum(t, axis=-1)
        per_row = total_t * log_s - t_e  # -sum_c t_c log q_c, both terms >= 0
        out = _reduce(per_row, reduction)

        def grad(g):
            count = tf.cast(tf.size(per_row), per_row.dtype)
            g = _row_factor(g, reduction, per_row, count)[..., None]
            dz = ex * (total_t[..., None] * g / s[..., None]) - t * g
            dt = -g * (e - log_s[..., None])  # -g log q
            return dz, dt

        return out, grad

    return loss(z, target)


def _binary_from_logits(y, z, w_pos, reduction):
    """Binary CE from logits; gradients for logits and (smoothed) targets."""

    @tf.custom_gradient
    def loss(z, y):
        log_p = tf.math.log_sigmoid(z)  # log(1 - sigma(z)) = log_p - z
        if w_pos is None:
            per_elem = (1 - y) * z - log_p
        else:
            per_elem = (1 - y) * z - (w_pos * y + (1 - y)) * log_p
        out = _reduce(per_elem, reduction)

        def grad(g):
            count = tf.cast(tf.size(per_elem), per_elem.dtype)
            g = _row_factor(g, reduction, per_elem, count)
            sig = tf.sigmoid(z)
            if w_pos is None:
                return (sig - y) * g, -z * g
            wy = w_pos * y
            return (sig * (wy + (1 - y)) - wy) * g, -(z + (w_pos - 1) * log_p) * g

        return out, grad

    return loss(z, y)


# ---- losses -------------------------------------------------------------------------

def categorical_cross_entropy(y_true, y_pred, *, from_logits=False, label_smoothing=0.0,
                              axis=-1, reduction="mean"):
    r"""Categorical cross-entropy (log loss) for one-hot or probability targets.

    .. math:: \ell_n = -\sum_{c=1}^{C} \tilde y_{n,c} \log \hat y_{n,c},
       \qquad \hat y = \operatorname{softmax}(z) \text{ if from\_logits}

    with :math:`\tilde y` the targets after :func:`smooth_labels`. ``'mean'``
    divides by the number of rows, as ``keras.losses.CategoricalCrossentropy``;
    with logits it equals ``tf.nn.softmax_cross_entropy_with_logits``. Unlike
    Keras, probabilities are neither renormalised nor clipped: rows must sum to
    1, and :math:`\hat y_c = 0` with :math:`\tilde y_c > 0` gives :math:`+\infty`.

    From logits the gradient is analytic (``tf.custom_gradient``: softmax
    computed once, :math:`(\operatorname{softmax}(z) - \tilde y)\,w / \text{denominator}`);
    it flows to the logits and targets; second-order gradients
    through it are not supported.

    >>> from xentlib import tensorflow as xl
    >>> round(float(xl.categorical_cross_entropy([[0.0, 1.0, 0.0]], [[0.1, 0.7, 0.2]])), 6)
    0.356675
    """
    y_true = _float_tensor(y_true, "y_true")
    y_pred = _float_tensor(y_pred, "y_pred")
    label_smoothing = V.check_loss_options(from_logits, label_smoothing, reduction)
    _same_shape(y_true, "y_true", y_pred, "y_pred")
    axis = V.normalize_axis(axis, y_pred.shape.rank)
    _check_distribution(y_true, "y_true", axis)
    target = _compute(_smoothed(y_true, label_smoothing, axis) if label_smoothing else y_true)
    z = _compute(y_pred)
    if from_logits:
        _check_logits(y_pred, "y_pred")
        per_row = _categorical_from_logits(_move_to_last(tf.cast(target, z.dtype), axis),
                                           _move_to_last(z, axis), "none")
    else:
        _check_distribution(y_pred, "y_pred", axis)
        per_row = -tf.reduce_sum(_xlogy(tf.cast(target, z.dtype), z), axis=axis)
    return tf.cast(_reduce(per_row, reduction), _loss_dtype(y_pred))


def _check_labels(labels, num_classes, ignore_index, name="labels"):
    if not V.value_checks_enabled():
        return
    bad = (labels < 0) | (labels >= tf.cast(num_classes, labels.dtype))
    if ignore_index is not None:
        bad &= tf.not_equal(labels, ignore_index)
    big = tf.constant(np.iinfo(np.int64).max, tf.int64)
    low = tf.reduce_min(tf.where(bad, labels, big))
    high = tf.reduce_max(tf.where(bad, labels, -big))
    return _require(tf.logical_not(tf.reduce_any(bad)), V.bad_labels, name, low, high,
             num_classes, ignore_index)


def _class_weight(class_weight, num_classes, dtype):
    if class_weight is None:
        return None
    w = _float_tensor(class_weight, "class_weight")
    if _shape(w) != (num_classes,):
        raise ValueError(
            f"class_weight must have shape ({num_classes},), one weight per class; got {_shape(w)}")
    if V.value_checks_enabled():
        _require(tf.reduce_all(tf.math.is_finite(w) & (w >= 0)), V.negative, "class_weight")
    return tf.cast(w, dtype)


def sparse_categorical_cross_entropy(labels, y_pred, *, from_logits=False, label_smoothing=0.0,
                                     ignore_index=None, class_weight=None, axis=-1,
                                     reduction="mean"):
    r"""Cross-entropy with integer class labels; any leading shape, e.g. (batch, time).

    .. math:: \ell_n = w_{y_n}\Big[(1-\varepsilon)\big(-\log \hat y_{n, y_n}\big)\Big]
              + \frac{\varepsilon}{C} \sum_{c=1}^{C} w_c \big(-\log \hat y_{n,c}\big),
       \qquad L_{\text{mean}} = \frac{\sum_{n \in \mathcal K} \ell_n}{\sum_{n \in \mathcal K} w_{y_n}}

    where :math:`\mathcal K` are the items whose label is not ``ignore_index``
    and :math:`w = 1` without ``class_weight`` (PyTorch's ``F.cross_entropy``
    semantics). Without options it equals
    ``tf.nn.sparse_softmax_cross_entropy_with_logits``; ``ignore_index`` gives the
    mean of ``keras.losses.SparseCategoricalCrossentropy(ignore_class=...)``, but
    with ``class_weight`` the mean divides by the summed weights, not the item
    count as Keras' ``sample_weight`` does. Ignored items give 0 under
    ``'none'``. Keras passes labels as floats: use :func:`keras_loss`.

    From logits the gradient is analytic (``tf.custom_gradient``: softmax
    computed once, :math:`(\operatorname{softmax}(z) - \tilde y)\,w / \text{denominator}`);
    it flows to the logits (not to ``class_weight``); second-order gradients
    through it are not supported.

    >>> from xentlib import tensorflow as xl
    >>> z = [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]]
    >>> round(float(xl.sparse_categorical_cross_entropy([0, 2], z, from_logits=True)), 6)
    0.175456
    """
    labels = _label_tensor(labels)
    y_pred = _float_tensor(y_pred, "y_pred")
    label_smoothing = V.check_loss_options(from_logits, label_smoothing, reduction)
    ignore_index = V.check_int("ignore_index", ignore_index, allow_none=True)
    axis = V.normalize_axis(axis, y_pred.shape.rank)
    expected = y_pred.shape[:axis].concatenate(y_pred.shape[axis + 1:])
    if not labels.shape.is_compatible_with(expected) or labels.shape.rank != expected.rank:
        raise V.labels_shape("labels", _shape(labels), tuple(expected.as_list()))
    checks = []
    if not (labels.shape.is_fully_defined() and y_pred.shape.is_fully_defined()):
        checks.append(_same_runtime_shape(labels, "labels", _move_to_last(y_pred, axis)[..., 0],
                                          "y_pred without its class axis"))
    num_classes = _dim(y_pred, axis)
    checks.append(_check_labels(labels, num_classes, ignore_index))
    checks = [c for c in checks if c is not None]
    if checks:  # graph mode: the gathers below raise their own, unnamed error at a bad label
        with tf.control_dependencies(checks):
            labels = tf.identity(labels)
    if from_logits:
        _check_logits(y_pred, "y_pred")
    else:
        _check_distribution(y_pred, "y_pred", axis)
    z = _move_to_last(_compute(y_pred), axis)
    kept = tf.ones_like(labels, tf.bool) if ignore_index is None else tf.not_equal(labels, ignore_index)
    weight = _class_weight(class_weight, num_classes, z.dtype)
    if from_logits:
        out = _sparse_from_logits(labels, z, kept, weight, label_smoothing, reduction)
        return tf.cast(out, _loss_dtype(y_pred))
    per_item, w_y = _sparse_terms(labels, z, kept, weight, from_logits, label_smoothing, num_classes)
    out = _reduce(per_item, reduction, denominator=tf.reduce_sum(w_y))
    return tf.cast(out, _loss_dtype(y_pred))


def _sparse_terms(labels, z, kept, weight, from_logits, label_smoothing, num_classes):
    """Per-item losses (0 where not kept) and their weights w[y] (0 where not kept); classes last."""
    safe = tf.where(kept, labels, tf.zeros_like(labels))
    if from_logits:
        log_q = log_softmax(z, axis=-1)
        nll = -tf.gather(log_q, safe, axis=-1, batch_dims=labels.shape.rank)
    else:  # gather first: log(0) at other classes must not poison the gradient
        q = tf.where(kept[..., None], z, tf.ones_like(z))
        nll = -tf.math.log(tf.gather(q, safe, axis=-1, batch_dims=labels.shape.rank))
    w_y = tf.ones_like(nll) if weight is None else tf.gather(weight, safe)
    w_y = tf.where(kept, w_y, tf.zeros_like(w_y))
    per_item = (1 - label_smoothing) * w_y * nll
    if label_smoothing > 0:
        if weight is None:
            w_log_q = log_q if from_logits else tf.math.log(q)
        else:  # a class of weight 0 adds nothing, even where its probability is 0 (0 log 0 = 0)
            zero_w = tf.equal(weight, 0)
            if not from_logits:
                log_q = tf.math.log(tf.where(zero_w, tf.ones_like(q), q))
            w_log_q = tf.where(zero_w, tf.zeros_like(log_q), weight * log_q)
        uniform = -tf.reduce_sum(w_log_q, axis=-1) / tf.cast(num_classes, z.dtype)
        per_item = per_item + label_smoothing * tf.where(kept, uniform, tf.zeros_like(uniform))
    return tf.where(kept, per_item, tf.zeros_like(per_item)), w_y


def _pos_weight(pos_weight, y_pred):
    if pos_weight is None:
        return None
    w = _float_tensor(pos_weight, "pos_weight")
    last = y_pred.shape[-1] if y_pred.shape.rank else 1
    if w.shape.rank > 1 or (w.shape.rank == 1 and y_pred.shape.rank and w.shape[0] != last):
        raise ValueError(
            f"pos_weight must be a scalar or have shape ({last},),"
            f" one weight per class on the last axis; got {_shape(w)}")
    if V.value_checks_enabled():
        _require(tf.reduce_all(tf.math.is_finite(w) & (w >= 0)), V.negative, "pos_weight")
    return w


def binary_cross_entropy(y_true, y_pred, *, from_logits=False, label_smoothing=0.0,
                         pos_weight=None, reduction="mean"):
    r"""Binary and multi-label cross-entropy, one independent Bernoulli per element.

    .. math:: \ell = -\big[\,w_+\, \tilde y \log \hat y + (1 - \tilde y) \log (1 - \hat y)\,\big],
       \qquad \tilde y = y (1 - \varepsilon) + \tfrac{\varepsilon}{2},
       \qquad \hat y = \sigma(z) \text{ if from\_logits}

    Smoothing moves every target towards 1/2, as ``keras.losses.BinaryCrossentropy``
    does. ``pos_weight`` (:math:`w_+`, scalar or one value per class on the last
    axis) multiplies the positive term, as ``tf.nn.weighted_cross_entropy_with_logits``.
    ``'mean'`` averages over all elements. With logits it equals
    ``tf.nn.sigmoid_cross_entropy_with_logits``; probabilities are not clipped
    (Keras clips them to :math:`[10^{-7}, 1-10^{-7}]`).

    From logits the gradient is analytic (``tf.custom_gradient``,
    :math:`\sigma(z)(w_+ \tilde y + 1 - \tilde y) - w_+ \tilde y`); it flows to the logits
    and targets, not to ``pos_weight``, and second-order gradients through it are not supported.

    >>> from xentlib import tensorflow as xl
    >>> round(float(xl.binary_cross_entropy([1.0, 0.0], [0.9, 0.2])), 6)
    0.164252
    """
    y_true = _float_tensor(y_true, "y_true")
    y_pred = _float_tensor(y_pred, "y_pred")
    label_smoothing = V.check_loss_options(from_logits, label_smoothing, reduction)
    _same_shape(y_true, "y_true", y_pred, "y_pred")
    _check_probabilities(y_true, "y_true")
    w_pos = _pos_weight(pos_weight, y_pred)
    z = _compute(y_pred)
    y = tf.cast(_compute(y_true), z.dtype)
    if label_smoothing:
        y = y * (1 - label_smoothing) + label_smoothing / 2
    w_pos = 1.0 if w_pos is None else tf.cast(w_pos, z.dtype)
    if from_logits:
        _check_logits(y_pred, "y_pred")
        if pos_weight is None or w_pos.shape.rank == 0 or z.shape.rank:
            out = _binary_from_logits(y, z, None if pos_weight is None else w_pos, reduction)
            return tf.cast(out, _loss_dtype(y_pred))
        per_elem = -(w_pos * y * log_sigmoid(z) + (1 - y) * log_sigmoid(-z))
    else:
        _check_probabilities(y_pred, "y_pred")
        z = tf.clip_by_value(z, 0, 1)  # 1 + 1e-16 from round-off: log(1 - q) stays real
        per_elem = -(w_pos * _xlogy(y, z) + _xlogy(1 - y, 1 - z))
    return tf.cast(_reduce(per_elem, reduction), _loss_dtype(y_pred))


def mean_squared_error(y_true, y_pred, *, reduction="mean"):
    r"""Mean squared error, the regression loss of the seeds.

    .. math:: \mathrm{MSE} = \frac{1}{N} \sum_{i=1}^{N} (y_i - \hat y_i)^2

    ``'none'`` returns the squared error of every element (Keras'
    ``MeanSquaredError`` averages the last axis first; the ``'mean'`` values
    agree). It equals :math:`2\sigma^2` times :func:`gaussian_nll` minus a constant.

    >>> from xentlib import tensorflow as xl
    >>> float(xl.mean_squared_error([1.0, 2.0], [1.5, 1.0]))
    0.625
    """
    y_true = _float_tensor(y_true, "y_true")
    y_pred = _float_tensor(y_pred, "y_pred")
    V.check_reduction(reduction)
    _same_shape(y_true, "y_true", y_pred, "y_pred")
    _check_real_values(y_true, "y_true")
    _check_real_values(y_pred, "y_pred")
    z = _compute(y_pred)
    per_elem = tf.square(tf.cast(_compute(y_true), z.dtype) - z)
    return tf.cast(_reduce(per_elem, reduction), _loss_dtype(y_pred))


def gaussian_nll(y_true, mean, variance=1.0, *, full=True, reduction="mean"):
    r"""Negative log-likelihood of ``y_true`` under :math:`\mathcal N(\text{mean}, \text{variance})`.

    .. math:: -\log \mathcal N(y \mid \mu, \sigma^2) = \frac{(y - \mu)^2}{2\sigma^2}
              + \frac{1}{2}\log \sigma^2 + \frac{1}{2}\log 2\pi

    ``full=False`` drops the constant :math:`\tfrac12 \log 2\pi`. With a fixed
    variance, :math:`\mathrm{MSE} = 2\sigma^2 (\mathrm{NLL} - \tfrac12\log 2\pi\sigma^2)`.
    ``variance`` is a positive scalar or a tensor broadcastable to ``y_true``.

    >>> from xentlib import tensorflow as xl
    >>> round(float(xl.gaussian_nll([0.0], [0.0])), 6)   # -log of N(0; 0, 1) = log sqrt(2 pi)
    0.918939
    """
    y_true = _float_tensor(y_true, "y_true")
    mean = _float_tensor(mean, "mean")
    V.check_bool("full", full)
    V.check_reduction(reduction)
    _same_shape(y_true, "y_true", mean, "mean")
    _check_real_values(y_true, "y_true")
    _check_real_values(mean, "mean")
    var = _float_tensor(variance, "variance")
    try:
        tf.broadcast_static_shape(var.shape, y_true.shape)
        if var.shape.rank > y_true.shape.rank:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"variance must be a scalar or broadcastable to {_shape(y_true)}; got {_shape(var)}") from None
    if V.value_checks_enabled():
        _require(tf.reduce_all(tf.math.is_finite(var) & (var > 0)),
                 lambda: ValueError("variance must be positive and finite"))
    mu = _compute(mean)
    var = tf.cast(var, mu.dtype)
    per_elem = 0.5 * (tf.square(tf.cast(_compute(y_true), mu.dtype) - mu) / var + tf.math.log(var))
    if full:
        per_elem = per_elem + 0.5 * np.log(2 * np.pi)
    per_elem = tf.broadcast_to(per_elem, tf.shape(y_true))
    return tf.cast(_reduce(per_elem, reduction), _loss_dtype(mean))


def perplexity(labels, logits, *, ignore_index=None, axis=-1):
    r"""Perplexity: the exponential of the mean token negative log-likelihood.

    .. math:: \mathrm{PPL} = \exp\Big(\frac{1}{|\mathcal K|}\sum_{t \in \mathcal K} -\log \operatorname{softmax}(z_t)_{y_t}\Big)

    over the tokens :math:`\mathcal K` not equal to ``ignore_index``, computed in
    log space (log-softmax), so it stays finite for large vocabularies. A
    uniform model over :math:`V` tokens has perplexity :math:`V`. At least one
    token must be kept (checked even under ``value_checks(False)``, as in NumPy).

    >>> from xentlib import tensorflow as xl
    >>> float(xl.perplexity([0, 1, 2], [[0.0, 0.0, 0.0]] * 3))   # uniform over 3
    3.0
    """
    logits = _float_tensor(logits, "logits")
    _check_logits(logits, "logits")
    mean_nll = sparse_categorical_cross_entropy(
        labels, logits, from_logits=True, ignore_index=ignore_index, axis=axis)
    if ignore_index is not None:
        labels = _label_tensor(labels)
        _require(tf.reduce_any(tf.not_equal(labels, ignore_index)), V.no_tokens, "labels")
    return tf.exp(mean_nll)


def softmax_cross_entropy_grad(y_true, logits, *, axis=-1):
    r"""Gradient of the per-example softmax cross-entropy with respect to the logits.

    .. math:: \frac{\partial}{\partial z_i}\Big(-\sum_c y_c \log \operatorname{softmax}(z)_c\Big)
              = \operatorname{softmax}(z)_i - y_i \qquad (\textstyle\sum_c y_c = 1)

    Unreduced: one gradient row per example; equals ``tf.GradientTape`` on
    ``tf.nn.softmax_cross_entropy_with_logits`` summed over the batch.

    >>> from xentlib import tensorflow as xl
    >>> xl.softmax_cross_entropy_grad([0.0, 1.0], [0.0, 0.0]).numpy().tolist()
    [0.5, -0.5]
    """
    y_true = _float_tensor(y_true, "y_true")
    logits = _float_tensor(logits, "logits")
    _same_shape(y_true, "y_true", logits, "logits")
    axis = V.normalize_axis(axis, logits.shape.rank)
    _check_distribution(y_true, "y_true", axis)
    _check_logits(logits, "logits")
    z = _compute(logits)
    return tf.cast(softmax(z, axis=axis) - tf.cast(_compute(y_true), z.dtype), logits.dtype)


def sigmoid_cross_entropy_grad(y_true, logits):
    r"""Gradient of the per-element sigmoid (binary) cross-entropy w.r.t. the logits.

    .. math:: \frac{\partial}{\partial z}\Big(-y \log \sigma(z) - (1-y)\log(1-\sigma(z))\Big) = \sigma(z) - y

    >>> from xentlib import tensorflow as xl
    >>> xl.sigmoid_cross_entropy_grad([1.0, 0.0], [0.0, 0.0]).numpy().tolist()
    [-0.5, 0.5]
    """
    y_true = _float_tensor(y_true, "y_true")
    logits = _float_tensor(logits, "logits")
    _same_shape(y_true, "y_true", logits, "logits")
    _check_probabilities(y_true, "y_true")
    _check_logits(logits, "logits")
    z = _compute(logits)
    return tf.cast(sigmoid(z) - tf.cast(_compute(y_true), z.dtype), logits.dtype)


# ---- Keras ---------------------------------------------------------------------------

_SPARSE = ("sparse_categorical_cross_entropy", "perplexity")


def _to_rank(y, rank):
    """Drop or add a trailing length-1 axis so ``y`` has ``rank`` dimensions."""
    if y.shape.rank == rank + 1 and y.shape[-1] == 1:
        return tf.squeeze(y, axis=-1)
    if y.shape.rank == rank - 1:
        return tf.expand_dims(y, axis=-1)
    return y


def keras_loss(fn, *, name=None, **kwargs):
    r"""Wrap a loss of this module as a ``keras.losses.Loss`` for ``model.compile``.

    Why it exists: Keras 3 converts ``y_true`` to the loss dtype (float32) before
    calling a loss, so integer labels reach :func:`sparse_categorical_cross_entropy`
    as floats, which it rejects (``TypeError``). The wrapper casts the labels of
    the sparse losses back to int64 (dropping a trailing length-1 axis, as Keras
    does), adapts a length-1 axis of other targets to ``y_pred``, and forwards
    ``kwargs`` (``from_logits``, ``ignore_index``, ``class_weight``, ...). The
    loss keeps this module's reduction (``'mean'`` by default); Keras' own
    reduction is off, so ``fit(sample_weight=...)`` and ``fit(class_weight=...)``
    are refused with a ``ValueError`` (pass ``class_weight`` here instead).
    Losses with float targets also work unwrapped: ``compile(loss=xl.binary_cross_entropy)``.

    .. math:: L = \texttt{fn}\big(\operatorname{int}(y_{\text{true}}),\ \hat y,\ \texttt{**kwargs}\big)

    >>> from xentlib import tensorflow as xl
    >>> loss = xl.keras_loss("sparse_categorical_cross_entropy", from_logits=True, ignore_index=-1)
    >>> round(float(loss([0.0, -1.0], [[2.0, 0.5], [0.0, 0.0]])), 6)   # labels as Keras passes them
    0.201413
    """
    import keras

    if isinstance(fn, str):
        if fn not in __all__ or fn == "keras_loss":
            raise ValueError(f"fn must name a loss of xentlib.tensorflow; got {fn!r}")
        fn = globals()[fn]
    if not callable(fn):
        raise TypeError(f"fn must be a loss function or its name; got {fn!r}")
    sparse = getattr(fn, "__name__", "") in _SPARSE and getattr(fn, "__module__", "") == __name__

    class XentlibLoss(keras.losses.Loss):
        def __call__(self, y_true, y_pred, sample_weight=None):
            if sample_weight is not None:
                raise ValueError(
                    f"sample_weight: {self.name} keeps xentlib's reduction and takes no sample "
                    f"weights; pass class_weight= to keras_loss instead")
            return super().__call__(y_true, y_pred)

        def call(self, y_true, y_pred):
            y_true, y_pred = tf.convert_to_tensor(y_true), tf.convert_to_tensor(y_pred)
            if sparse:
                y_true = _to_rank(y_true, y_pred.shape.rank - 1)
                y_true = tf.cast(tf.round(y_true), tf.int64)
            else:
                y_true = _to_rank(y_true, y_pred.shape.rank)
            return fn(y_true, y_pred, **kwargs)

    return XentlibLoss(name=name or getattr(fn, "__name__", "xentlib_loss"), reduction="none")


# ---- large vocabularies (issue 5): chunked logits, never the whole N x V matrix ----
from xentlib._linear_tensorflow import linear_cross_entropy  # noqa: E402
