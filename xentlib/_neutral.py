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
