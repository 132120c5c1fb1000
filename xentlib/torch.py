r"""xentlib.torch: every formula of the book on PyTorch tensors, differentiable with autograd.

``from xentlib import torch as xl`` gives the same names, with the same
signatures and the same semantics, as :mod:`xentlib.numpy` (the reference,
whose module docstring states the conventions) and ``xentlib.tensorflow``.

Conventions, as in the reference
--------------------------------
* **Class axis** is the last one (``axis=-1``). PyTorch's own losses put the
  classes on axis 1 of ``(N, C, d1, ...)`` inputs: pass ``axis=1`` to use such
  tensors unchanged, e.g. ``sparse_categorical_cross_entropy(y, z, axis=1)``
  for ``(N, C, T)`` logits equals ``F.cross_entropy(z, y)``.
* **Inputs**: tensors; Python lists and NumPy arrays are accepted too (lists of
  floats become float64, as in NumPy). Outputs are tensors on the input's
  device.
* **Probabilities are exact**: :math:`0 \log 0 = 0`, :math:`p > 0` where
  :math:`q = 0` gives :math:`+\infty`. ``F.binary_cross_entropy`` instead clamps
  each log at :math:`-100`. Gradients are finite where a target is 0: the
  masked :math:`0 \log q` terms pass a zero gradient (also to :math:`q = 0`).
* **Dtypes**: float64 stays float64, float32 stays float32; float16 and
  bfloat16 are computed in float32. Building blocks return the input dtype,
  losses float32.
* **Reductions**: ``'mean'`` with ``ignore_index``/``class_weight`` divides by
  the summed weight of the kept items, as ``F.cross_entropy`` does; a mean
  over zero kept items is 0 (PyTorch returns NaN).
* **Checks**: bad input raises ``ValueError``/``TypeError`` naming the argument.
  The data-dependent checks read values back to the host (a synchronisation on
  a GPU); ``xentlib.value_checks(False)`` switches them off.
"""
from __future__ import annotations

import math

import numpy as np
import torch

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
    "linear_cross_entropy", "vocab_parallel_cross_entropy",
]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


# ---- input handling ----------------------------------------------------------

def _dtype_name(dtype):
    return str(dtype).replace("torch.", "")


def _from_numpy(x):
    a = np.asarray(x)
    return torch.as_tensor(a if a.flags.writeable else a.copy())


def _float_tensor(x, name, device=None):
    """``x`` as a floating tensor; Python numbers and lists become float64."""
    if not isinstance(x, torch.Tensor):
        try:
            if isinstance(x, (np.ndarray, np.generic)):
                x = _from_numpy(x)
            else:
                x = torch.as_tensor(x, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name} must be an array of floats; got {type(x).__name__}") from None
        if device is not None:
            x = x.to(device)
    if not x.is_floating_point():
        raise V.not_float(name, _dtype_name(x.dtype))
    return x


def _float_pair(a, a_name, b, b_name):
    """Both as floating tensors on one device (the device of whichever was already a tensor)."""
    a_was, b_was = isinstance(a, torch.Tensor), isinstance(b, torch.Tensor)
    a, b = _float_tensor(a, a_name), _float_tensor(b, b_name)
    if a.device != b.device:
        if not a_was:
            a = a.to(b.device)
        elif not b_was:
            b = b.to(a.device)
    return a, b


def _label_tensor(labels, name="labels", device=None):
    if not isinstance(labels, torch.Tensor):
        try:
            labels = _from_numpy(labels)
        except (TypeError, ValueError, RuntimeError):
            raise V.not_integer(name, type(labels).__name__) from None
        if device is not None:
            labels = labels.to(device)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise V.not_integer(name, _dtype_name(labels.dtype))
    return labels


def _compute(x):
    """Work in float32 for 16-bit inputs: float16 overflows at 65504."""
    return x.float() if x.dtype in _LOW_PRECISION else x


def _loss_dtype(x):
    return torch.float32 if x.dtype in _LOW_PRECISION else x.dtype


def _same_shape(a, a_name, b, b_name):
    if a.shape != b.shape:
        raise V.shape_mismatch(a_name, a.shape, b_name, b.shape)


def _check_logits(z, name):
    # One fast pass, one host read: a finite sum means no NaN/inf; an overflowing sum is looked at closely.
    if V.value_checks_enabled() and z.numel():
        z = z.detach()
        if not bool(torch.isfinite(z.sum())) and not bool(torch.isfinite(z).all()):
            raise V.not_finite(name)


def _check_probabilities(p, name):
    if not V.value_checks_enabled() or p.numel() == 0:
        return
    p = p.detach()
    low, high = torch.stack(torch.aminmax(p)).tolist()  # one pass; NaN propagates: one host read
    if math.isnan(low) or math.isnan(high):
        raise V.has_nan(name)
    if low < 0 or high > 1 + V.sum_tolerance(_dtype_name(p.dtype)):
        raise V.not_probability(name, low, high)


def _check_sums(sums, tol, error):
    if sums.numel():
        sums = sums.detach()
        worst = float(sums.flatten()[torch.argmax(torch.abs(sums - 1))])
        if abs(worst - 1) > tol:
            raise error(worst)


def _sum_dtype(p):
    return torch.float32 if p.device.type == "mps" else torch.float64


