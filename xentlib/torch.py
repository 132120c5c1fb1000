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
  each log at :math:`-100`. Gradients are finite where the loss is: a
  :math:`0 \log 0` term passes a zero gradient, and the focal factors at
  :math:`q \in \{0, 1\}` theirs, not NaN; an infinite term (:math:`p > 0`
  at :math:`q = 0`) passes 0, also where a caller masks it out.
* **Dtypes**: float64 stays float64, float32 stays float32; float16 and
  bfloat16 are computed in float32. Building blocks return the input dtype,
  losses float32.
* **Reductions**: ``'mean'`` with ``ignore_index``/``class_weight`` divides by
  the summed weight of the kept items, as ``F.cross_entropy`` does; a mean
  over zero kept items is 0 (PyTorch returns NaN).
* **Checks**: bad input raises ``ValueError``/``TypeError`` naming the argument.
  The data-dependent checks read values back to the host (a synchronisation on
  a GPU); ``xentlib.value_checks(False)`` switches them off. Inside
  ``torch.func.vmap``, where no value can be read back, they are skipped
  (under ``torch.func.grad`` they run).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from xentlib import _neutral
from xentlib import _validate as V
from xentlib._docs import public_names, shared
from xentlib._torch_ops import front_door as _fd

__all__ = public_names("torch")

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def __getattr__(name):
    """The large-vocabulary losses, imported when first used (``torch.distributed`` only then)."""
    if name == "linear_cross_entropy":
        from xentlib._linear_torch import linear_cross_entropy
        return linear_cross_entropy
    if name == "vocab_parallel_cross_entropy":
        from xentlib.distributed import vocab_parallel_cross_entropy
        return vocab_parallel_cross_entropy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---- formula helpers -----------------------------------------------------------

def _compute(x):
    """Work in float32 for 16-bit inputs: float16 overflows at 65504."""
    return x.float() if x.dtype in _LOW_PRECISION else x


def _wide(x):
    """float32 as float64, for weighted item losses: ``w * loss`` (or a weighted sum over
    classes) can pass float32's maximum where the reduced result does not."""
    return x.double() if x.dtype == torch.float32 else x


def _loss_dtype(x):
    return torch.float32 if x.dtype in _LOW_PRECISION else x.dtype


def _xlogy(x, y):
    r""":math:`x \log y` with :math:`0 \log 0 = 0`; ``x >= 0``, ``y >= 0``. The log is of a masked argument:
    where :math:`y = 0` the term is the constant 0 or :math:`-\infty` (gradient 0: a mask of the product
    alone passes 0 x inf back, NaN, also where a caller masks an infinite loss). Elsewhere the gradient
    is :math:`\log y` to ``x`` (also at :math:`x = 0`) and :math:`x / y` to ``y``."""
    zero = y == 0
    terms = x * torch.log(torch.where(zero, 1.0, y))  # 0 log 1 = 0 where x = y = 0
    return torch.where(zero & (x != 0), -math.inf, terms)


def _xlog1p(x, u):
    r""":math:`x \log(1 + u)` as :func:`_xlogy` (constant where :math:`u = -1`)."""
    zero = u == -1
    terms = x * torch.log1p(torch.where(zero, 0.0, u))
    return torch.where(zero & (x != 0), -math.inf, terms)


def _power(base, gamma):
    r""":math:`b^\gamma` (:math:`b \ge 0`, :math:`\gamma > 0`) with gradient 0 at :math:`b = 0`, where
    :math:`\gamma b^{\gamma - 1}` is 0 x inf (:math:`\gamma < 1`) or multiplies a 0 x inf."""
    zero = base == 0
    return torch.where(zero, 0.0, torch.where(zero, 1.0, base) ** gamma)


def _scaled(x, term):
    """``x * term`` for ``x >= 0``, and ``term`` where it is infinite (``x`` > 0 there, or an
    underflow of a positive number); the product is of a masked term (no 0 x inf to ``x``)."""
    infinite = torch.isinf(term)
    return torch.where(infinite, term, x * torch.where(infinite, 0.0, term))


def _frozen(x, ce):
    """``x`` without gradient where ``ce`` is infinite (see :func:`xentlib._neutral.binary_focal`)."""
    return torch.where(torch.isinf(ce), x.detach(), x)


def _times(weight, nll):
    """``weight * nll`` with ``0 * inf = 0``: a term of weight 0 adds nothing (and passes no NaN).
    Only that product is masked: a weight 0 of a finite term takes its gradient, the term."""
    unused = (weight == 0) & torch.isinf(nll)
    return torch.where(unused, 0.0, weight * torch.where(unused, 0.0, nll))


def _host_readable(x):
    """A CPU tensor whose values may be read back (not inside ``torch.func``'s grad or vmap):
    the fast paths then settle a rare case with one host read instead of one more pass."""
    return x.device.type == "cpu" and not torch._C._functorch.is_functorch_wrapped_tensor(x)


def _sum(x, dim=None):
    """The sum of ``x`` (over ``dim``, or all of it). A float32 sum that overflows where the
    float64 one does not (losses near float32's max) is redone in float64. On the CPU the
    float32 sum (torch's cascade summation) is kept otherwise: a float64 sum of float32 items
    costs ~50x; elsewhere (a GPU, ``torch.func``) the float64 sum is taken at once."""
    over = {} if dim is None else {"dim": dim}
    if x.dtype != torch.float32:
        return x.sum(**over)
    if _host_readable(x):
        total = x.sum(**over)
        if math.isfinite(total.item()) if dim is None else bool(torch.isfinite(total).all()):
            return total
    return x.sum(**over, dtype=torch.float64)


