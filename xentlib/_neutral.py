r"""The backend-neutral parts of the formulas, written once for the three backends.

A backend's public function computes the terms of its formula in its own framework
(log-probabilities, a focal factor) and passes them here to be combined. These
functions use only the arithmetic operators that NumPy arrays, PyTorch tensors and
TensorFlow tensors share, and the backend's ``times`` (``weight * term`` with
:math:`0 \cdot \infty = 0`). The calibration bins are counted on the host, in NumPy
float64, for every backend.
"""
from __future__ import annotations

import numpy as np


def smoothed_binary(y, epsilon):
    """Binary label smoothing: every target moved towards 1/2. The complement of a smoothed
    target is ``smoothed_binary(1 - y, epsilon)``, not ``1 - smoothed_binary(y, epsilon)``:
    1 - eps/2 rounds to 1 for eps below 2^-24 in float32, and 1 minus it is then 0."""
    return y * (1 - epsilon) + epsilon / 2


def binary_miss(y, not_y, q):
    r"""The focal base :math:`1 - p_t = y (1 - q) + (1 - y)\, q` of probabilities (``not_y``: the
    smoothed complement :math:`1 - y`); 0 only where :math:`y = q \in \{0, 1\}`."""
    return y * (1 - q) + not_y * q


def unfrozen(x, ce):
    """``freeze`` (see :func:`binary_focal`) of a backend without gradients, or whose ``times``
    passes none to its weight where the term is infinite."""
    return x


def binary_focal(times, scaled, freeze, y, not_y, ce, miss, alpha):
    r"""Per element :math:`\alpha_t (1 - p_t)^\gamma \big(-y \log p - (1 - y) \log(1 - p)\big)`.

    ``ce`` is the per-element cross-entropy, ``miss`` :math:`(1 - p_t)^\gamma` (``None`` for
    ``gamma=0``), ``not_y`` the target's complement; ``alpha`` ``None`` is :math:`\alpha_t = 1`.
    ``scaled(miss, ce)`` is ``miss * ce``, but ``ce`` where it is infinite: the factor is positive
    there (an infinite ``ce`` is a target > 0 at q = 0, or < 1 at q = 1, and then
    :math:`1 - p_t` is that target or its complement), though it may underflow to 0. ``freeze(x,
    ce)`` is ``x`` with no gradient where ``ce`` is infinite: there the gradient is the
    cross-entropy's times the factor, not inf - inf from the product rule.
    """
    per_elem = ce
    if miss is not None:
        per_elem = scaled(miss, per_elem)
    if alpha is not None:
        per_elem = times(freeze(alpha * y + (1 - alpha) * not_y, ce), per_elem)
    return per_elem


def categorical_focal(times, scaled, freeze, terms, miss, alpha):
    r"""Per class :math:`-\alpha_c\, \tilde y_c (1 - \hat y_c)^\gamma \log \hat y_c` (summed by the caller)
    from the cross-entropy terms :math:`-\tilde y_c \log \hat y_c`; ``miss``, ``scaled`` and
    ``freeze`` as in :func:`binary_focal` (an infinite term has :math:`\hat y_c = 0`, a factor of 1).

    ``alpha`` is ``None``, a scalar, or per-class weights shaped to broadcast along
    the class axis (the front door shapes them).
    """
    ce = terms
    if miss is not None:
        terms = scaled(miss, terms)
    if alpha is not None:
        terms = times(freeze(alpha, ce), terms)
    return terms


def log_softplus(m, x):
    r""":math:`\log \operatorname{softplus}(x) = \log\log(1 + e^x)`, also where the softplus
    underflows (:math:`x + \log(\log(1 + e^x) / e^x)`, the last factor 1 when :math:`e^x` is 0).
    ``m``: the backend's math (``exp``, ``log``, ``log1p``, ``softplus``, ``where``, ``minimum``,
    ``maximum``, ``isinf``; ``where`` takes Python numbers too)."""
    low = m.minimum(x, 0)
    e = m.exp(low)
    low_ratio = m.where(e > 0, m.log1p(e) / m.where(e > 0, e, 1.0), 1.0)
    return m.where(x > 0, m.log(m.softplus(m.maximum(x, 0))), low + m.log(low_ratio))


