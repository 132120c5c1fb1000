r"""xentlib.numpy: the reference implementation of every formula in the book.

``from xentlib import numpy as xl`` gives the same names, with the same
signatures, as ``xentlib.torch`` and ``xentlib.tensorflow``; those backends are
tested against this one.

Conventions, shared by all three backends
-----------------------------------------
* **Class axis** is the last one (``axis=-1``), as in Keras, ``tf.nn`` and optax.
  PyTorch puts classes on axis 1 for ``(N, C, d1, ...)`` inputs: pass ``axis=1``
  to match it.
* **Logarithms** are natural (nats); information-theory functions take
  ``base=2`` for bits or ``base=10`` for bans.
* **Probabilities are exact**: :math:`0 \log 0 = 0`, and :math:`p > 0` where
  :math:`q = 0` gives :math:`+\infty`, as in SciPy (``xlogy``, ``rel_entr``).
  Keras instead clips probabilities to :math:`[10^{-7}, 1-10^{-7}]` and PyTorch's
  ``binary_cross_entropy`` clamps each log at :math:`-100`; to train, prefer
  ``from_logits=True``, which is exact *and* stable.
* **Dtypes**: float64 stays float64, float32 stays float32. float16 (and, where
  the backend has it, bfloat16) inputs are computed in float32; the building
  blocks return the input dtype, losses return float32 (as Keras does under
  mixed precision), because a loss easily exceeds float16's range.
* **Reductions**: ``'none'`` keeps one value per item, ``'sum'`` adds them,
  ``'mean'`` divides by the number of items, or, with ``class_weight`` or
  ``ignore_index``, by the summed weight of the kept items, as PyTorch does.
  A mean over zero kept items is 0 (as Keras; PyTorch returns NaN).
* **Checks**: bad input raises ``ValueError``/``TypeError`` naming the argument.
  A distribution must sum to 1 within a tolerance set by its dtype
  (float64 :math:`10^{-6}`, float32 :math:`10^{-4}`, float16 :math:`10^{-2}`,
  bfloat16 :math:`2 \cdot 10^{-2}`); a probability may exceed 1 by as much (round-off).
  Losses need finite logits; the building blocks accept
  :math:`-\infty` (a masked class) but not NaN, and ``softmax``/``log_softmax``
  reject :math:`+\infty` and slices of only :math:`-\infty` (their result would be NaN).
  The data-dependent checks can be switched off with
  ``xentlib.value_checks(False)``.
"""
from __future__ import annotations

import numpy as np

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
    "gradient_descent",
]


# ---- input handling ----------------------------------------------------------

def _float_array(x, name):
    """``x`` as a floating ndarray; Python numbers and lists become float64."""
    if not isinstance(x, (np.ndarray, np.generic)):
        try:
            x = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be an array of floats; got {type(x).__name__}") from None
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise V.not_float(name, x.dtype)
    return x


def _label_array(labels, name="labels"):
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise V.not_integer(name, labels.dtype)
    return labels


def _compute(x):
    """Work in float32 for float16 inputs: float16 overflows at 65504."""
    return x.astype(np.float32) if x.dtype == np.float16 else x


def _loss_dtype(x):
    return np.float32 if x.dtype == np.float16 else x.dtype


def _same_shape(a, a_name, b, b_name):
    if a.shape != b.shape:
        raise V.shape_mismatch(a_name, a.shape, b_name, b.shape)


def _check_logits(z, name):
    if V.value_checks_enabled() and not np.isfinite(z).all():
        raise V.not_finite(name)


def _check_probabilities(p, name):
    if not V.value_checks_enabled():
        return
    if np.isnan(p).any():
        raise V.has_nan(name)
    # Round-off may push a sum of probabilities a few ulps above 1: tolerated.
    if p.size and (p.min() < 0 or p.max() > 1 + V.sum_tolerance(p.dtype.name)):
        raise V.not_probability(name, float(p.min()), float(p.max()))


def _check_distribution(p, name, axis):
    _check_probabilities(p, name)
    if V.value_checks_enabled() and p.size:
        sums = p.sum(axis=axis, dtype=np.float64)
        worst = sums.flat[np.argmax(np.abs(sums - 1))]
        tol = V.sum_tolerance(p.dtype.name)
        if abs(worst - 1) > tol:
            raise V.not_distribution(name, float(worst), tol, axis)


def _check_finite_values(x, name):
    if V.value_checks_enabled() and np.isnan(x).any():
        raise V.has_nan(name)