def _check_distribution(p, name, axis):
    _check_probabilities(p, name)
    if V.value_checks_enabled() and p.numel():
        tol = V.sum_tolerance(_dtype_name(p.dtype))
        if p.dtype != torch.float64:  # a fast float32 sum settles rows clearly within tolerance
            quick = p.detach().sum(dim=axis, dtype=torch.float32)
            if bool(((quick - 1).abs() <= tol / 4).all()):
                return
        _check_sums(p.sum(dim=axis, dtype=_sum_dtype(p)), tol,
                    lambda worst: V.not_distribution(name, worst, tol, axis))


def _check_finite_values(x, name):
    if V.value_checks_enabled() and bool(torch.isnan(x).any()):
        raise V.has_nan(name)


def _check_real_values(x, name):
    """Neither NaN nor +-inf (regression values: inf - inf would be a silent NaN)."""
    _check_finite_values(x, name)
    if V.value_checks_enabled() and bool(torch.isinf(x).any()):
        raise V.has_inf(name)


def _check_softmax_input(x, axis):
    """+inf, or a slice of only -inf, makes softmax 0/0 or inf/inf: NaN."""
    if V.value_checks_enabled() and x.numel() and bool(torch.isinf(torch.amax(x.detach(), dim=axis)).any()):
        raise V.softmax_undefined("x", axis)


def _xlogy(x, y):
    r""":math:`x \log y` with :math:`0 \log y = 0`; zero gradient at :math:`x = 0` (also for :math:`y = 0`)."""
    zero = x == 0
    return torch.where(zero, 0.0, x * torch.log(torch.where(zero, 1.0, y)))


def _reduce(per_item, reduction, denominator=None):
    if reduction == "none":
        return per_item
    total = per_item.sum()
    if reduction == "sum":
        return total
    if denominator is None:
        return total / per_item.numel() if per_item.numel() else torch.zeros_like(total)
    empty = denominator == 0  # stays on the device: no host read
    return torch.where(empty, 0.0, total / torch.where(empty, 1.0, denominator))


# ---- building blocks -----------------------------------------------------------

def logsumexp(x, *, axis=-1, keepdims=False):
    r"""Log-sum-exp, computed without overflow.

    .. math:: \operatorname{LSE}(z) = m + \log \sum_i e^{z_i - m}, \qquad m = \max_i z_i

    ``torch.logsumexp`` (the same formula) over ``axis`` (default the last
    one); 16-bit inputs are computed in float32 and returned in their dtype.

    >>> import torch
    >>> from xentlib import torch as xl
    >>> float(xl.logsumexp(torch.tensor([1000.0, 1000.0], dtype=torch.float64)))
    1000.6931471805599
    """
    x = _float_tensor(x, "x")
    axis = V.normalize_axis(axis, x.ndim)
    _check_finite_values(x, "x")
    return torch.logsumexp(_compute(x), dim=axis, keepdim=keepdims).to(x.dtype)


def softmax(x, *, axis=-1):
    r"""Softmax: turns logits into a probability distribution.

    .. math:: \operatorname{softmax}(z)_i = \frac{e^{z_i}}{\sum_j e^{z_j}} = e^{z_i - \operatorname{LSE}(z)}

    Invariant to adding a constant to every logit. ``torch.softmax``, which
    computes :math:`e^{z_i - m} / \sum_j e^{z_j - m}`.

    >>> from xentlib import torch as xl
    >>> [round(v, 4) for v in xl.softmax([1.0, 2.0, 3.0]).tolist()]
    [0.09, 0.2447, 0.6652]
    """
    x = _float_tensor(x, "x")
    axis = V.normalize_axis(axis, x.ndim)
    _check_finite_values(x, "x")
    _check_softmax_input(x, axis)
    return torch.softmax(_compute(x), dim=axis).to(x.dtype)


def log_softmax(x, *, axis=-1):
    r"""Log-softmax, the log-probabilities of a categorical distribution.

    .. math:: \log \operatorname{softmax}(z)_i = z_i - \operatorname{LSE}(z)
              = (z_i - m) - \log \sum_j e^{z_j - m}

    ``F.log_softmax``, which computes the second form: no cancellation between
    two large numbers for the dominant class. Finite for every finite input,
    unlike ``log(softmax(z))``.

    >>> from xentlib import torch as xl
    >>> xl.log_softmax([0.0, 1000.0]).tolist()
    [-1000.0, 0.0]
    """
    x = _float_tensor(x, "x")
    axis = V.normalize_axis(axis, x.ndim)
    _check_finite_values(x, "x")
    _check_softmax_input(x, axis)
    return torch.nn.functional.log_softmax(_compute(x), dim=axis).to(x.dtype)


def sigmoid(x):
    r"""Logistic sigmoid, computed without overflow.

    .. math:: \sigma(z) = \frac{1}{1 + e^{-z}} = e^{-\operatorname{softplus}(-z)},
       \qquad \operatorname{softplus}(t) = \log(1 + e^{t})

    >>> from xentlib import torch as xl
    >>> xl.sigmoid([-1000.0, 0.0, 1000.0]).tolist()
    [0.0, 0.5, 1.0]
    """
    x = _float_tensor(x, "x")
    _check_finite_values(x, "x")
    return torch.exp(log_sigmoid(_compute(x))).to(x.dtype)


