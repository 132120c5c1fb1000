r"""Linear cross-entropy for PyTorch: output projection and loss fused, in chunks of rows.

Design. With ``reduction='mean'`` or ``'sum'`` the loss is a scalar, so its
gradient with respect to every logit is known in the forward pass up to the one
scalar ``grad_output`` (the formula is in :mod:`xentlib._linear`). We therefore
compute, chunk by chunk, the logits, the loss and the gradients for ``hidden``,
``weight`` and ``bias`` in the forward pass (as Liger Kernel does) and only
scale them in the backward pass. That costs three matmuls, as the naive form
does, instead of four for recompute-in-backward, and the softmax is computed
once and reused in place for the gradient. The price is that the forward pass
does the gradient work even if ``backward`` is never called; when no input
requires a gradient (or under ``torch.no_grad()``) the gradient work is
skipped. With ``reduction='none'`` the upstream gradient differs per row and is
unknown in the forward pass, so the backward pass recomputes each chunk of
logits (one extra matmul).

Either way at most one ``(chunk_size, V)`` block of logits is alive (two with
``softcap``), plus the gradients, which have the size of the inputs. Every
buffer is created on ``hidden``'s device.

Higher-order gradients. The fused gradients are numbers, not a graph. When
backward is itself differentiated (``create_graph=True``) it recomputes the loss
through plain autograd ops and differentiates that; under torch.func transforms
(which cannot run this Function's forward-pass gradients) the loss is computed
that way from the start. Both keep every chunk's logits for autograd.
"""
from __future__ import annotations

import torch

from xentlib import _linear
from xentlib._torch_ops import front_door

__all__ = ["linear_cross_entropy"]


def linear_cross_entropy(hidden, weight, labels, **options):
    hidden, weight, labels, bias, class_weight, o = _linear.prepare(
        front_door, hidden, weight, labels, options)
    h = hidden.reshape(-1, o.dim)
    y = labels.reshape(-1).long()
    if torch._C._are_functorch_transforms_active():  # torch.func: no custom Function there
        loss, *extra = _differentiable(h, weight, bias, y, class_weight, o)
    else:
        want_grad = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (hidden, weight, bias))
        loss, *extra = _LinearCE.apply(h, weight, bias, y, class_weight, o, want_grad)
    if o.reduction == "none":
        loss = loss.reshape(labels.shape)
    if not o.extras:
        return loss
    return loss, {name: x.reshape(labels.shape) for name, x in zip(o.extras, extra)}


_linear.public(linear_cross_entropy, """
PyTorch: gradients for ``hidden``, ``weight`` and ``bias`` through autograd
(none for ``class_weight``), equal to those of ``F.cross_entropy`` on the
materialised logits. Higher-order gradients (``create_graph=True``, e.g. a
gradient penalty) and ``torch.func`` transforms (``grad``, ``vmap``, ``jvp``,
``hessian``) are exact, but they go through plain autograd ops, which keep every
chunk's logits: the memory of the naive form, not of the fused pass (under
``vmap`` the value checks that read values back are skipped). Lists and NumPy
arrays are accepted; every tensor is made on ``hidden``'s device.""", """
>>> import torch
>>> from xentlib import torch as xl
>>> g = torch.Generator().manual_seed(0)
>>> h = torch.randn(6, 4, generator=g, requires_grad=True)
>>> w = torch.randn(10, 4, generator=g)
>>> y = torch.tensor([1, 2, 3, 4, 5, 9])
>>> loss = xl.linear_cross_entropy(h, w, y, chunk_size=4)
>>> naive = torch.nn.functional.cross_entropy(h @ w.T, y)
>>> bool(torch.allclose(loss, naive))
True
""")


def _work_dtype(*tensors):
    return torch.float64 if any(t is not None and t.dtype == torch.float64
                                for t in tensors) else torch.float32