def _spread_overflows(z, terms):
    """Whether float32 logits ``z`` give non-finite ``terms`` (sums of log-probabilities) only
    because their spread passes float32's maximum: a log-probability of -inf where the loss
    may be finite (smoothing gives that class eps/K). The caller redoes them in float64. Read
    on the host, so only on the CPU outside ``torch.func`` (under it see
    :func:`_finite_where_possible`); on a GPU such a loss stays inf."""
    return z.dtype == torch.float32 and _host_readable(z) and not math.isfinite(terms.sum().item())


def _halved_rows(t, z):
    r""":math:`\sum_c t_c (\operatorname{lse}(z) - z_c)` (classes last) for logits near their
    dtype's maximum, every term halved: :math:`m/2 - z_c/2` cannot overflow where :math:`z_c - m` does (see
    the NumPy reference)."""
    half_gap = z.amax(dim=-1, keepdim=True) / 2 - z / 2
    log_s = torch.exp(-2 * half_gap).sum(dim=-1).log()
    return 2 * ((t * half_gap).sum(dim=-1) + t.sum(dim=-1) * (log_s / 2))


def _finite_where_possible(rows, t, z):
    """``rows`` of logits ``z`` with those that overflowed redone by :func:`_halved_rows`
    (``t()``: the targets, classes last). On the CPU, float64 rows after one host read (float32
    ones were redone in float64 before: :func:`_spread_overflows`). Under ``torch.func`` (vmap,
    grad), where no value can be read back, every row is also computed halved and the finite
    one kept (also for a NaN row: a weight 0 times -log 0 in a matmul): one more pass over the
    logits, there only. On a GPU such a row stays inf."""
    if _host_readable(z):
        if z.dtype != torch.float64 or math.isfinite(rows.sum().item()):
            return rows
    elif not torch._C._functorch.is_functorch_wrapped_tensor(z):
        return rows
    return torch.where(torch.isfinite(rows), rows, _halved_rows(t().to(z.dtype), z))  # NaN: 0 x -log 0


def _reduce(per_item, reduction, denominator=None):
    if reduction == "none":
        return per_item
    total = _sum(per_item)
    if reduction == "sum":
        return total.to(per_item.dtype)
    if total.dtype == torch.float64 and _host_readable(per_item) and math.isinf(total.item()):
        # float64 items near its maximum: their sum overflows, their mean need not
        count = per_item.numel() if denominator is None else float(denominator)
        if not count:  # a mean over no kept weight is 0, even of inf items (of weight 0)
            return _zero_of(per_item)
        return (per_item / count).sum().to(per_item.dtype)
    mean = _mean(total, per_item, denominator)
    if per_item.dtype == torch.float64 and torch._C._functorch.is_functorch_wrapped_tensor(per_item):
        # under torch.func no value can be read back: the mean of items / count is also taken,
        # and kept where the sum overflowed (one more pass over the items, there only)
        count = per_item.new_tensor(per_item.numel()) if denominator is None else denominator.to(per_item.dtype)
        kept = count != 0
        mean = torch.where(torch.isinf(total) & kept, (per_item / torch.where(kept, count, 1.0)).sum(), mean)
    return mean


def _zero_of(x):
    """A scalar 0 of ``x``'s dtype in ``x``'s graph: its backward gives ``x`` a zero gradient
    (a constant 0 would make ``backward`` fail)."""
    return torch.where(x.new_zeros((), dtype=torch.bool), x, 0.0).sum()


def _mean(total, per_item, denominator):
    """``total`` (the items' sum) over their count, or over ``denominator`` (0: the mean is 0)."""
    if denominator is None:
        count = per_item.numel()
        if not count:
            return _zero_of(per_item)
        if total.dtype == torch.float32 and count <= 2 ** 24:
            # float32 / an exact count rounds once: equal to the float64 quotient rounded
            return total / count
        return (total.double() / count).to(per_item.dtype)
    total = total.double() if total.dtype == torch.float32 else total  # divided once, in float64
    empty = denominator == 0  # stays on the device: no host read
    mean = torch.where(empty, 0.0, total / torch.where(empty, 1.0, denominator.to(total.dtype)))
    return mean.to(per_item.dtype)


def _smoothed(y, epsilon, axis):
    """Label smoothing in the compute dtype (16-bit targets are smoothed in float32). With
    ``epsilon`` 1 the targets are uniform, and their gradient to ``y`` is 0 (``0 * y`` would pass
    0 x inf = NaN from a class whose -log q is inf)."""
    y = _compute(y)
    if epsilon == 1:
        return torch.where(torch.zeros_like(y, dtype=torch.bool), y, 1 / y.shape[axis])
    return (1 - epsilon) * y + epsilon / y.shape[axis] if epsilon else y


# ---- building blocks -----------------------------------------------------------

@shared
def logsumexp(x, *, axis=-1, keepdims=False):
    """
    ``torch.logsumexp`` (the same formula); 16-bit inputs are computed in
    float32 and returned in their dtype.
    """
    x, axis = _fd.one_array(x, axis=axis)
    V.check_bool("keepdims", keepdims)
    return torch.logsumexp(_compute(x), dim=axis, keepdim=keepdims).to(x.dtype)


@shared
def softmax(x, *, axis=-1):
    """
    ``torch.softmax``, which computes :math:`e^{z_i - m} / \\sum_j e^{z_j - m}`.
    """
    x, axis = _fd.one_array(x, axis=axis, softmax=True)
    return torch.softmax(_compute(x), dim=axis).to(x.dtype)