def log_sigmoid(x):
    r"""Log of the sigmoid, stable for any input (``F.logsigmoid``).

    .. math:: \log \sigma(z) = -\operatorname{softplus}(-z) = -\log(1 + e^{-z})

    >>> from xentlib import torch as xl
    >>> [round(v, 6) for v in xl.log_sigmoid([-1000.0, 0.0]).tolist()]
    [-1000.0, -0.693147]
    """
    x = _float_tensor(x, "x")
    _check_finite_values(x, "x")
    return torch.nn.functional.logsigmoid(_compute(x)).to(x.dtype)


# ---- information theory -----------------------------------------------------------

def entropy(p, *, axis=-1, base=None):
    r"""Shannon entropy of the distribution(s) ``p`` along ``axis``.

    .. math:: H(P) = -\sum_i p_i \log p_i, \qquad 0 \log 0 = 0

    ``p`` must sum to 1 along ``axis``. The gradient at :math:`p_i = 0` is
    taken as 0 (the true one, :math:`-\log p_i - 1`, is infinite there).

    >>> from xentlib import torch as xl
    >>> float(xl.entropy([0.5, 0.5], base=2))
    1.0
    """
    p = _float_tensor(p, "p")
    axis = V.normalize_axis(axis, p.ndim)
    divisor = V.log_base(base)
    _check_distribution(p, "p", axis)
    pc = _compute(p)
    return (-_xlogy(pc, pc).sum(dim=axis) / divisor).to(p.dtype)


def _two_distributions(p, q, axis):
    p, q = _float_pair(p, "p", q, "q")
    _same_shape(p, "p", q, "q")
    axis = V.normalize_axis(axis, p.ndim)
    _check_distribution(p, "p", axis)
    _check_distribution(q, "q", axis)
    return p, q, axis


def cross_entropy(p, q, *, axis=-1, base=None):
    r"""Cross-entropy of ``q`` relative to the true distribution ``p``.

    .. math:: H(P, Q) = -\sum_i p_i \log q_i = H(P) + D_{\mathrm{KL}}(P \,\|\, Q)

    :math:`+\infty` where some :math:`p_i > 0` has :math:`q_i = 0`; terms with
    :math:`p_i = 0` are 0 and pass no gradient (no NaN, even at :math:`q_i = 0`).

    >>> from xentlib import torch as xl
    >>> round(float(xl.cross_entropy([0.6, 0.2, 0.2], [0.5, 0.3, 0.2])), 6)
    0.97857
    """
    p, q, axis = _two_distributions(p, q, axis)
    divisor = V.log_base(base)
    return (-_xlogy(_compute(p), _compute(q)).sum(dim=axis) / divisor).to(p.dtype)


def kl_divergence(p, q, *, axis=-1, base=None):
    r"""Kullback–Leibler divergence of ``q`` from ``p`` (argument order as SciPy's).

    .. math:: D_{\mathrm{KL}}(P \,\|\, Q) = \sum_i p_i \log \frac{p_i}{q_i} \;\ge\; 0

    One value per row; their mean equals ``F.kl_div(q.log(), p, reduction='batchmean')``
    (PyTorch takes log-q first and p second; its ``'mean'`` divides by the
    number of elements, which is not a KL divergence).

    >>> from xentlib import torch as xl
    >>> round(float(xl.kl_divergence([0.6, 0.2, 0.2], [0.5, 0.3, 0.2])), 6)
    0.0283
    """
    p, q, axis = _two_distributions(p, q, axis)
    divisor = V.log_base(base)
    pc, qc = _compute(p), _compute(q)
    zero = pc == 0
    terms = torch.where(zero, 0.0, pc * (torch.log(torch.where(zero, 1.0, pc))
                                         - torch.log(torch.where(zero, 1.0, qc))))
    return (terms.sum(dim=axis) / divisor).to(p.dtype)


def _joint(p_xy):
    p_xy = _float_tensor(p_xy, "p_xy")
    if p_xy.ndim < 2:
        raise ValueError(
            f"p_xy must have at least 2 dimensions (X along axis -2, Y along axis -1); "
            f"got shape {tuple(p_xy.shape)}")
    _check_probabilities(p_xy, "p_xy")
    if V.value_checks_enabled() and p_xy.numel():
        tol = V.sum_tolerance(_dtype_name(p_xy.dtype))
        _check_sums(p_xy.sum(dim=(-2, -1), dtype=_sum_dtype(p_xy)), tol, lambda worst: ValueError(
            f"p_xy must sum to 1 over its last two axes (tolerance {tol:g}); "
            f"found a sum of {worst:.6g}"))
    return p_xy


def joint_entropy(p_xy, *, base=None):
    r"""Joint entropy of a table :math:`p(x, y)`, X along axis -2, Y along axis -1.

    .. math:: H(X, Y) = -\sum_{x, y} p(x, y) \log p(x, y)

    >>> from xentlib import torch as xl
    >>> float(xl.joint_entropy([[0.25, 0.25], [0.25, 0.25]], base=2))
    2.0
    """
    p_xy = _joint(p_xy)
    divisor = V.log_base(base)
    pc = _compute(p_xy)
    return (-_xlogy(pc, pc).sum(dim=(-2, -1)) / divisor).to(p_xy.dtype)