def _check_real_values(x, name):
    """Neither NaN nor +-inf (regression values: inf - inf would be a silent NaN)."""
    _check_finite_values(x, name)
    if V.value_checks_enabled() and np.isinf(x).any():
        raise V.has_inf(name)


def _check_softmax_input(x, axis):
    """+inf, or a slice of only -inf, makes softmax 0/0 or inf/inf: NaN."""
    if V.value_checks_enabled() and x.size:
        m = np.max(x, axis=axis)
        if np.isinf(m).any():
            raise V.softmax_undefined("x", axis)


def _xlogy(x, y):
    r""":math:`x \log y` with :math:`0 \log y = 0` (also for :math:`y = 0`)."""
    with np.errstate(divide="ignore"):
        return np.where(x == 0, 0.0, x * np.log(np.where(x == 0, 1.0, y)))


def _reduce(per_item, reduction, denominator=None):
    if reduction == "none":
        return per_item
    total = per_item.sum()
    if reduction == "sum":
        return total
    count = per_item.size if denominator is None else denominator
    return total / count if count else np.zeros_like(total)


def _shift_by_max(z, axis):
    """``(z - m, m)`` with ``m`` the maximum along ``axis``; every exponent of ``z - m`` is <= 0."""
    m = np.max(z, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)  # rows of -inf: exp(-inf - 0) = 0, log 0 = -inf
    return z - m, m


# ---- building blocks -----------------------------------------------------------

def logsumexp(x, *, axis=-1, keepdims=False):
    r"""Log-sum-exp, computed without overflow.

    .. math:: \operatorname{LSE}(z) = m + \log \sum_i e^{z_i - m}, \qquad m = \max_i z_i

    Subtracting the maximum keeps every exponent :math:`\le 0`, so nothing
    overflows; the largest term is exactly 1, so nothing underflows to
    :math:`\log 0`. Matches ``scipy.special.logsumexp`` and ``torch.logsumexp``
    (note SciPy's default is over *all* axes; here it is the last one).

    >>> from xentlib import numpy as xl
    >>> float(xl.logsumexp([1000.0, 1000.0]))   # naive: log(inf) = inf
    1000.6931471805599
    """
    x = _float_array(x, "x")
    V.normalize_axis(axis, x.ndim)
    _check_finite_values(x, "x")
    z = _compute(x)
    shifted, m = _shift_by_max(z, axis)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True)) + m
    if not keepdims:
        out = np.squeeze(out, axis=axis)
    with np.errstate(over="ignore"):  # float16: above 65504 is inf, as in torch
        return out.astype(x.dtype)


def softmax(x, *, axis=-1):
    r"""Softmax: turns logits into a probability distribution.

    .. math:: \operatorname{softmax}(z)_i = \frac{e^{z_i}}{\sum_j e^{z_j}} = e^{z_i - \operatorname{LSE}(z)}

    Invariant to adding a constant to every logit.

    >>> from xentlib import numpy as xl
    >>> xl.softmax([1.0, 2.0, 3.0]).round(4)
    array([0.09  , 0.2447, 0.6652])
    """
    x = _float_array(x, "x")
    axis = V.normalize_axis(axis, x.ndim)
    _check_finite_values(x, "x")
    _check_softmax_input(x, axis)
    e = np.exp(_shift_by_max(_compute(x), axis)[0])
    return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)


def log_softmax(x, *, axis=-1):
    r"""Log-softmax, the log-probabilities of a categorical distribution.

    .. math:: \log \operatorname{softmax}(z)_i = z_i - \operatorname{LSE}(z)
              = (z_i - m) - \log \sum_j e^{z_j - m}

    The second form (as SciPy and PyTorch compute it) avoids cancellation
    between two large numbers for the dominant class. Finite for every finite
    input, unlike ``log(softmax(z))``, whose small probabilities underflow to 0
    and give :math:`-\infty`.

    >>> from xentlib import numpy as xl
    >>> xl.log_softmax([0.0, 1000.0]).tolist()
    [-1000.0, 0.0]
    """
    x = _float_array(x, "x")
    axis = V.normalize_axis(axis, x.ndim)
    _check_finite_values(x, "x")
    _check_softmax_input(x, axis)
    shifted = _shift_by_max(_compute(x), axis)[0]
    with np.errstate(divide="ignore", over="ignore"):  # float16: below -65504 is -inf, as in torch
        return (shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))).astype(x.dtype)