@shared
def log_softmax(x, *, axis=-1):
    """
    ``F.log_softmax``, which computes the second form.
    """
    x, axis = _fd.one_array(x, axis=axis, softmax=True)
    return F.log_softmax(_compute(x), dim=axis).to(x.dtype)


@shared
def sigmoid(x):
    x, _ = _fd.one_array(x)
    return torch.exp(F.logsigmoid(_compute(x))).to(x.dtype)


@shared
def log_sigmoid(x):
    """
    ``F.logsigmoid``.
    """
    x, _ = _fd.one_array(x)
    return F.logsigmoid(_compute(x)).to(x.dtype)


# ---- information theory -----------------------------------------------------------

@shared
def entropy(p, *, axis=-1, base=None):
    """
    The gradient at :math:`p_i = 0` is taken as 0 (the true one,
    :math:`-\\log p_i - 1`, is infinite there).
    """
    p, axis, divisor = _fd.distribution_args(p, axis, base)
    pc = _compute(p)
    return (-_xlogy(pc, pc).sum(dim=axis) / divisor).to(p.dtype)


@shared
def cross_entropy(p, q, *, axis=-1, base=None):
    """
    Terms with :math:`p_i = 0` pass no gradient to :math:`q_i` (no NaN, even at :math:`q_i = 0`).
    """
    p, q, axis, divisor = _fd.two_distributions(p, q, axis, base)
    return (-_xlogy(_compute(p), _compute(q)).sum(dim=axis) / divisor).to(p.dtype)


@shared
def kl_divergence(p, q, *, axis=-1, base=None):
    """
    PyTorch's ``F.kl_div`` takes log-q first and p second, and its ``'mean'``
    divides by the number of elements, which is not a KL divergence.
    """
    p, q, axis, divisor = _fd.two_distributions(p, q, axis, base)
    pc, qc = _compute(p), _compute(q)
    zero = pc == 0
    terms = torch.where(zero, 0.0, pc * (torch.log(torch.where(zero, 1.0, pc))
                                         - torch.log(torch.where(zero, 1.0, qc))))
    return (terms.sum(dim=axis) / divisor).to(p.dtype)


@shared
def joint_entropy(p_xy, *, base=None):
    p_xy, divisor = _fd.joint(p_xy, base)
    pc = _compute(p_xy)
    return (-_xlogy(pc, pc).sum(dim=(-2, -1)) / divisor).to(p_xy.dtype)


@shared
def conditional_entropy(p_xy, *, base=None):
    p_xy, divisor = _fd.joint(p_xy, base)
    pc = _compute(p_xy)
    p_x = pc.sum(dim=-1, keepdim=True)
    h = -_xlogy(pc, pc / torch.where(p_x == 0, 1.0, p_x)).sum(dim=(-2, -1))
    return (torch.clamp(h, min=0.0) / divisor).to(p_xy.dtype)


@shared
def mutual_information(p_xy, *, base=None):
    p_xy, divisor = _fd.joint(p_xy, base)
    pc = _compute(p_xy)
    product = pc.sum(dim=-1, keepdim=True) * pc.sum(dim=-2, keepdim=True)
    mi = _xlogy(pc, pc / torch.where(product == 0, 1.0, product)).sum(dim=(-2, -1))
    return (torch.clamp(mi, min=0.0) / divisor).to(p_xy.dtype)


# ---- label smoothing ------------------------------------------------------------------

@shared
def smooth_labels(y, epsilon, *, axis=-1):
    y, epsilon, axis = _fd.smoothing(y, epsilon, axis)
    return _smoothed(y, epsilon, axis).to(y.dtype)


# ---- fast paths from logits: one softmax, analytic gradients --------------------------------
#
# Each custom autograd function computes log-softmax once in forward (PyTorch's fused
# kernel), keeps it for backward and returns the gradient in closed form,
# (softmax(z) - smoothed target) * weight / denominator. When a graph of the backward is
# being built (create_graph=True, e.g. a gradient penalty), backward instead differentiates
# the plain formula, so higher-order gradients are exact. They also run under torch.func
# (grad, vmap: setup_context and a generated vmap rule).

def _needs_grad(z):
    return torch.is_grad_enabled() and z.requires_grad


def _apply(function, *args):
    """``function.apply(*args)``; outside torch.func through its ``forward(ctx, ...)`` twin
    (:func:`_with_ctx`), which autograd calls ~15 us faster per step than a ``setup_context``."""
    if torch._C._functorch.is_functorch_wrapped_tensor(args[0]):
        return function.apply(*args)
    return function.with_ctx.apply(*args)


def _with_ctx(function):
    """Give ``function`` (a Function with ``setup_context``) a ``with_ctx`` twin: the same
    forward, context and backward in the older ``forward(ctx, ...)`` form."""
    class WithCtx(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *inputs):
            output = function.forward(*inputs)
            function.setup_context(ctx, inputs, output)
            return output

        backward = function.backward

    function.with_ctx = WithCtx
    return function


#: Below 16 classes torch's fused (log-)softmax takes a slow path on the CPU (4096 x 10
#: logits: 0.6 ms, against 0.1 ms for the shift-exp-sum form of :func:`_log_softmax`).
_FUSED_MIN_CLASSES = 16


def _few_classes(z):
    return z.shape[-1] < _FUSED_MIN_CLASSES


def _log_softmax(z):
    """log-softmax along the last axis: torch's fused kernel, or shift-exp-sum for few classes."""
    if not _few_classes(z):
        return F.log_softmax(z, dim=-1)
    shifted = z - z.amax(dim=-1, keepdim=True).detach()  # the result does not depend on the shift
    return shifted - shifted.exp().sum(dim=-1, keepdim=True).log()