def conditional_entropy(p_xy, *, base=None):
    r"""Conditional entropy :math:`H(Y \mid X)`; X along axis -2, Y along axis -1.

    .. math:: H(Y \mid X) = -\sum_{x, y} p(x, y) \log \frac{p(x, y)}{p(x)} = H(X, Y) - H(X)

    >>> from xentlib import torch as xl
    >>> float(xl.conditional_entropy([[0.5, 0.0], [0.0, 0.5]]))   # Y = X: no doubt left
    0.0
    """
    p_xy = _joint(p_xy)
    divisor = V.log_base(base)
    pc = _compute(p_xy)
    p_x = pc.sum(dim=-1, keepdim=True)
    h = -_xlogy(pc, pc / torch.where(p_x == 0, 1.0, p_x)).sum(dim=(-2, -1))
    return (torch.clamp(h, min=0.0) / divisor).to(p_xy.dtype)


def mutual_information(p_xy, *, base=None):
    r"""Mutual information of X (axis -2) and Y (axis -1).

    .. math:: I(X; Y) = \sum_{x, y} p(x, y) \log \frac{p(x, y)}{p(x)\,p(y)}
              = D_{\mathrm{KL}}\big(p(x, y) \,\|\, p(x)\,p(y)\big) = H(Y) - H(Y \mid X)

    Clipped at 0, its true lower bound, against round-off.

    >>> from xentlib import torch as xl
    >>> float(xl.mutual_information([[0.5, 0.0], [0.0, 0.5]], base=2))   # one shared bit
    1.0
    """
    p_xy = _joint(p_xy)
    divisor = V.log_base(base)
    pc = _compute(p_xy)
    product = pc.sum(dim=-1, keepdim=True) * pc.sum(dim=-2, keepdim=True)
    mi = _xlogy(pc, pc / torch.where(product == 0, 1.0, product)).sum(dim=(-2, -1))
    return (torch.clamp(mi, min=0.0) / divisor).to(p_xy.dtype)


# ---- label smoothing ------------------------------------------------------------------

def smooth_labels(y, epsilon, *, axis=-1):
    r"""Standard label smoothing: mix the target with the uniform distribution.

    .. math:: \tilde y = (1 - \varepsilon)\, y + \frac{\varepsilon}{K}

    with :math:`K` the number of classes along ``axis``, as in
    ``F.cross_entropy(label_smoothing=ε)``. The seeds' additive smoothing
    :math:`(P + \epsilon)/(1 + K\epsilon)` is this with
    :math:`\varepsilon = K\epsilon / (1 + K\epsilon)`.

    >>> from xentlib import torch as xl
    >>> xl.smooth_labels([0.0, 1.0, 0.0, 0.0], 0.1).tolist()
    [0.025, 0.925, 0.025, 0.025]
    """
    y = _float_tensor(y, "y")
    epsilon = V.check_fraction("epsilon", epsilon)
    axis = V.normalize_axis(axis, y.ndim)
    _check_distribution(y, "y", axis)
    k = y.shape[axis]
    return ((1 - epsilon) * y + epsilon / k).to(y.dtype)


# ---- losses -------------------------------------------------------------------------

def categorical_cross_entropy(y_true, y_pred, *, from_logits=False, label_smoothing=0.0,
                              axis=-1, reduction="mean"):
    r"""Categorical cross-entropy (log loss) for one-hot or probability targets.

    .. math:: \ell_n = -\sum_{c=1}^{C} \tilde y_{n,c} \log \hat y_{n,c},
       \qquad \hat y = \operatorname{softmax}(z) \text{ if from\_logits}

    with :math:`\tilde y` the targets after :func:`smooth_labels`. ``'mean'``
    divides by the number of rows. With logits it equals ``F.cross_entropy``
    with probability targets (class axis 1 there, ``axis`` here). Probabilities
    are neither renormalised nor clipped: :math:`\hat y_c = 0` with
    :math:`\tilde y_c > 0` gives :math:`+\infty`.

    From logits the gradient is analytic (a custom autograd function: softmax
    computed once, :math:`(\operatorname{softmax}(z) - \tilde y)\,w / \text{denominator}`);
    second-order gradients through it are not supported.

    >>> from xentlib import torch as xl
    >>> round(float(xl.categorical_cross_entropy([[0.0, 1.0, 0.0]], [[0.1, 0.7, 0.2]])), 6)
    0.356675
    """
    y_true, y_pred = _float_pair(y_true, "y_true", y_pred, "y_pred")
    label_smoothing = V.check_loss_options(from_logits, label_smoothing, reduction)
    _same_shape(y_true, "y_true", y_pred, "y_pred")
    axis = V.normalize_axis(axis, y_pred.ndim)
    _check_distribution(y_true, "y_true", axis)
    if label_smoothing:  # smooth_labels without checking y_true a second time
        k = y_true.shape[axis]
        target = _compute(((1 - label_smoothing) * y_true + label_smoothing / k).to(y_true.dtype))
    else:
        target = _compute(y_true)
    if from_logits and y_pred.shape[axis] and not target.requires_grad:
        _check_logits(y_pred, "y_pred")
        z = torch.movedim(_compute(y_pred), axis, -1)
        args = (z, torch.movedim(target, axis, -1), reduction)
        out = _CategoricalCEFromLogits.apply(*args) if _needs_grad(z) else _categorical_forward(*args)[0]
        return out.to(_loss_dtype(y_pred))
    if from_logits:
        _check_logits(y_pred, "y_pred")
        per_row = -(target * log_softmax(_compute(y_pred), axis=axis)).sum(dim=axis)
    else:
        _check_distribution(y_pred, "y_pred", axis)
        per_row = -_xlogy(target, _compute(y_pred)).sum(dim=axis)
    return _reduce(per_row, reduction).to(_loss_dtype(y_pred))