def sigmoid(x):
    r"""Logistic sigmoid, computed without overflow.

    .. math:: \sigma(z) = \frac{1}{1 + e^{-z}} = e^{-\operatorname{softplus}(-z)},
       \qquad \operatorname{softplus}(t) = \log(1 + e^{t})

    >>> from xentlib import numpy as xl
    >>> xl.sigmoid([-1000.0, 0.0, 1000.0]).tolist()
    [0.0, 0.5, 1.0]
    """
    x = _float_array(x, "x")
    _check_finite_values(x, "x")
    return np.exp(log_sigmoid(_compute(x))).astype(x.dtype)


def log_sigmoid(x):
    r"""Log of the sigmoid, stable for any input.

    .. math:: \log \sigma(z) = -\operatorname{softplus}(-z) = -\log(1 + e^{-z})

    >>> from xentlib import numpy as xl
    >>> xl.log_sigmoid([-1000.0, 0.0]).round(6).tolist()
    [-1000.0, -0.693147]
    """
    x = _float_array(x, "x")
    _check_finite_values(x, "x")
    return (-np.logaddexp(0, -_compute(x))).astype(x.dtype)


# ---- information theory -----------------------------------------------------------

def entropy(p, *, axis=-1, base=None):
    r"""Shannon entropy of the distribution(s) ``p`` along ``axis``.

    .. math:: H(P) = -\sum_i p_i \log p_i, \qquad 0 \log 0 = 0

    Matches ``scipy.stats.entropy(p, base=base, axis=axis)`` (which also
    normalises ``p``; here ``p`` must already sum to 1).

    >>> from xentlib import numpy as xl
    >>> float(xl.entropy([0.5, 0.5], base=2))
    1.0
    """
    p = _float_array(p, "p")
    axis = V.normalize_axis(axis, p.ndim)
    divisor = V.log_base(base)
    _check_distribution(p, "p", axis)
    pc = _compute(p)
    return (-_xlogy(pc, pc).sum(axis=axis) / divisor).astype(p.dtype)


def _two_distributions(p, q, axis):
    p = _float_array(p, "p")
    q = _float_array(q, "q")
    _same_shape(p, "p", q, "q")
    axis = V.normalize_axis(axis, p.ndim)
    _check_distribution(p, "p", axis)
    _check_distribution(q, "q", axis)
    return p, q, axis


def cross_entropy(p, q, *, axis=-1, base=None):
    r"""Cross-entropy of ``q`` relative to the true distribution ``p``.

    .. math:: H(P, Q) = -\sum_i p_i \log q_i = H(P) + D_{\mathrm{KL}}(P \,\|\, Q)

    :math:`+\infty` where some :math:`p_i > 0` has :math:`q_i = 0`.

    >>> from xentlib import numpy as xl
    >>> round(float(xl.cross_entropy([0.6, 0.2, 0.2], [0.5, 0.3, 0.2])), 6)
    0.97857
    """
    p, q, axis = _two_distributions(p, q, axis)
    divisor = V.log_base(base)
    return (-_xlogy(_compute(p), _compute(q)).sum(axis=axis) / divisor).astype(p.dtype)


def kl_divergence(p, q, *, axis=-1, base=None):
    r"""Kullback–Leibler divergence of ``q`` from ``p`` (argument order as SciPy's).

    .. math:: D_{\mathrm{KL}}(P \,\|\, Q) = \sum_i p_i \log \frac{p_i}{q_i} \;\ge\; 0

    Zero only when :math:`P = Q`; not symmetric. Matches
    ``scipy.special.rel_entr(p, q).sum(axis)``; for a batch of rows its mean
    equals ``torch.nn.functional.kl_div(q.log(), p, reduction='batchmean')``
    (note PyTorch's reversed argument order and log-input).

    >>> from xentlib import numpy as xl
    >>> round(float(xl.kl_divergence([0.6, 0.2, 0.2], [0.5, 0.3, 0.2])), 6)
    0.0283
    """
    p, q, axis = _two_distributions(p, q, axis)
    divisor = V.log_base(base)
    pc, qc = _compute(p), _compute(q)
    with np.errstate(divide="ignore", invalid="ignore"):  # p = 0 entries are masked out
        terms = np.where(pc == 0, 0.0, pc * (np.log(np.where(pc == 0, 1.0, pc)) - np.log(qc)))
    return (terms.sum(axis=axis) / divisor).astype(p.dtype)