def binary_focal_logit_gradients(m, z, y, gamma, g, target_grad=True):
    r"""Upstream ``g`` times the gradients of :math:`(1 - p_t)^\gamma\,\mathrm{ce}` from logits with
    respect to ``z`` and ``y`` (``None`` for ``y`` unless ``target_grad``), assembled in log space.

    With :math:`a = \log\sigma(z)`, :math:`b = \log\sigma(-z)`, :math:`L = \log(1 - p_t) =
    \log(y e^b + (1 - y) e^a)` and :math:`\mathrm{ce} = -y a - (1 - y) b`:

    .. math::
        \partial_z = e^{\gamma L}\big((1 - y)\sigma(z) - y\sigma(-z)\big)
                     + \gamma (1 - 2y)\, e^{\gamma L + (a + b - L) + \log \mathrm{ce}}, \qquad
        \partial_y = -z\, e^{\gamma L}
                     - \gamma \operatorname{sign}(z)\, e^{(\gamma - 1) L + \log \mathrm{ce}
                       + \log|\tanh(z/2)|}.

    Every exponent is a sum of terms that cannot overflow where the result is finite
    (:math:`a + b \le L \le 0`), so no 0 x inf: autograd of the value would take
    :math:`\log y` (infinite slope at :math:`y \in \{0, 1\}`) and :math:`\gamma\,\mathrm{ce}`
    times a vanishing :math:`\sigma` (NaN near the dtype's max). ``m``: as in :func:`log_softplus`,
    with ``log_sigmoid``, ``sigmoid``, ``logaddexp``, ``tanh``, ``abs`` and ``sign``."""
    d_ce_z = (1 - y) * m.sigmoid(z) - y * m.sigmoid(-z)
    if not gamma:  # the cross-entropy's
        return g * d_ce_z, (g * -z if target_grad else None)  # finite
    a, b = m.log_sigmoid(z), m.log_sigmoid(-z)
    log_y, log_not_y = m.log(y), m.log1p(-y)  # -inf at y = 0 or 1: no gradient taken through them
    log_miss = m.logaddexp(log_y + b, log_not_y + a)
    log_ce = m.logaddexp(log_y + log_softplus(m, -z), log_not_y + log_softplus(m, z))
    miss = m.exp(gamma * log_miss)
    d_z = miss * d_ce_z + gamma * (1 - 2 * y) * m.exp(gamma * log_miss + (a + b - log_miss) + log_ce)
    if not target_grad:  # targets are rarely trained: their term is a third of the work
        return g * d_z, None
    # g first: a weight below 1 (alpha, a mean) may bring a sum beyond the max back within it
    d_y = (g * -z) * miss - (gamma * g) * m.sign(z) * m.exp((gamma - 1) * log_miss + log_ce
                                                             + m.log(m.abs(m.tanh(z / 2))))
    return g * d_z, m.where(g == 0, 0.0, d_y)  # 0, not 0 x inf, where a weight 0 passes g = 0


def categorical_focal_logit_gradients(m, z, others, t, gamma, g, target_grad=True):
    r"""Upstream ``g`` (per class) times the gradients of the terms
    :math:`t_c (1 - q_c)^\gamma (-\log q_c)` from logits (classes last) with
    respect to ``z`` and ``t`` (``None`` for ``t`` unless ``target_grad``); ``others`` is
    :math:`O_c = \log\sum_{j \ne c} e^{z_j}`.

    With :math:`d_c = O_c - z_c` (so :math:`q_c = \sigma(-d_c)`, :math:`-\log q_c =
    \operatorname{softplus}(d_c)`, :math:`q_c / (1 - q_c) = e^{-d_c}`) and
    :math:`h = \operatorname{softplus}(d)\, e^{-d} \in (0, 1]`:

    .. math::
        k_c = -g_c t_c (1 - q_c)^\gamma (1 + \gamma h(d_c)), \qquad
        \partial_{z_j} = k_j - q_j \textstyle\sum_c k_c, \qquad
        \partial_{t_c} = g_c (1 - q_c)^\gamma \operatorname{softplus}(d_c).

    :math:`d` is exact to the logits' rounding (autograd through :math:`\log q = z - \operatorname{lse}(z)`
    and :math:`\log(1 - q)` loses the factor :math:`q \log q / (1 - q)` to cancellation once a
    logit passes about 30). ``m``: as in :func:`log_softplus`, with ``softmax`` and ``sum_last``
    (a sum over the last axis, kept)."""
    d = others - z
    if gamma:
        miss = m.exp(-gamma * m.softplus(-d))  # (1 - q)^gamma
        h = m.where(d == np.inf, 0.0, m.where(d == -np.inf, 1.0, m.exp(log_softplus(m, d) - d)))
        k = m.where(t == 0, 0.0, -g * t * miss * (1 + gamma * h))
    else:  # the cross-entropy's
        miss, k = 1.0, -g * t
    d_z = k - m.softmax(z) * m.sum_last(k)
    if not target_grad:
        return d_z, None
    nll = m.softplus(d)
    d_t = m.where(g == 0, 0.0, g * m.where(m.isinf(nll), nll, miss * m.where(m.isinf(nll), 0.0, nll)))  # 0 x inf
    return d_z, d_t