# ---- fast paths from logits: one softmax, analytic gradients --------------------------------
#
# Each custom autograd function computes log-softmax once in forward (PyTorch's fused
# kernel), keeps it for backward and returns the gradient in closed form,
# (softmax(z) - smoothed target) * weight / denominator. Its backward is not itself
# differentiable: second-order gradients are not supported on these paths (the probability
# paths, and targets or weights that require a gradient, use plain autograd).

def _needs_grad(z):
    return torch.is_grad_enabled() and z.requires_grad


def _upstream(g, reduction, like, denominator):
    """Per-item factor of the upstream gradient for each reduction."""
    if reduction == "none":
        return g
    if reduction == "mean":
        empty = denominator == 0
        g = torch.where(empty, 0.0, g / torch.where(empty, 1.0, denominator))
    return g.expand(like.shape)


def _sparse_forward(z, safe, kept, weight, eps, reduction):
    log_q = torch.nn.functional.log_softmax(z, dim=-1)
    w_y = kept.to(z.dtype) if weight is None else torch.where(kept, weight[safe.squeeze(-1)], 0.0)
    per_item = -(1 - eps) * w_y * log_q.gather(-1, safe).squeeze(-1)
    if eps > 0:  # -sum_c w_c log q_c / C
        w_log_q = log_q.sum(dim=-1) if weight is None else torch.matmul(log_q, weight)
        per_item = per_item - (eps / z.shape[-1]) * torch.where(kept, w_log_q, 0.0)
    per_item = torch.where(kept, per_item, 0.0)
    denominator = w_y.sum()
    return _reduce(per_item, reduction, denominator), log_q, w_y, denominator


class _SparseCEFromLogits(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, safe, kept, weight, eps, reduction):
        out, log_q, w_y, denominator = _sparse_forward(z, safe, kept, weight, eps, reduction)
        ctx.save_for_backward(log_q, safe, kept, w_y, weight, denominator)
        ctx.eps, ctx.reduction = eps, reduction
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        log_q, safe, kept, w_y, weight, denominator = ctx.saved_tensors
        eps, num_classes = ctx.eps, log_q.shape[-1]
        g = _upstream(g, ctx.reduction, kept, denominator)
        target_coef = (1 - eps) * w_y * g  # 0 for ignored items
        row = target_coef
        if eps > 0:
            uniform_g = torch.where(kept, g, 0.0) * (eps / num_classes)
            row = target_coef + uniform_g * (num_classes if weight is None else weight.sum())
        grad = torch.exp(log_q).mul_(row.unsqueeze(-1))
        if eps > 0:
            grad.sub_(uniform_g.unsqueeze(-1) if weight is None else uniform_g.unsqueeze(-1) * weight)
        grad.scatter_add_(-1, safe, -target_coef.unsqueeze(-1))
        return grad, None, None, None, None, None


def _categorical_forward(z, t, reduction):
    log_q = torch.nn.functional.log_softmax(z, dim=-1)
    return _reduce(-(t * log_q).sum(dim=-1), reduction), log_q


class _CategoricalCEFromLogits(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, t, reduction):
        out, log_q = _categorical_forward(z, t, reduction)
        ctx.save_for_backward(log_q, t)
        ctx.reduction = reduction
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        log_q, t = ctx.saved_tensors
        total_t = t.sum(dim=-1)
        count = torch.tensor(float(total_t.numel()), dtype=log_q.dtype, device=log_q.device)
        g = _upstream(g, ctx.reduction, total_t, count).unsqueeze(-1)
        grad = torch.exp(log_q).mul_(total_t.unsqueeze(-1) * g)  # (sum_c t_c) softmax - t
        return grad.addcmul_(t, g, value=-1), None, None


def _binary_forward(z, y, w_pos, reduction):
    log_p = torch.nn.functional.logsigmoid(z)
    plain = w_pos is None and y.dtype == z.dtype and z.is_contiguous() and y.is_contiguous()
    if plain and reduction != "none":
        total = z.sum() - torch.dot(y.reshape(-1), z.reshape(-1)) - log_p.sum()  # no N x C temporaries
        return total / z.numel() if reduction == "mean" and z.numel() else total
    if w_pos is None:  # (1 - y) z - log sigma(z)
        per_elem = torch.addcmul(z - log_p, y, z, value=-1)
    else:  # -(w y log sigma(z) + (1 - y) log sigma(-z)),  log sigma(-z) = log sigma(z) - z
        per_elem = (1 - y) * z - (w_pos * y + (1 - y)) * log_p
    return _reduce(per_elem, reduction)