def _joint(p_xy):
    p_xy = _float_array(p_xy, "p_xy")
    if p_xy.ndim < 2:
        raise ValueError(
            f"p_xy must have at least 2 dimensions (X along axis -2, Y along axis -1); "
            f"got shape {p_xy.shape}")
    _check_probabilities(p_xy, "p_xy")
    if V.value_checks_enabled() and p_xy.size:
        sums = p_xy.sum(axis=(-2, -1), dtype=np.float64)
        worst = sums.flat[np.argmax(np.abs(sums - 1))]
        tol = V.sum_tolerance(p_xy.dtype.name)
        if abs(worst - 1) > tol:
            raise ValueError(
                f"p_xy must sum to 1 over its last two axes (tolerance {tol:g}); "
                f"found a sum of {worst:.6g}")
    return p_xy


def joint_entropy(p_xy, *, base=None):
    r"""Joint entropy of a table :math:`p(x, y)`, X along axis -2, Y along axis -1.

    .. math:: H(X, Y) = -\sum_{x, y} p(x, y) \log p(x, y)

    >>> from xentlib import numpy as xl
    >>> float(xl.joint_entropy([[0.25, 0.25], [0.25, 0.25]], base=2))
    2.0
    """
    p_xy = _joint(p_xy)
    divisor = V.log_base(base)
    pc = _compute(p_xy)
    return (-_xlogy(pc, pc).sum(axis=(-2, -1)) / divisor).astype(p_xy.dtype)


def conditional_entropy(p_xy, *, base=None):
    r"""Conditional entropy :math:`H(Y \mid X)`; X along axis -2, Y along axis -1.

    .. math:: H(Y \mid X) = -\sum_{x, y} p(x, y) \log \frac{p(x, y)}{p(x)} = H(X, Y) - H(X)

    >>> from xentlib import numpy as xl
    >>> float(xl.conditional_entropy([[0.5, 0.0], [0.0, 0.5]]))   # Y = X: no doubt left
    0.0
    """
    p_xy = _joint(p_xy)
    divisor = V.log_base(base)
    pc = _compute(p_xy)
    p_x = pc.sum(axis=-1, keepdims=True)
    h = -_xlogy(pc, pc / np.where(p_x == 0, 1.0, p_x)).sum(axis=(-2, -1))
    return (np.maximum(h, 0.0) / divisor).astype(p_xy.dtype)


def mutual_information(p_xy, *, base=None):
    r"""Mutual information of X (axis -2) and Y (axis -1).

    .. math:: I(X; Y) = \sum_{x, y} p(x, y) \log \frac{p(x, y)}{p(x)\,p(y)}
              = D_{\mathrm{KL}}\big(p(x, y) \,\|\, p(x)\,p(y)\big) = H(Y) - H(Y \mid X)

    Round-off can leave :math:`-10^{-17}` for independent variables; the result
    is clipped at 0, its true lower bound.

    >>> from xentlib import numpy as xl
    >>> float(xl.mutual_information([[0.5, 0.0], [0.0, 0.5]], base=2))   # one shared bit
    1.0
    """
    p_xy = _joint(p_xy)
    divisor = V.log_base(base)
    pc = _compute(p_xy)
    product = pc.sum(axis=-1, keepdims=True) * pc.sum(axis=-2, keepdims=True)
    mi = _xlogy(pc, pc / np.where(product == 0, 1.0, product)).sum(axis=(-2, -1))
    return (np.maximum(mi, 0.0) / divisor).astype(p_xy.dtype)


# ---- label smoothing ------------------------------------------------------------------

def smooth_labels(y, epsilon, *, axis=-1):
    r"""Standard label smoothing: mix the target with the uniform distribution.

    .. math:: \tilde y = (1 - \varepsilon)\, y + \frac{\varepsilon}{K}

    with :math:`K` the number of classes along ``axis``. This is what PyTorch's
    ``cross_entropy(label_smoothing=ε)``, Keras' categorical losses and optax's
    ``smooth_labels`` use. The seeds' additive smoothing :math:`(P + \epsilon)/Z`
    (with :math:`Z = 1 + K\epsilon`) is the same operation with
    :math:`\varepsilon = K\epsilon / (1 + K\epsilon)`.

    >>> from xentlib import numpy as xl
    >>> xl.smooth_labels([0.0, 1.0, 0.0, 0.0], 0.1).tolist()
    [0.025, 0.925, 0.025, 0.025]
    """
    y = _float_array(y, "y")
    epsilon = V.check_fraction("epsilon", epsilon)
    axis = V.normalize_axis(axis, y.ndim)
    _check_distribution(y, "y", axis)
    k = y.shape[axis]
    return ((1 - epsilon) * y + epsilon / k).astype(y.dtype)