def _softmax(z, log_q):
    """softmax along the last axis as a new tensor (the backward passes write into it): from
    the saved ``log_q`` for few classes, else recomputed (faster than exp(log_q), and log_q
    need not be kept from forward to backward)."""
    return torch.exp(log_q) if _few_classes(z) else torch.softmax(z, dim=-1)


def _upstream(g, reduction, like, denominator):
    """Per-item factor of the upstream gradient for each reduction; ``denominator`` a tensor
    (a summed weight, 0 for no kept item) or an item count."""
    if reduction == "none":
        return g
    if reduction == "mean" and isinstance(denominator, int):
        g = g / denominator if denominator else g
    elif reduction == "mean":
        empty = denominator == 0
        g = torch.where(empty, 0.0, g / torch.where(empty, 1.0, denominator))
    return g.expand(like.shape)


def _differentiable_grad(forward, z, args, g):
    """d(forward(z, *args))/dz . g, itself differentiable: for create_graph=True."""
    with torch.enable_grad():
        out = forward(z, *args)[0]
        return torch.autograd.grad(out, z, g, create_graph=True)[0]


def _sparse_forward(z, safe, kept, weight, eps, reduction):
    log_q = _log_softmax(z)
    w_y = kept.to(z.dtype) if weight is None else torch.where(kept, weight[safe.squeeze(-1)], 0.0)
    log_q_y = log_q.gather(-1, safe).squeeze(-1)
    if weight is None:  # eps = 1 at an nll of inf (float64 logits near the max): 0, not 0 x inf
        per_item = _times((1 - eps) * w_y, -log_q_y)
    else:
        per_item = _times((1 - eps) * _wide(w_y), -_wide(log_q_y))  # weight 0 at an nll of inf: 0
    denominator = w_y.sum()
    if eps > 0:  # -sum_c w_c log q_c / C
        w_log_q = _sum(log_q, dim=-1) if weight is None else torch.matmul(_wide(log_q), _wide(weight))
        if _spread_overflows(z, w_log_q):
            wide = _sparse_forward(z.double(), safe, kept, weight if weight is None else weight.double(),
                                   eps, reduction)[0]
            return wide.to(z.dtype), log_q, w_y, denominator
        per_item = per_item - (eps / z.shape[-1]) * torch.where(kept, w_log_q, 0.0)
    per_item = torch.where(kept, per_item, 0.0)

    def targets():  # t_c = eps w_c / K + (1 - eps) w_y [c = y], 0 for ignored items
        t = (eps / z.shape[-1]) * (torch.ones_like(z) if weight is None else weight.expand_as(z))
        t = t.scatter_add(-1, safe, ((1 - eps) * w_y).unsqueeze(-1).to(t.dtype))
        return torch.where(kept.unsqueeze(-1), t, 0.0)

    per_item = _finite_where_possible(per_item, targets, z)
    return _reduce(per_item, reduction, denominator).to(z.dtype), log_q, w_y, denominator