class _BinaryCEFromLogits(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, y, w_pos, reduction):
        ctx.save_for_backward(z, y, w_pos)
        ctx.reduction = reduction
        return _binary_forward(z, y, w_pos, reduction)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        z, y, w_pos = ctx.saved_tensors
        count = torch.tensor(float(z.numel()), dtype=z.dtype, device=z.device)
        g = _upstream(g, ctx.reduction, z, count)
        grad = torch.sigmoid(z)  # d/dz = sigma(z) (w y + 1 - y) - w y
        if w_pos is None:
            grad.sub_(y)
        else:
            wy = w_pos * y
            grad.mul_(wy + (1 - y)).sub_(wy)
        return grad.mul_(g), None, None, None


def _check_labels(labels, num_classes, ignore_index, name="labels"):
    if not V.value_checks_enabled() or labels.numel() == 0:
        return
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if bool(bad.any()):
        raise V.bad_labels(name, int(labels[bad].min()), int(labels[bad].max()),
                           num_classes, ignore_index)


def _class_weight(class_weight, num_classes, like):
    if class_weight is None:
        return None
    w = _float_tensor(class_weight, "class_weight", like.device)
    if w.shape != (num_classes,):
        raise ValueError(
            f"class_weight must have shape ({num_classes},), one weight per class; "
            f"got {tuple(w.shape)}")
    if V.value_checks_enabled() and not bool((torch.isfinite(w) & (w >= 0)).all()):
        raise V.negative("class_weight")
    return w.to(device=like.device, dtype=like.dtype)


def sparse_categorical_cross_entropy(labels, y_pred, *, from_logits=False, label_smoothing=0.0,
                                     ignore_index=None, class_weight=None, axis=-1,
                                     reduction="mean"):
    r"""Cross-entropy with integer class labels; any leading shape, e.g. (batch, time).

    .. math:: \ell_n = w_{y_n}\Big[(1-\varepsilon)\big(-\log \hat y_{n, y_n}\big)\Big]
              + \frac{\varepsilon}{C} \sum_{c=1}^{C} w_c \big(-\log \hat y_{n,c}\big),
       \qquad L_{\text{mean}} = \frac{\sum_{n \in \mathcal K} \ell_n}{\sum_{n \in \mathcal K} w_{y_n}}

    where :math:`\mathcal K` are the items whose label is not ``ignore_index``
    and :math:`w = 1` without ``class_weight``. This is
    ``F.cross_entropy(z, y, weight=w, ignore_index=i, label_smoothing=ε)``
    with the class axis last here (``axis=1`` reproduces PyTorch's layout),
    except that a ``'mean'`` over no kept item is 0 here and NaN there. With
    probabilities it is ``F.nll_loss(y_pred.log(), y)``. Ignored items give
    0 under ``'none'``.

    From logits the gradient is analytic (a custom autograd function: softmax
    computed once, :math:`(\operatorname{softmax}(z) - \tilde y)\,w / \text{denominator}`);
    second-order gradients through it are not supported.

    >>> import torch
    >>> from xentlib import torch as xl
    >>> z = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> round(float(xl.sparse_categorical_cross_entropy([0, 2], z, from_logits=True)), 6)
    0.175456
    """
    labels = _label_tensor(labels)
    y_pred = _float_tensor(y_pred, "y_pred", labels.device)
    label_smoothing = V.check_loss_options(from_logits, label_smoothing, reduction)
    ignore_index = V.check_int("ignore_index", ignore_index, allow_none=True)
    axis = V.normalize_axis(axis, y_pred.ndim)
    expected = tuple(y_pred.shape[:axis] + y_pred.shape[axis + 1:])
    if tuple(labels.shape) != expected:
        raise V.labels_shape("labels", labels.shape, expected)
    num_classes = y_pred.shape[axis]
    _check_labels(labels, num_classes, ignore_index)
    if from_logits:
        _check_logits(y_pred, "y_pred")
    else:
        _check_distribution(y_pred, "y_pred", axis)
    labels = labels.to(y_pred.device)
    z = torch.movedim(_compute(y_pred), axis, -1)
    weight = _class_weight(class_weight, num_classes, z)

    kept = torch.ones_like(labels, dtype=torch.bool) if ignore_index is None else labels != ignore_index
    safe = torch.where(kept, labels, 0).long().unsqueeze(-1)
    if from_logits and num_classes and (weight is None or not weight.requires_grad):
        args = (z, safe, kept, weight, label_smoothing, reduction)
        out = _SparseCEFromLogits.apply(*args) if _needs_grad(z) else _sparse_forward(*args)[0]
        return out.to(_loss_dtype(y_pred))
    if from_logits:
        log_q = torch.nn.functional.log_softmax(z, dim=-1)  # what F.cross_entropy does
        nll = -torch.gather(log_q, -1, safe).squeeze(-1)
    else:
        picked = torch.gather(z, -1, safe).squeeze(-1)
        nll = -torch.log(torch.where(kept, picked, 1.0))  # log only where needed: no 0 * inf
    w_y = torch.ones_like(nll) if weight is None else weight[safe.squeeze(-1)]
    w_y = torch.where(kept, w_y, 0.0)
    per_item = (1 - label_smoothing) * w_y * nll
    if label_smoothing > 0:
        if weight is None:
            w_log_q = log_q if from_logits else torch.log(z)
        else:  # a class of weight 0 adds nothing, even at probability 0: 0 log 0 = 0, and no NaN gradient
            zero_w = weight == 0
            if not from_logits:
                log_q = torch.log(torch.where(zero_w, 1.0, z))
            w_log_q = torch.where(zero_w, 0.0, weight * log_q)
        uniform = -w_log_q.sum(dim=-1) / num_classes
        per_item = per_item + label_smoothing * torch.where(kept, uniform, 0.0)
    per_item = torch.where(kept, per_item, 0.0)
    return _reduce(per_item, reduction, denominator=w_y.sum()).to(_loss_dtype(y_pred))