# ---- losses -------------------------------------------------------------------------

def categorical_cross_entropy(y_true, y_pred, *, from_logits=False, label_smoothing=0.0,
                              axis=-1, reduction="mean"):
    r"""Categorical cross-entropy (log loss) for one-hot or probability targets.

    .. math:: \ell_n = -\sum_{c=1}^{C} \tilde y_{n,c} \log \hat y_{n,c},
       \qquad \hat y = \operatorname{softmax}(z) \text{ if from\_logits}

    with :math:`\tilde y` the targets after :func:`smooth_labels`. ``'mean'``
    divides by the number of rows (every position but the class axis), as
    PyTorch and Keras do. Unlike Keras, probabilities are neither renormalised
    nor clipped: rows must sum to 1, and :math:`\hat y_c = 0` with
    :math:`\tilde y_c > 0` gives :math:`+\infty`.

    >>> from xentlib import numpy as xl
    >>> round(float(xl.categorical_cross_entropy([[0.0, 1.0, 0.0]], [[0.1, 0.7, 0.2]])), 6)
    0.356675
    """
    y_true = _float_array(y_true, "y_true")
    y_pred = _float_array(y_pred, "y_pred")
    label_smoothing = V.check_loss_options(from_logits, label_smoothing, reduction)
    _same_shape(y_true, "y_true", y_pred, "y_pred")
    axis = V.normalize_axis(axis, y_pred.ndim)
    _check_distribution(y_true, "y_true", axis)
    target = _compute(smooth_labels(y_true, label_smoothing, axis=axis))
    if from_logits:
        _check_logits(y_pred, "y_pred")
        per_row = -(target * log_softmax(_compute(y_pred), axis=axis)).sum(axis=axis)
    else:
        _check_distribution(y_pred, "y_pred", axis)
        per_row = -_xlogy(target, _compute(y_pred)).sum(axis=axis)
    return _reduce(per_row, reduction).astype(_loss_dtype(y_pred))


def _class_log_probs(y_pred, from_logits, axis):
    """Log-probabilities with the class axis moved last."""
    z = np.moveaxis(_compute(y_pred), axis, -1)
    if from_logits:
        return log_softmax(z, axis=-1)
    with np.errstate(divide="ignore"):
        return np.log(z)


def _check_labels(labels, num_classes, ignore_index, name="labels"):
    if not V.value_checks_enabled() or labels.size == 0:
        return
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if bad.any():
        raise V.bad_labels(name, int(labels[bad].min()), int(labels[bad].max()),
                           num_classes, ignore_index)


def _class_weight(class_weight, num_classes, dtype):
    if class_weight is None:
        return None
    w = _float_array(class_weight, "class_weight")
    if w.shape != (num_classes,):
        raise ValueError(
            f"class_weight must have shape ({num_classes},), one weight per class; got {w.shape}")
    if V.value_checks_enabled() and not (np.isfinite(w).all() and (w >= 0).all()):
        raise V.negative("class_weight")
    return w.astype(dtype)