@_with_ctx
class _SparseCEFromLogits(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(z, safe, kept, weight, eps, reduction):
        out, log_q, w_y, denominator = _sparse_forward(z, safe, kept, weight, eps, reduction)
        return out, log_q, w_y, denominator

    @staticmethod
    def setup_context(ctx, inputs, output):
        z, safe, kept, weight, eps, reduction = inputs
        _, log_q, w_y, denominator = output
        ctx.save_for_backward(z, log_q if _few_classes(z) else None, safe, kept, w_y, weight,
                              denominator)
        ctx.eps, ctx.reduction = eps, reduction
        ctx.mark_non_differentiable(log_q, w_y, denominator)

    @staticmethod
    def backward(ctx, g, *_):
        z, log_q, safe, kept, w_y, weight, denominator = ctx.saved_tensors
        eps, num_classes = ctx.eps, z.shape[-1]
        if torch.is_grad_enabled():
            args = (safe, kept, weight, eps, ctx.reduction)
            return _differentiable_grad(_sparse_forward, z, args, g), None, None, None, None, None
        g = _upstream(g, ctx.reduction, kept, denominator)
        target_coef = (1 - eps) * w_y * g  # 0 for ignored items
        row = target_coef
        if eps > 0:
            uniform_g = torch.where(kept, g, 0.0) * (eps / num_classes)
            row = target_coef + uniform_g * (num_classes if weight is None else weight.sum())
        grad = _softmax(z, log_q).mul_(row.unsqueeze(-1))  # in place: no second (N, C) buffer
        if eps > 0 and weight is None:
            grad.sub_(uniform_g.unsqueeze(-1))
        elif eps > 0:
            grad.addcmul_(uniform_g.unsqueeze(-1), weight, value=-1)
        grad.scatter_add_(-1, safe, -target_coef.unsqueeze(-1))
        return grad, None, None, None, None, None


def _categorical_forward(z, t, reduction):
    log_q = _log_softmax(z)
    per_row = None
    if _host_readable(z):  # a row dot product; NaN only from 0 * log 0 (or a NaN input)
        per_row = -torch.linalg.vecdot(t, log_q)
        if _spread_overflows(z, per_row):  # also 0 log 0: the float64 pass takes the path below
            per_row = _categorical_forward(z.double(), t.double(), "none")[0].to(z.dtype)
        elif z.dtype != torch.float32 and bool(torch.isnan(per_row).any()):
            per_row = None
    if per_row is None:  # 0 log 0 = 0, also where log q underflows to -inf
        per_row = -torch.where(t == 0, 0.0, t * log_q).sum(dim=-1)
    per_row = _finite_where_possible(per_row, lambda: t, z)
    return _reduce(per_row, reduction), log_q


@_with_ctx
class _CategoricalCEFromLogits(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(z, t, reduction):
        return _categorical_forward(z, t, reduction)

    @staticmethod
    def setup_context(ctx, inputs, output):
        z, t, reduction = inputs
        ctx.save_for_backward(z, output[1] if _few_classes(z) else None, t)
        ctx.reduction = reduction
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx, g, _):
        z, log_q, t = ctx.saved_tensors
        if torch.is_grad_enabled():
            return _differentiable_grad(_categorical_forward, z, (t, ctx.reduction), g), None, None
        total_t = t.sum(dim=-1)
        g = _upstream(g, ctx.reduction, total_t, total_t.numel()).unsqueeze(-1)
        grad = _softmax(z, log_q).mul_(total_t.unsqueeze(-1) * g)  # (sum_c t_c) softmax - t
        return grad.addcmul_(t, g, value=-1), None, None


def _binary_forward(z, y, w_pos, reduction):
    # max(z, 0) - z y + log(1 + e^{-|z|}) (F's formula): no cancellation at large |z|
    per_elem = F.binary_cross_entropy_with_logits(z, y, pos_weight=w_pos, reduction="none")
    if w_pos is not None and not (_host_readable(z) and math.isfinite(per_elem.sum().item())):
        # with a weight F's (1 - y) z + (1 + (w - 1) y) softplus(-z) may overflow where the element
        # does not (on the CPU only after a host read finds a non-finite sum)
        per_elem = _weighted_binary_terms(z, y, w_pos)
    return (_reduce(per_elem, reduction),)


def _weighted_binary_terms(z, y, w_pos, eps=0.0):
    r""":math:`-w \tilde y \log\sigma(z) - (1 - \tilde y) \log\sigma(-z)` with
    :math:`\tilde y = (1 - \varepsilon) y + \varepsilon/2`: two terms >= 0, finite wherever the
    element is. The smoothing is expanded so that the gradient to ``y`` is the product of one
    term's upstream gradient and one coefficient, :math:`w (1 - \varepsilon)`: finite wherever
    it is (F's form gives :math:`-z + (w - 1)\operatorname{softplus}(-z)`, and smoothing ``y``
    first multiplies by :math:`w` before :math:`1 - \varepsilon`, either of which may overflow)."""
    positive = (w_pos * (1 - eps)) * y + w_pos * (eps / 2)
    negative = _neutral.smoothed_binary(1 - y, eps)
    return -positive * F.logsigmoid(z) - negative * F.logsigmoid(-z)


@_with_ctx
class _BinaryCEFromLogits(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(z, y, w_pos, reduction):
        return _binary_forward(z, y, w_pos, reduction)[0]

    @staticmethod
    def setup_context(ctx, inputs, output):
        z, y, w_pos, reduction = inputs
        ctx.save_for_backward(z, y, w_pos)
        ctx.reduction = reduction

    @staticmethod
    def backward(ctx, g):
        z, y, w_pos = ctx.saved_tensors
        if torch.is_grad_enabled():
            return _differentiable_grad(_binary_forward, z, (y, w_pos, ctx.reduction), g), None, None, None
        if ctx.reduction == "mean" and z.numel():
            g = g / z.numel()  # a scalar, broadcast by the products below
        grad = torch.sigmoid(z)  # d/dz = sigma(z) (w y + 1 - y) - w y, in place
        if w_pos is None:
            grad.sub_(y)
        else:
            wy = w_pos * y
            grad.mul_(wy + (1 - y)).sub_(wy)
        return grad.mul_(g), None, None, None


# ---- losses -------------------------------------------------------------------------

@shared
def categorical_cross_entropy(y_true, y_pred, *, from_logits=False, label_smoothing=0.0,
                              axis=-1, reduction="mean"):
    """
    With logits it equals ``F.cross_entropy`` with probability targets (class
    axis 1 there, ``axis`` here), and the gradient is analytic (a custom
    autograd function: softmax computed once, :math:`\\operatorname{softmax}(z) - \\tilde y`
    per row).
    """
    y_true, y_pred, label_smoothing, axis = _fd.categorical(
        y_true, y_pred, from_logits, label_smoothing, axis, reduction)
    # one dtype, as NumPy promotes (float32 targets with float64 logits: float64)
    target, z = _fd.ops.promote(_smoothed(y_true, label_smoothing, axis), _compute(y_pred))
    if from_logits and not target.requires_grad:
        args = (torch.movedim(z, axis, -1), torch.movedim(target, axis, -1), reduction)
        out = _apply(_CategoricalCEFromLogits, *args)[0] if _needs_grad(z) else _categorical_forward(*args)[0]
        return out.to(_loss_dtype(y_pred))
    if from_logits:  # differentiable targets: autograd, d/d target = -log q
        log_q = F.log_softmax(z, dim=axis)
        if _spread_overflows(z, log_q):  # a float32 log q of -inf where float64's is finite
            z, target = z.double(), target.double()
            log_q = F.log_softmax(z, dim=axis)
        per_row = -_times(target, log_q).sum(dim=axis)
    else:
        per_row = -_xlogy(target, z).sum(dim=axis)
    return _reduce(per_row, reduction).to(_loss_dtype(y_pred))


@shared
def sparse_categorical_cross_entropy(labels, y_pred, *, from_logits=False, label_smoothing=0.0,
                                     ignore_index=None, class_weight=None, axis=-1,
                                     reduction="mean"):
    """
    ``axis=1`` reproduces PyTorch's layout. With probabilities it is
    ``F.nll_loss(y_pred.log(), y)``. From logits the gradient is analytic (a
    custom autograd function: softmax computed once,
    :math:`(\\operatorname{softmax}(z) - \\tilde y)\\,w / \\text{denominator}`).
    """
    args = _fd.sparse(labels, y_pred, from_logits, label_smoothing, ignore_index, class_weight,
                      axis, reduction)
    return _sparse(*args, from_logits, reduction)


def _sparse(labels, y_pred, label_smoothing, ignore_index, weight, axis, num_classes,
            from_logits, reduction):
    z = torch.movedim(_compute(y_pred), axis, -1)
    if weight is not None:
        weight = weight.to(dtype=z.dtype)
    kept = torch.ones_like(labels, dtype=torch.bool) if ignore_index is None else labels != ignore_index
    safe = torch.where(kept, labels, 0).long().unsqueeze(-1)
    if from_logits and (weight is None or not weight.requires_grad):
        args = (z, safe, kept, weight, label_smoothing, reduction)
        out = _apply(_SparseCEFromLogits, *args)[0] if _needs_grad(z) else _sparse_forward(*args)[0]
        return out.to(_loss_dtype(y_pred))
    w_y = torch.ones(labels.shape, dtype=z.dtype, device=z.device) if weight is None else weight[safe.squeeze(-1)]
    w_y = torch.where(kept, w_y, 0.0)
    if from_logits:
        log_q = F.log_softmax(z, dim=-1)  # what F.cross_entropy does
        nll = -torch.gather(log_q, -1, safe).squeeze(-1)
    else:  # logs only where they count: no 0 * inf, and no NaN gradient from a log at 0
        picked = torch.gather(z, -1, safe).squeeze(-1)
        nll = -torch.log(torch.where(w_y != 0, picked, 1.0))
    if weight is not None:
        nll, w_y = _wide(nll), _wide(w_y)
    per_item = _times((1 - label_smoothing) * w_y, nll)
    if label_smoothing > 0:
        if not from_logits:  # an ignored item, or a class of weight 0, adds nothing, even at probability 0
            unused = ~kept.unsqueeze(-1) if weight is None else ~kept.unsqueeze(-1) | (weight == 0)
            log_q = torch.log(torch.where(unused, 1.0, z))
        w_log_q = log_q if weight is None else -_times(_wide(weight), -_wide(log_q))
        uniform = -w_log_q.sum(dim=-1) / num_classes
        per_item = per_item + label_smoothing * torch.where(kept, uniform, 0.0)
    per_item = torch.where(kept, per_item, 0.0)
    return _reduce(per_item, reduction, denominator=w_y.sum()).to(_loss_dtype(y_pred))


@shared
def binary_cross_entropy(y_true, y_pred, *, from_logits=False, label_smoothing=0.0,
                         pos_weight=None, reduction="mean"):
    """
    ``pos_weight`` is ``F.binary_cross_entropy_with_logits(pos_weight=...)``'s.
    Unlike ``F.binary_cross_entropy``, which clamps each log at -100, a wrong
    certain prediction costs :math:`+\\infty`. From logits the gradient is
    analytic (a custom autograd function,
    :math:`\\sigma(z)(w_+ \\tilde y + 1 - \\tilde y) - w_+ \\tilde y`).
    """
    y_true, y_pred, label_smoothing, pos_weight = _fd.binary(
        y_true, y_pred, from_logits, label_smoothing, pos_weight, reduction)
    y_raw = _compute(y_true)
    y = _neutral.smoothed_binary(y_raw, label_smoothing) if label_smoothing else y_raw
    w_pos = None if pos_weight is None else _compute(pos_weight)
    z = _compute(y_pred)
    if from_logits:
        y = y.to(z.dtype)
        w_pos = None if w_pos is None else w_pos.to(z.dtype)
        if not y.requires_grad and (w_pos is None or not w_pos.requires_grad):
            args = (z, y, w_pos, reduction)
            out = _apply(_BinaryCEFromLogits, *args) if _needs_grad(z) else _binary_forward(*args)[0]
        elif w_pos is None:
            out = _binary_forward(z, y, w_pos, reduction)[0]
        else:  # differentiable targets or weights: the form whose gradients stay finite
            terms = _weighted_binary_terms(z, y_raw.to(z.dtype), w_pos, label_smoothing)
            out = _reduce(terms, reduction)
        return out.to(_loss_dtype(y_pred))
    q = torch.clamp(z, 0, 1)  # 1 + 1e-16 from round-off: log(1 - q) stays real
    positive = _xlogy(y, q) if w_pos is None else _times(w_pos, _xlogy(y, q))  # 0 * -inf = 0
    not_y = _neutral.smoothed_binary(1 - y_raw, label_smoothing)  # not 1 - y: see there
    per_elem = -(positive + _xlogy(not_y, 1 - q))
    return _reduce(per_elem, reduction).to(_loss_dtype(y_pred))


@shared
def mean_squared_error(y_true, y_pred, *, reduction="mean"):
    """
    ``'none'`` keeps every element's squared error, as ``F.mse_loss`` does.
    """
    y_true, y_pred = _fd.regression(y_true, y_pred, reduction)
    return _reduce((_compute(y_true) - _compute(y_pred)) ** 2, reduction).to(_loss_dtype(y_pred))


@shared
def gaussian_nll(y_true, mean, variance=1.0, *, full=True, reduction="mean"):
    """
    Equals ``F.gaussian_nll_loss(mean, y, var, full=full)``, which clamps the
    variance at ``eps=1e-6``; here it must be positive.
    """
    y_true, mean, variance = _fd.gaussian(y_true, mean, variance, full, reduction)
    var = _compute(variance)
    per_elem = (_neutral.squared_error_over_twice_variance(_compute(y_true), _compute(mean), torch.sqrt(var))
                + 0.5 * torch.log(var))
    if full:
        per_elem = per_elem + 0.5 * math.log(2 * math.pi)
    per_elem = torch.broadcast_to(per_elem, y_true.shape)
    return _reduce(per_elem, reduction).to(_loss_dtype(mean))


@shared
def perplexity(labels, logits, *, ignore_index=None, axis=-1):
    return torch.exp(_sparse(*_fd.perplexity(labels, logits, ignore_index, axis), True, "mean"))


@shared
def softmax_cross_entropy_grad(y_true, logits, *, axis=-1):
    """
    What autograd gives for ``reduction='sum'``.
    """
    y_true, logits, axis = _fd.gradient(y_true, logits, axis)
    return (torch.softmax(_compute(logits), dim=axis) - _compute(y_true)).to(logits.dtype)


@shared
def sigmoid_cross_entropy_grad(y_true, logits):
    y_true, logits, _ = _fd.gradient(y_true, logits)
    return (torch.sigmoid(_compute(logits)) - _compute(y_true)).to(logits.dtype)


# ---- focal losses ---------------------------------------------------------------------

class _Math:
    """torch's math for the formulas written once in :mod:`xentlib._neutral`."""
    exp, log, log1p, sigmoid, tanh, abs, sign = (torch.exp, torch.log, torch.log1p, torch.sigmoid,
                                                 torch.tanh, torch.abs, torch.sign)
    isinf, logaddexp, log_sigmoid = torch.isinf, torch.logaddexp, F.logsigmoid
    where = staticmethod(torch.where)

    @staticmethod
    def softplus(x):  # F.softplus returns x beyond 20: 1e-10 off in float64
        return -F.logsigmoid(-x)

    @staticmethod
    def minimum(x, c):
        return torch.clamp(x, max=c)

    @staticmethod
    def maximum(x, c):
        return torch.clamp(x, min=c)

    @staticmethod
    def softmax(z):
        return torch.softmax(z, dim=-1)

    @staticmethod
    def sum_last(x):
        return x.sum(dim=-1, keepdim=True)


def _others_log_sum_exp(z):
    r""":math:`\log\sum_{j \ne c} e^{z_j}` per class (classes last): prefix and suffix log-sum-exps.
    Of logits shifted by their maximum: near 1e38 unshifted, :math:`+\log 2` is lost to rounding."""
    pad = torch.full(z.shape[:-1] + (1,), -math.inf, dtype=z.dtype, device=z.device)
    before = torch.cat([pad, torch.logcumsumexp(z, dim=-1)[..., :-1]], dim=-1)
    after = torch.cat([torch.logcumsumexp(z.flip(-1), dim=-1).flip(-1)[..., 1:], pad], dim=-1)
    return torch.logaddexp(before, after)


def _binary_focal_terms(z, y, gamma):
    r""":math:`(1 - p_t)^\gamma\,\mathrm{ce}` per element from logits (the value)."""
    log_p, log_not_p, not_y = F.logsigmoid(z), F.logsigmoid(-z), 1 - y
    ce = -(_times(y, log_p) + _times(not_y, log_not_p))
    if not gamma:
        return ce
    miss = torch.exp(gamma * torch.logaddexp(torch.log(y) + log_not_p, torch.log1p(-y) + log_p))
    return _scaled(miss, ce)


def _focal_function(terms, gradients, doc):
    """An autograd Function of ``(logits, targets, gamma)``: the value ``terms(z, t, gamma)``,
    the gradients ``gradients(z, t, gamma, g, target_grad)`` (``target_grad``: whether the
    targets need theirs; in torch operations: differentiable again, for higher-order gradients)."""
    @_with_ctx
    class FocalFromLogits(torch.autograd.Function):
        __doc__ = doc
        generate_vmap_rule = True

        @staticmethod
        def forward(z, t, gamma):
            return terms(z, t, gamma)

        @staticmethod
        def setup_context(ctx, inputs, output):
            z, t, ctx.gamma = inputs
            ctx.save_for_backward(z, t)

        @staticmethod
        def backward(ctx, g):
            z, t = ctx.saved_tensors
            return (*gradients(z, t, ctx.gamma, g, ctx.needs_input_grad[1]), None)

    return FocalFromLogits


def _binary_focal_gradients(z, y, gamma, g, target_grad):
    return _neutral.binary_focal_logit_gradients(_Math, z, y, gamma, g, target_grad)


_BinaryFocalFromLogits = _focal_function(
    _binary_focal_terms, _binary_focal_gradients,
    ":func:`_binary_focal_terms`, gradients :func:`xentlib._neutral.binary_focal_logit_gradients`.")


def _categorical_focal_terms(z, t, gamma):
    r""":math:`t_c (1 - q_c)^\gamma (-\log q_c)` per class from logits (classes last; the value)."""
    terms = _times(t, -torch.log_softmax(z, dim=-1))
    if not gamma:
        return terms
    shifted = _shifted(z)
    miss = torch.exp(gamma * (_others_log_sum_exp(shifted) - torch.logsumexp(shifted, dim=-1, keepdim=True)))
    return _scaled(miss, terms)


def _shifted(z):
    """Logits minus their row's maximum (classes last): see :func:`_others_log_sum_exp`."""
    return z - z.amax(dim=-1, keepdim=True)


def _categorical_focal_gradients(z, t, gamma, g, target_grad):
    """Of logits shifted by their maximum (see :func:`_others_log_sum_exp`)."""
    shifted = _shifted(z)
    return _neutral.categorical_focal_logit_gradients(_Math, shifted, _others_log_sum_exp(shifted), t, gamma, g,
                                                      target_grad)


_CategoricalFocalFromLogits = _focal_function(
    _categorical_focal_terms, _categorical_focal_gradients,
    ":func:`_categorical_focal_terms`, gradients :func:`xentlib._neutral.categorical_focal_logit_gradients`.")


@shared
def binary_focal_cross_entropy(y_true, y_pred, *, gamma=2.0, alpha=None, from_logits=False,
                               label_smoothing=0.0, reduction="mean"):
    """
    Equals ``torchvision.ops.sigmoid_focal_loss(z, y, alpha, gamma)`` with the
    same ``alpha`` (torchvision's default is 0.25; ``alpha=None`` here is its
    ``alpha=-1``).
    """
    y_true, y_pred, label_smoothing, gamma, alpha = _fd.binary_focal(
        y_true, y_pred, gamma, alpha, from_logits, label_smoothing, reduction)
    z = _compute(y_pred)
    y0 = _compute(y_true).to(z.dtype)  # cast once: a 16-bit target's gradient is summed in z's dtype
    y = _neutral.smoothed_binary(y0, label_smoothing)
    miss = None
    if from_logits:  # the focal factor times the cross-entropy, gradients in log space
        y, z = torch.broadcast_tensors(y, z)
        ce, not_y = _apply(_BinaryFocalFromLogits, z, y, gamma), 1 - y
    else:  # the logs and the power of masked arguments: no 0 x inf in the gradient at q = 0 or 1
        q = torch.clamp(z, 0, 1)
        not_y = _neutral.smoothed_binary(1 - y0, label_smoothing)  # not 1 - y
        miss = _power(_neutral.binary_miss(y, not_y, q), gamma) if gamma else None
        ce = -(_xlogy(y, q) + _xlog1p(not_y, -q))
    per_elem = _neutral.binary_focal(_times, _scaled, _frozen, y, not_y, ce, miss, alpha)
    return _reduce(per_elem, reduction).to(_loss_dtype(y_pred))


@shared
def categorical_focal_cross_entropy(y_true, y_pred, *, gamma=2.0, alpha=None, from_logits=False,
                                    label_smoothing=0.0, axis=-1, reduction="mean"):
    y_true, y_pred, label_smoothing, axis, gamma, alpha = _fd.categorical_focal(
        y_true, y_pred, gamma, alpha, from_logits, label_smoothing, axis, reduction)
    z = _compute(y_pred)
    target = _smoothed(y_true, label_smoothing, axis).to(z.dtype)

    def rows(z, target):
        miss, weight = None, None if alpha is None else torch.as_tensor(alpha, dtype=z.dtype, device=z.device)
        if from_logits:  # the focal factor times the terms, gradients in log space
            target, z = torch.broadcast_tensors(target, z)
            terms = _apply(_CategoricalFocalFromLogits, z.movedim(axis, -1), target.movedim(axis, -1),
                           gamma).movedim(-1, axis)
        else:  # masked arguments, as in binary_focal_cross_entropy
            terms = -_xlogy(target, z)
            miss = _power(torch.clamp(1 - z, 0, 1), gamma) if gamma else None
        return _neutral.categorical_focal(_times, _scaled, _frozen, terms, miss, weight).sum(dim=axis)

    if from_logits and z.dtype == torch.float32:
        # in float64 where float32's spread or a row's sum passes the max (under torch.func, where
        # nothing can be read back, always: twice the work there)
        if torch._C._functorch.is_functorch_wrapped_tensor(z) or _spread_overflows(z, torch.log_softmax(z, dim=axis)):
            per_row = rows(z.double(), target.double())
        else:
            per_row = rows(z, target)
            if _spread_overflows(z, per_row):
                per_row = rows(z.double(), target.double())
    else:
        per_row = rows(z, target)
    return _reduce(per_row, reduction).to(_loss_dtype(y_pred))


# ---- calibration ----------------------------------------------------------------------

@shared
def expected_calibration_error(labels, probs, *, n_bins=10, binning="width", axis=-1):
    probs, count, gap = _fd.calibration(labels, probs, n_bins, binning, axis)
    return (gap.sum() / count.sum()).to(_loss_dtype(probs))


@shared
def maximum_calibration_error(labels, probs, *, n_bins=10, binning="width", axis=-1):
    probs, count, gap = _fd.calibration(labels, probs, n_bins, binning, axis)
    return torch.max(gap / count).to(_loss_dtype(probs))


@shared
def brier_score(labels, probs, *, axis=-1, reduction="mean"):
    labels, probs = _fd.scored(labels, probs, axis, reduction)
    p = _compute(probs)
    one_hot = F.one_hot(labels.long(), p.shape[-1]).to(p.dtype)
    return _reduce(((p - one_hot) ** 2).sum(dim=-1), reduction).to(_loss_dtype(probs))


@shared
def fit_temperature(logits, labels, *, axis=-1):
    """
    The one-dimensional search runs on the host, in the NumPy reference.
    """
    from xentlib import numpy as reference

    logits, labels, axis, like = _fd.temperature(logits, labels, axis)
    t = reference.fit_temperature(logits, labels, axis=axis)
    return torch.tensor(float(t), dtype=_loss_dtype(like), device=like.device)