def squared_error_over_twice_variance(y, mu, root_var):
    r""":math:`(y - \mu)^2 / (2 \sigma^2)`, finite wherever the result is.

    The difference is halved first (exact, and :math:`|y/2 - \mu/2|` never passes the
    dtype's max, where :math:`y - \mu` may), then divided by
    :math:`\sigma / \sqrt 2` (a normal number even for a subnormal variance) before the
    square: :math:`(y - \mu)^2` alone overflows far sooner.
    """
    scaled = (y * 0.5 - mu * 0.5) / (root_var * 0.5 ** 0.5)
    return scaled * scaled


def calibration_bins(labels, probs, n_bins, binning, axis):
    """Count and ``|sum(correct - confidence)|`` of each non-empty bin (float64 NumPy arrays).

    No items give one bin of count 1 and gap 0, so that the expected
    (``gap.sum() / count.sum()``) and the maximum (``(gap / count).max()``)
    calibration errors are both 0 there.
    """
    probs = np.moveaxis(np.asarray(probs, np.float64), axis, -1)
    probs = probs.reshape(-1, probs.shape[-1])
    if not len(probs):
        return np.ones(1), np.zeros(1)
    confidence = probs.max(axis=-1)
    correct = probs.argmax(axis=-1) == np.asarray(labels).reshape(-1)
    if binning == "width":
        bins = width_bins(confidence, n_bins)
    else:
        bins = np.empty(len(confidence), np.int64)
        ranks = np.arange(len(confidence))
        bins[np.argsort(confidence, kind="stable")] = ranks * n_bins // len(ranks)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, weights=correct - confidence, minlength=n_bins))
    kept = count > 0
    return count[kept].astype(np.float64), gap[kept]


def width_bins(confidence, n_bins):
    """The bin of each confidence among ``n_bins`` equal, right-closed intervals of (0, 1],
    exactly: ``c`` is in bin ``b`` (from 0) where ``b/B < c <= (b+1)/B``.

    ``ceil(c * B) - 1``, except where the product rounds onto an integer ``k`` that the
    exact product exceeds (``c`` = 0.33333333333333337, ``B`` = 3 gives 1.0): such a ``c``
    lies above the edge ``k/B``. The product's rounding error is exact (Dekker's product).
    """
    confidence = np.asarray(confidence, np.float64)
    scale = np.float64(n_bins)
    product = confidence * scale
    bins = np.ceil(product).astype(np.int64) - 1
    on_edge = np.flatnonzero(product == np.rint(product))  # few: the error is computed for these only
    bins[on_edge] += _product_error(confidence[on_edge], scale, product[on_edge]) > 0
    return np.clip(bins, 0, n_bins - 1)


def _product_error(a, b, product):
    """``a * b - product`` exactly (Dekker: each factor split into two 26-bit halves)."""
    def split(x):
        t = 134217729.0 * x  # 2**27 + 1
        high = t - (t - x)
        return high, x - high
    a_high, a_low = split(a)
    b_high, b_low = split(b)
    return ((a_high * b_high - product) + a_high * b_low + a_low * b_high) + a_low * b_low