def sparse_categorical_cross_entropy(labels, y_pred, *, from_logits=False, label_smoothing=0.0,
                                     ignore_index=None, class_weight=None, axis=-1,
                                     reduction="mean"):
    r"""Cross-entropy with integer class labels; any leading shape, e.g. (batch, time).

    .. math:: \ell_n = w_{y_n}\Big[(1-\varepsilon)\big(-\log \hat y_{n, y_n}\big)\Big]
              + \frac{\varepsilon}{C} \sum_{c=1}^{C} w_c \big(-\log \hat y_{n,c}\big),
       \qquad L_{\text{mean}} = \frac{\sum_{n \in \mathcal K} \ell_n}{\sum_{n \in \mathcal K} w_{y_n}}

    where :math:`\mathcal K` are the items whose label is not ``ignore_index``
    and :math:`w = 1` without ``class_weight``. This is exactly PyTorch's
    ``F.cross_entropy(z, y, weight=w, ignore_index=i, label_smoothing=ε)``
    (with the class axis last here, on axis 1 there). Ignored items give 0
    under ``'none'``. Used on (batch, time, vocab) logits it is the token-level
    sequence loss, padding masked with ``ignore_index``.

    >>> from xentlib import numpy as xl
    >>> z = [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]]
    >>> round(float(xl.sparse_categorical_cross_entropy([0, 2], z, from_logits=True)), 6)
    0.175456
    """
    labels = _label_array(labels)
    y_pred = _float_array(y_pred, "y_pred")
    label_smoothing = V.check_loss_options(from_logits, label_smoothing, reduction)
    ignore_index = V.check_int("ignore_index", ignore_index, allow_none=True)
    axis = V.normalize_axis(axis, y_pred.ndim)
    expected = y_pred.shape[:axis] + y_pred.shape[axis + 1:]
    if labels.shape != expected:
        raise V.labels_shape("labels", labels.shape, expected)
    num_classes = y_pred.shape[axis]
    _check_labels(labels, num_classes, ignore_index)
    if from_logits:
        _check_logits(y_pred, "y_pred")
    else:
        _check_distribution(y_pred, "y_pred", axis)
    log_q = _class_log_probs(y_pred, from_logits, axis)
    weight = _class_weight(class_weight, num_classes, log_q.dtype)

    kept = np.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    safe = np.where(kept, labels, 0)
    nll = -np.take_along_axis(log_q, safe[..., None], axis=-1)[..., 0]
    w_y = np.ones_like(nll) if weight is None else weight[safe]
    w_y = np.where(kept, w_y, 0.0)
    per_item = (1 - label_smoothing) * w_y * nll
    if label_smoothing > 0:
        with np.errstate(invalid="ignore"):  # 0 * log 0 is masked to 0
            w_log_q = log_q if weight is None else np.where(weight == 0, 0.0, weight * log_q)
        uniform = -w_log_q.sum(axis=-1) / num_classes
        per_item = per_item + label_smoothing * np.where(kept, uniform, 0.0)
    per_item = np.where(kept, per_item, 0.0)  # also hides 0 * inf from ignored items
    return _reduce(per_item, reduction, denominator=w_y.sum()).astype(_loss_dtype(y_pred))


def binary_cross_entropy(y_true, y_pred, *, from_logits=False, label_smoothing=0.0,
                         pos_weight=None, reduction="mean"):
    r"""Binary and multi-label cross-entropy, one independent Bernoulli per element.

    .. math:: \ell = -\big[\,w_+\, \tilde y \log \hat y + (1 - \tilde y) \log (1 - \hat y)\,\big],
       \qquad \tilde y = y (1 - \varepsilon) + \tfrac{\varepsilon}{2},
       \qquad \hat y = \sigma(z) \text{ if from\_logits}

    Smoothing moves every target towards 1/2, as Keras' binary losses do
    (PyTorch's BCE has no smoothing). ``pos_weight`` (:math:`w_+`, a scalar or
    one value per class on the last axis) multiplies the positive term, as in
    PyTorch's ``binary_cross_entropy_with_logits(pos_weight=...)`` and
    ``tf.nn.weighted_cross_entropy_with_logits``. ``'mean'`` averages over all
    elements. With logits, :math:`\log\sigma(z) = -\operatorname{softplus}(-z)`
    and :math:`\log(1-\sigma(z)) = -\operatorname{softplus}(z)` stay finite.

    >>> from xentlib import numpy as xl
    >>> round(float(xl.binary_cross_entropy([1.0, 0.0], [0.9, 0.2])), 6)
    0.164252
    """
    y_true = _float_array(y_true, "y_true")
    y_pred = _float_array(y_pred, "y_pred")
    label_smoothing = V.check_loss_options(from_logits, label_smoothing, reduction)
    _same_shape(y_true, "y_true", y_pred, "y_pred")
    _check_probabilities(y_true, "y_true")
    y = _compute(y_true) * (1 - label_smoothing) + label_smoothing / 2
    if pos_weight is None:
        w_pos = 1.0
    else:
        w_pos = _float_array(pos_weight, "pos_weight")
        if w_pos.ndim > 1 or (w_pos.ndim == 1 and y_pred.ndim and w_pos.shape[0] != y_pred.shape[-1]):
            raise ValueError(
                f"pos_weight must be a scalar or have shape ({y_pred.shape[-1] if y_pred.ndim else 1},),"
                f" one weight per class on the last axis; got {w_pos.shape}")
        if V.value_checks_enabled() and not (np.isfinite(w_pos).all() and (w_pos >= 0).all()):
            raise V.negative("pos_weight")
        w_pos = _compute(w_pos)
    if from_logits:
        _check_logits(y_pred, "y_pred")
        z = _compute(y_pred)
        log_p, log_not_p = log_sigmoid(z), log_sigmoid(-z)
        per_elem = -(w_pos * y * log_p + (1 - y) * log_not_p)
    else:
        _check_probabilities(y_pred, "y_pred")
        q = np.clip(_compute(y_pred), 0, 1)  # 1 + 1e-16 from round-off: log(1 - q) stays real
        per_elem = -(w_pos * _xlogy(y, q) + _xlogy(1 - y, 1 - q))
    return _reduce(per_elem, reduction).astype(_loss_dtype(y_pred))