def binary_cross_entropy(y_true, y_pred, *, from_logits=False, label_smoothing=0.0,
                         pos_weight=None, reduction="mean"):
    r"""Binary and multi-label cross-entropy, one independent Bernoulli per element.

    .. math:: \ell = -\big[\,w_+\, \tilde y \log \hat y + (1 - \tilde y) \log (1 - \hat y)\,\big],
       \qquad \tilde y = y (1 - \varepsilon) + \tfrac{\varepsilon}{2},
       \qquad \hat y = \sigma(z) \text{ if from\_logits}

    Smoothing moves every target towards 1/2, as Keras does (PyTorch has
    none). ``pos_weight`` (scalar or one value per class on the last axis) is
    ``F.binary_cross_entropy_with_logits(pos_weight=...)``'s. ``'mean'``
    averages over all elements. Probabilities are exact: unlike
    ``F.binary_cross_entropy``, which clamps each log at -100, a wrong
    certain prediction costs :math:`+\infty`.

    From logits the gradient is analytic (a custom autograd function,
    :math:`\sigma(z)(w_+ \tilde y + 1 - \tilde y) - w_+ \tilde y`); second-order
    gradients through it are not supported.

    >>> from xentlib import torch as xl
    >>> round(float(xl.binary_cross_entropy([1.0, 0.0], [0.9, 0.2])), 6)
    0.164252
    """
    y_true, y_pred = _float_pair(y_true, "y_true", y_pred, "y_pred")
    label_smoothing = V.check_loss_options(from_logits, label_smoothing, reduction)
    _same_shape(y_true, "y_true", y_pred, "y_pred")
    _check_probabilities(y_true, "y_true")
    y = _compute(y_true)
    if label_smoothing:
        y = y * (1 - label_smoothing) + label_smoothing / 2
    if pos_weight is None:
        w_pos = 1.0
    else:
        w_pos = _float_tensor(pos_weight, "pos_weight", y_pred.device)
        if w_pos.ndim > 1 or (w_pos.ndim == 1 and y_pred.ndim and w_pos.shape[0] != y_pred.shape[-1]):
            raise ValueError(
                f"pos_weight must be a scalar or have shape ({y_pred.shape[-1] if y_pred.ndim else 1},),"
                f" one weight per class on the last axis; got {tuple(w_pos.shape)}")
        if V.value_checks_enabled() and not bool((torch.isfinite(w_pos) & (w_pos >= 0)).all()):
            raise V.negative("pos_weight")
        w_pos = _compute(w_pos).to(y_pred.device)
    if from_logits:
        _check_logits(y_pred, "y_pred")
        z = _compute(y_pred)
        w = None if pos_weight is None else w_pos
        if not y.requires_grad and (w is None or (not w.requires_grad and (w.ndim == 0 or z.ndim))):
            args = (z, y, w, reduction)
            out = _BinaryCEFromLogits.apply(*args) if _needs_grad(z) else _binary_forward(*args)
            return out.to(_loss_dtype(y_pred))
        log_p, log_not_p = log_sigmoid(z), log_sigmoid(-z)
        per_elem = -(w_pos * y * log_p + (1 - y) * log_not_p)
    else:
        _check_probabilities(y_pred, "y_pred")
        q = torch.clamp(_compute(y_pred), 0, 1)  # 1 + 1e-16 from round-off: log(1 - q) stays real
        per_elem = -(w_pos * _xlogy(y, q) + _xlogy(1 - y, 1 - q))
    return _reduce(per_elem, reduction).to(_loss_dtype(y_pred))


def mean_squared_error(y_true, y_pred, *, reduction="mean"):
    r"""Mean squared error, the regression loss of the seeds.

    .. math:: \mathrm{MSE} = \frac{1}{N} \sum_{i=1}^{N} (y_i - \hat y_i)^2

    ``'none'`` keeps every element's squared error, as ``F.mse_loss`` does.

    >>> from xentlib import torch as xl
    >>> float(xl.mean_squared_error([1.0, 2.0], [1.5, 1.0]))
    0.625
    """
    y_true, y_pred = _float_pair(y_true, "y_true", y_pred, "y_pred")
    V.check_reduction(reduction)
    _same_shape(y_true, "y_true", y_pred, "y_pred")
    _check_real_values(y_true, "y_true")
    _check_real_values(y_pred, "y_pred")
    return _reduce((_compute(y_true) - _compute(y_pred)) ** 2, reduction).to(_loss_dtype(y_pred))