def _sweep(h, w, b, y, cw, o, row_scale, grads, extras=()):
    """One pass over the chunks: per-row losses, the ``extras`` and, if ``grads``, the gradients.

    ``row_scale`` (a float or a per-row tensor) multiplies each row's logit gradient.
    """
    work = _work_dtype(h, w, b)
    device, (n, vocab), eps = h.device, (h.shape[0], w.shape[0]), o.label_smoothing
    wk = w.to(work)
    bk = None if b is None else b.to(work)
    cw = None if cw is None else cw.to(work)
    w_mean = 1.0 if cw is None else cw.mean()
    kept = torch.ones(n, dtype=torch.bool, device=device) if o.ignore_index is None \
        else y != o.ignore_index
    per_item = torch.zeros(n, dtype=work, device=device)
    extra = {name: torch.zeros(n, dtype=torch.int64 if name == "argmax" else work, device=device)
             for name in extras}
    gh = torch.empty((n, h.shape[1]), dtype=work, device=device) if grads else None
    gw = torch.zeros_like(wk) if grads else None
    gb = torch.zeros(vocab, dtype=work, device=device) if grads and b is not None else None
    for start in range(0, n, o.rows):
        rows = slice(start, start + o.rows)
        hk = h[rows].to(work)
        z = hk @ wk.T if bk is None else torch.addmm(bk, hk, wk.T)
        if o.softcap is not None:
            tanh = z.div_(o.softcap).tanh_()
            z = tanh * o.softcap
        k = kept[rows]
        safe = torch.where(k, y[rows], 0)[:, None]
        if "argmax" in extra:
            extra["argmax"][rows] = z.argmax(dim=1)
        row_max = z.amax(dim=1)
        z.sub_(row_max[:, None])                          # shifted logits, in place
        z_y = z.gather(1, safe)[:, 0]
        w_z = None if eps == 0 else z.mean(dim=1) if cw is None else z @ cw / vocab
        z.exp_()                                          # exp(z - max), in place
        sum_exp = z.sum(dim=1)
        lse = sum_exp.log()                               # of the shifted logits
        w_y = k.to(work) if cw is None else torch.where(k, cw[safe[:, 0]], 0.0)
        loss = (1 - eps) * w_y * (lse - z_y)
        if w_z is not None:
            loss += eps * (w_mean * lse - w_z)
        full_lse = lse + row_max
        if o.z_loss:
            loss += o.z_loss * w_y * full_lse.square()
        per_item[rows] = torch.where(k, loss, 0.0)
        if "lse" in extra:
            extra["lse"][rows] = full_lse
        if "label_logprob" in extra:
            extra["label_logprob"][rows] = torch.where(k, z_y - lse, 0.0)
        if "entropy" in extra:                            # e log e = e (z - max), from e alone
            extra["entropy"][rows] = lse - torch.special.xlogy(z, z).sum(dim=1) / sum_exp
        if grads:
            s = row_scale[rows] if isinstance(row_scale, torch.Tensor) \
                else torch.full_like(sum_exp, float(row_scale))
            s = torch.where(k, s, 0.0)
            coef = (1 - eps) * w_y + eps * w_mean
            if o.z_loss:
                coef = coef + 2 * o.z_loss * w_y * full_lse
            z.mul_((s * coef / sum_exp)[:, None])         # softmax times its coefficient
            z.scatter_add_(1, safe, (-(1 - eps) * s * w_y)[:, None])
            if eps > 0 and cw is None:
                z.sub_((eps / vocab * s)[:, None])
            elif eps > 0:
                z.addr_(eps / vocab * s, cw, alpha=-1)
            if o.softcap is not None:                     # d(c tanh(u/c))/du = 1 - tanh^2
                z.mul_(tanh.square_().neg_().add_(1))
            torch.mm(z, wk, out=gh[rows])
            gw.addmm_(z.T, hk)
            if gb is not None:
                gb += z.sum(dim=0)
        del z  # free this chunk before the next one is allocated
    return per_item, [extra[name] for name in extras], (gh, gw, gb)


def _denominator(kept, y, cw):
    """What 'mean' divides by: the number of kept items, or the sum of their class weights."""
    weights = kept if cw is None else torch.where(kept, cw[torch.where(kept, y, 0)], 0.0)
    return float(weights.sum(dtype=torch.float64))