def mean_squared_error(y_true, y_pred, *, reduction="mean"):
    r"""Mean squared error, the regression loss of the seeds.

    .. math:: \mathrm{MSE} = \frac{1}{N} \sum_{i=1}^{N} (y_i - \hat y_i)^2

    ``'none'`` returns the squared error of every element (as PyTorch's
    ``mse_loss``; Keras' ``MeanSquaredError`` averages the last axis first).
    ``'mean'`` divides by the number of elements. It equals
    :math:`2\sigma^2` times :func:`gaussian_nll` minus a constant; see there.

    >>> from xentlib import numpy as xl
    >>> float(xl.mean_squared_error([1.0, 2.0], [1.5, 1.0]))
    0.625
    """
    y_true = _float_array(y_true, "y_true")
    y_pred = _float_array(y_pred, "y_pred")
    V.check_reduction(reduction)
    _same_shape(y_true, "y_true", y_pred, "y_pred")
    _check_real_values(y_true, "y_true")
    _check_real_values(y_pred, "y_pred")
    return _reduce((_compute(y_true) - _compute(y_pred)) ** 2, reduction).astype(_loss_dtype(y_pred))


def gaussian_nll(y_true, mean, variance=1.0, *, full=True, reduction="mean"):
    r"""Negative log-likelihood of ``y_true`` under :math:`\mathcal N(\text{mean}, \text{variance})`.

    .. math:: -\log \mathcal N(y \mid \mu, \sigma^2) = \frac{(y - \mu)^2}{2\sigma^2}
              + \frac{1}{2}\log \sigma^2 + \frac{1}{2}\log 2\pi

    ``full=False`` drops the constant :math:`\tfrac12 \log 2\pi` (PyTorch's
    ``gaussian_nll_loss`` default). With a fixed variance the NLL is an affine
    function of the squared error, so minimising MSE *is* maximum likelihood
    under Gaussian noise: :math:`\mathrm{MSE} = 2\sigma^2 (\mathrm{NLL} - \tfrac12\log 2\pi\sigma^2)`.
    ``variance`` is a positive scalar or an array broadcastable to ``y_true``.

    >>> from xentlib import numpy as xl
    >>> round(float(xl.gaussian_nll([0.0], [0.0])), 6)   # -log of N(0; 0, 1) = log sqrt(2 pi)
    0.918939
    """
    y_true = _float_array(y_true, "y_true")
    mean = _float_array(mean, "mean")
    V.check_bool("full", full)
    V.check_reduction(reduction)
    _same_shape(y_true, "y_true", mean, "mean")
    _check_real_values(y_true, "y_true")
    _check_real_values(mean, "mean")
    var = _float_array(variance, "variance")
    try:
        np.broadcast_shapes(var.shape, y_true.shape)
    except ValueError:
        raise ValueError(
            f"variance must be a scalar or broadcastable to {y_true.shape}; got {var.shape}") from None
    if V.value_checks_enabled() and not (np.isfinite(var).all() and (var > 0).all()):
        raise ValueError("variance must be positive and finite")
    var = _compute(var)
    per_elem = 0.5 * ((_compute(y_true) - _compute(mean)) ** 2 / var + np.log(var))
    if full:
        per_elem = per_elem + 0.5 * np.log(2 * np.pi)
    per_elem = np.broadcast_to(per_elem, y_true.shape)
    return _reduce(per_elem, reduction).astype(_loss_dtype(mean))


def perplexity(labels, logits, *, ignore_index=None, axis=-1):
    r"""Perplexity: the exponential of the mean token negative log-likelihood.

    .. math:: \mathrm{PPL} = \exp\Big(\frac{1}{|\mathcal K|}\sum_{t \in \mathcal K} -\log \operatorname{softmax}(z_t)_{y_t}\Big)

    over the tokens :math:`\mathcal K` not equal to ``ignore_index``. The mean
    is taken in log space (log-softmax), so large vocabularies and confident
    models stay finite; TorchMetrics' ``Perplexity`` (softmax, then log) can
    return inf in float32 where this does not. A uniform model over :math:`V`
    tokens has perplexity :math:`V`.

    >>> from xentlib import numpy as xl
    >>> float(xl.perplexity([0, 1, 2], [[0.0, 0.0, 0.0]] * 3))   # uniform over 3
    3.0
    """
    logits = _float_array(logits, "logits")
    _check_logits(logits, "logits")
    mean_nll = sparse_categorical_cross_entropy(
        labels, logits, from_logits=True, ignore_index=ignore_index, axis=axis)
    labels = np.asarray(labels)
    if ignore_index is not None and not (labels != ignore_index).any():
        raise V.no_tokens("labels")
    return np.exp(mean_nll)