def gaussian_nll(y_true, mean, variance=1.0, *, full=True, reduction="mean"):
    r"""Negative log-likelihood of ``y_true`` under :math:`\mathcal N(\text{mean}, \text{variance})`.

    .. math:: -\log \mathcal N(y \mid \mu, \sigma^2) = \frac{(y - \mu)^2}{2\sigma^2}
              + \frac{1}{2}\log \sigma^2 + \frac{1}{2}\log 2\pi

    ``full=False`` drops :math:`\tfrac12 \log 2\pi`. Equals
    ``F.gaussian_nll_loss(mean, y, var, full=full)`` (which clamps the
    variance at ``eps=1e-6``; here it must be positive).
    :math:`\mathrm{MSE} = 2\sigma^2 (\mathrm{NLL} - \tfrac12\log 2\pi\sigma^2)`.

    >>> from xentlib import torch as xl
    >>> round(float(xl.gaussian_nll([0.0], [0.0])), 6)   # -log of N(0; 0, 1) = log sqrt(2 pi)
    0.918939
    """
    y_true, mean = _float_pair(y_true, "y_true", mean, "mean")
    V.check_bool("full", full)
    V.check_reduction(reduction)
    _same_shape(y_true, "y_true", mean, "mean")
    _check_real_values(y_true, "y_true")
    _check_real_values(mean, "mean")
    var = _float_tensor(variance, "variance", y_true.device)
    try:
        torch.broadcast_shapes(var.shape, y_true.shape)
    except RuntimeError:
        raise ValueError(
            f"variance must be a scalar or broadcastable to {tuple(y_true.shape)}; "
            f"got {tuple(var.shape)}") from None
    if V.value_checks_enabled() and not bool((torch.isfinite(var) & (var > 0)).all()):
        raise ValueError("variance must be positive and finite")
    var = _compute(var).to(y_true.device)
    per_elem = 0.5 * ((_compute(y_true) - _compute(mean)) ** 2 / var + torch.log(var))
    if full:
        per_elem = per_elem + 0.5 * math.log(2 * math.pi)
    per_elem = torch.broadcast_to(per_elem, y_true.shape)
    return _reduce(per_elem, reduction).to(_loss_dtype(mean))


def perplexity(labels, logits, *, ignore_index=None, axis=-1):
    r"""Perplexity: the exponential of the mean token negative log-likelihood.

    .. math:: \mathrm{PPL} = \exp\Big(\frac{1}{|\mathcal K|}\sum_{t \in \mathcal K} -\log \operatorname{softmax}(z_t)_{y_t}\Big)

    over the tokens :math:`\mathcal K` not equal to ``ignore_index``, in log
    space (stays finite where softmax-then-log would not). A uniform model over
    :math:`V` tokens has perplexity :math:`V`.

    >>> import torch
    >>> from xentlib import torch as xl
    >>> float(xl.perplexity([0, 1, 2], torch.zeros(3, 3)))   # uniform over 3
    3.0
    """
    logits = _float_tensor(logits, "logits")
    _check_logits(logits, "logits")
    mean_nll = sparse_categorical_cross_entropy(
        labels, logits, from_logits=True, ignore_index=ignore_index, axis=axis)
    labels = _label_tensor(labels)
    if ignore_index is not None and not bool((labels != ignore_index).any()):
        raise V.no_tokens("labels")
    return torch.exp(mean_nll)


def softmax_cross_entropy_grad(y_true, logits, *, axis=-1):
    r"""Gradient of the per-example softmax cross-entropy with respect to the logits.

    .. math:: \frac{\partial}{\partial z_i}\Big(-\sum_c y_c \log \operatorname{softmax}(z)_c\Big)
              = \operatorname{softmax}(z)_i - y_i \qquad (\textstyle\sum_c y_c = 1)

    Unreduced, one row per example: what autograd gives for ``reduction='sum'``.

    >>> from xentlib import torch as xl
    >>> xl.softmax_cross_entropy_grad([0.0, 1.0], [0.0, 0.0]).tolist()
    [0.5, -0.5]
    """
    y_true, logits = _float_pair(y_true, "y_true", logits, "logits")
    _same_shape(y_true, "y_true", logits, "logits")
    axis = V.normalize_axis(axis, logits.ndim)
    _check_distribution(y_true, "y_true", axis)
    _check_logits(logits, "logits")
    return (softmax(_compute(logits), axis=axis) - _compute(y_true)).to(logits.dtype)


def sigmoid_cross_entropy_grad(y_true, logits):
    r"""Gradient of the per-element sigmoid (binary) cross-entropy w.r.t. the logits.

    .. math:: \frac{\partial}{\partial z}\Big(-y \log \sigma(z) - (1-y)\log(1-\sigma(z))\Big) = \sigma(z) - y

    >>> from xentlib import torch as xl
    >>> xl.sigmoid_cross_entropy_grad([1.0, 0.0], [0.0, 0.0]).tolist()
    [-0.5, 0.5]
    """
    y_true, logits = _float_pair(y_true, "y_true", logits, "logits")
    _same_shape(y_true, "y_true", logits, "logits")
    _check_probabilities(y_true, "y_true")
    _check_logits(logits, "logits")
    return (sigmoid(_compute(logits)) - _compute(y_true)).to(logits.dtype)


# ---- large vocabularies (issue 5): chunked logits, never the whole N x V matrix ----
from xentlib._linear_torch import linear_cross_entropy  # noqa: E402
from xentlib.distributed import vocab_parallel_cross_entropy  # noqa: E402