def _differentiable(h, w, b, y, cw, o):
    """The loss and the ``extras`` through plain autograd ops, chunk by chunk: exact gradients
    of every order, and it runs under torch.func; autograd keeps each chunk's logits for the
    backward pass, so the memory is the naive form's."""
    work, eps, vocab = _work_dtype(h, w, b), o.label_smoothing, w.shape[0]
    wk = w.to(work)
    bk = None if b is None else b.to(work)
    cw = None if cw is None else cw.to(work)
    kept = torch.ones_like(y, dtype=torch.bool) if o.ignore_index is None else y != o.ignore_index
    safe = torch.where(kept, y, 0)
    w_y = kept.to(work) if cw is None else torch.where(kept, cw[safe], 0.0)
    losses, extras = [], {name: [] for name in o.extras}
    for start in range(0, max(h.shape[0], 1), o.rows):  # one empty chunk for no rows
        rows = slice(start, start + o.rows)
        z = h[rows].to(work) @ wk.T
        if bk is not None:
            z = z + bk
        if o.softcap is not None:
            z = o.softcap * torch.tanh(z / o.softcap)
        # shifted by the row's maximum (a constant: every derivative is the same): z - lse of
        # logits near 500 loses 3e-5 in float32, and so softmax, the gradient, 2e-4 with a z-loss
        row_max = z.detach().amax(dim=1, keepdim=True) if z.shape[1] else torch.zeros_like(z[:, :1])
        shifted_lse = torch.logsumexp(z - row_max, dim=1)
        lse = shifted_lse + row_max[:, 0]
        log_p = (z - row_max) - shifted_lse[:, None]
        log_p_y = log_p.gather(1, safe[rows, None])[:, 0]
        loss = -(1 - eps) * w_y[rows] * log_p_y
        if eps > 0:
            loss = loss - eps / vocab * (log_p.sum(dim=1) if cw is None else log_p @ cw)
        if o.z_loss:
            loss = loss + o.z_loss * w_y[rows] * lse.square()
        losses.append(torch.where(kept[rows], loss, 0.0))
        for name in o.extras:
            extras[name].append(_extra(name, log_p.detach(), lse.detach(), log_p_y.detach(),
                                       kept[rows]))
    per_item = torch.cat(losses)
    extras = [torch.cat(extras[name]) for name in o.extras]
    if o.reduction == "none":
        return (per_item, *extras)
    total = per_item.sum(dtype=torch.float64)
    if o.reduction == "mean":
        denominator = w_y.sum(dtype=torch.float64)
        empty = denominator == 0
        total = torch.where(empty, 0.0, total / torch.where(empty, 1.0, denominator))
    return (total.to(work), *extras)


def _extra(name, log_p, lse, log_p_y, kept):
    """One of :data:`xentlib._linear.EXTRAS` for a chunk, from its log-softmax."""
    if name == "lse":
        return lse
    if name == "argmax":
        return log_p.argmax(dim=1)
    if name == "label_logprob":
        return torch.where(kept, log_p_y, 0.0)
    return -(log_p.exp() * log_p).sum(dim=1)  # entropy


class _LinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, w, b, y, cw, o, want_grad):
        fused = want_grad and o.reduction != "none"
        kept = torch.ones_like(y, dtype=torch.bool) if o.ignore_index is None \
            else y != o.ignore_index
        denominator = _denominator(kept, y, cw) if o.reduction == "mean" else 1.0
        scale = 1.0 / denominator if denominator else 0.0
        per_item, extra, grads = _sweep(h, w, b, y, cw, o, scale, fused, o.extras)
        if o.reduction == "none":
            loss = per_item
        else:
            loss = (per_item.sum(dtype=torch.float64) * scale).to(per_item.dtype)
        ctx.o, ctx.dtypes = o, (h.dtype, w.dtype, None if b is None else b.dtype)
        if want_grad:  # the inputs also for create_graph=True (references, no copies)
            ctx.save_for_backward(h, w, b, y, cw, *(grads if fused else ()))
        ctx.mark_non_differentiable(*extra)
        return (loss, *extra)

    @staticmethod
    def backward(ctx, grad_out, *_):
        h, w, b, y, cw, *fused = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: gradients with a graph of their own
            return _gradient_graph(ctx.needs_input_grad[:3], grad_out, h, w, b, y, cw,
                                   ctx.o._replace(extras=())) + (None,) * 4
        if ctx.o.reduction == "none":
            scale = grad_out.to(_work_dtype(h, w, b))
            _, _, (gh, gw, gb) = _sweep(h, w, b, y, cw, ctx.o, scale, True)
        else:
            gh, gw, gb = fused
            if not bool(grad_out == 1):  # usual case 1: hand back the buffers, no copies
                g = grad_out.to(gh.dtype)
                gh, gw = gh * g, gw * g
                gb = None if gb is None else gb * g
        hd, wd, bd = ctx.dtypes
        return (gh.to(hd), gw.to(wd), None if gb is None else gb.to(bd),
                None, None, None, None)


def _gradient_graph(needed, grad_out, h, w, b, y, cw, o):
    """The gradients for the ``needed`` ones of ``(h, w, b)``, differentiable in turn: those
    of :func:`_differentiable`, recomputed."""
    inputs = [t for t, need in zip((h, w, b), needed) if need]
    with torch.enable_grad():
        (loss,) = _differentiable(h, w, b, y, cw, o)
        grads = iter(torch.autograd.grad(loss, inputs, grad_out, create_graph=True))
    return tuple(next(grads) if need else None for need in needed)