def softmax_cross_entropy_grad(y_true, logits, *, axis=-1):
    r"""Gradient of the per-example softmax cross-entropy with respect to the logits.

    .. math:: \frac{\partial}{\partial z_i}\Big(-\sum_c y_c \log \operatorname{softmax}(z)_c\Big)
              = \operatorname{softmax}(z)_i - y_i \qquad (\textstyle\sum_c y_c = 1)

    Unreduced: one gradient row per example. Divide by the batch size for the
    gradient of the ``'mean'`` loss.

    >>> from xentlib import numpy as xl
    >>> xl.softmax_cross_entropy_grad([0.0, 1.0], [0.0, 0.0]).tolist()
    [0.5, -0.5]
    """
    y_true = _float_array(y_true, "y_true")
    logits = _float_array(logits, "logits")
    _same_shape(y_true, "y_true", logits, "logits")
    axis = V.normalize_axis(axis, logits.ndim)
    _check_distribution(y_true, "y_true", axis)
    _check_logits(logits, "logits")
    return (softmax(_compute(logits), axis=axis) - _compute(y_true)).astype(logits.dtype)


def sigmoid_cross_entropy_grad(y_true, logits):
    r"""Gradient of the per-element sigmoid (binary) cross-entropy w.r.t. the logits.

    .. math:: \frac{\partial}{\partial z}\Big(-y \log \sigma(z) - (1-y)\log(1-\sigma(z))\Big) = \sigma(z) - y

    >>> from xentlib import numpy as xl
    >>> xl.sigmoid_cross_entropy_grad([1.0, 0.0], [0.0, 0.0]).tolist()
    [-0.5, 0.5]
    """
    y_true = _float_array(y_true, "y_true")
    logits = _float_array(logits, "logits")
    _same_shape(y_true, "y_true", logits, "logits")
    _check_probabilities(y_true, "y_true")
    _check_logits(logits, "logits")
    return (sigmoid(_compute(logits)) - _compute(y_true)).astype(logits.dtype)


# ---- optimisation -------------------------------------------------------------------

def gradient_descent(loss_and_grad, params, *, learning_rate=0.1, steps=100):
    r"""Plain (full-batch) gradient descent, the seeds' optimisation algorithm.

    .. math:: \theta_{t+1} = \theta_t - \eta \, \nabla_\theta L(\theta_t)

    ``loss_and_grad(params)`` returns ``(loss, grad)`` with ``grad`` shaped like
    ``params``. Returns the final parameters and the loss before every step
    (``steps`` values), so a caller can plot the training curve.

    >>> from xentlib import numpy as xl
    >>> theta, losses = xl.gradient_descent(lambda t: ((t**2).sum(), 2 * t), [3.0],
    ...                                     learning_rate=0.25, steps=3)
    >>> theta.tolist(), losses.tolist()
    ([0.375], [9.0, 2.25, 0.5625])
    """
    if not callable(loss_and_grad):
        raise TypeError("loss_and_grad must be a callable params -> (loss, grad)")
    theta = _float_array(params, "params").copy()
    learning_rate = V.check_positive("learning_rate", learning_rate)
    steps = V.check_int("steps", steps, minimum=0)
    losses = np.empty(steps, dtype=theta.dtype)
    for t in range(steps):
        loss, grad = loss_and_grad(theta)
        grad = np.asarray(grad)
        if grad.shape != theta.shape:
            raise V.shape_mismatch("grad", grad.shape, "params", theta.shape)
        if not np.isfinite(loss):
            raise ValueError(
                f"loss became {float(loss)} at step {t}; lower learning_rate (now {learning_rate})")
        losses[t] = loss
        theta = theta - learning_rate * grad
    return theta, losses


# ---- large vocabularies (issue 5): chunked logits, never the whole N x V matrix ----
from xentlib._linear_numpy import linear_cross_entropy  # noqa: E402
