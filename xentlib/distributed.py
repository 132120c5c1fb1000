r"""Vocabulary-parallel cross-entropy for PyTorch (``torch.distributed``), Megatron-LM style.

With a vocabulary of V classes split over R ranks, rank r holds the logits of its
own classes only, ``logits[..., start_r : start_r + V_r]`` (the shards are
contiguous and in rank order; their sizes may differ). This is what a
column-parallel output layer produces: each rank multiplies the hidden states by
its own shard of the output weight, so the full ``(N, V)`` logits never exist on
any rank. The softmax needs three numbers per row that span the whole
vocabulary: the maximum, the sum of exponentials and the target logit (plus, for
label smoothing, the sum of all logits). Each rank computes them on its shard and
two ``all_reduce`` calls (one MAX, one SUM of the stacked partial sums) combine
them. The backward pass needs no communication: the gradient on rank r is its
slice of :math:`\operatorname{softmax}(z) - t`.
"""
from __future__ import annotations

import struct

import torch
import torch.distributed as dist

from xentlib import _validate as V
from xentlib._torch_ops import front_door

__all__ = ["vocab_parallel_cross_entropy", "vocab_shard"]


def vocab_shard(vocab_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(start, stop)`` of rank ``rank``'s classes when ``vocab_size`` is split evenly.

    The first ``vocab_size % world_size`` ranks get one class more.

    >>> [vocab_shard(10, r, 4) for r in range(4)]
    [(0, 3), (3, 6), (6, 8), (8, 10)]
    """
    base, extra = divmod(vocab_size, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def vocab_parallel_cross_entropy(logits_shard, labels, *, group=None, ignore_index=None,
                                 label_smoothing=0.0, reduction="mean"):
    r"""Sparse cross-entropy whose logits are split over ranks along the vocabulary.

    .. math:: \operatorname{lse}(z_n) = m_n + \log \sum_{r} \sum_{c \in \text{shard}_r}
              e^{z_{n,c} - m_n}, \quad m_n = \max_r \max_{c \in \text{shard}_r} z_{n,c},
              \qquad \ell_n = (1-\varepsilon)\big(\operatorname{lse}(z_n) - z_{n,y_n}\big)
              + \frac{\varepsilon}{V}\sum_{c}\big(\operatorname{lse}(z_n) - z_{n,c}\big)

    ``logits_shard`` is this rank's ``(..., V_r)`` slice of the logits (ranks in
    order, see :func:`xentlib.distributed.vocab_shard`), ``labels`` the *global* class indices, the
    same tensor on every rank. Every rank returns the same loss, equal to
    ``sparse_categorical_cross_entropy(labels, full_logits, from_logits=True,
    ...)`` (PyTorch semantics; ``'mean'`` over kept items, 0 if none), and
    autograd gives each rank the gradient of its own shard. Needs an initialised
    process group (any backend with MAX/SUM ``all_reduce`` and ``all_gather``,
    e.g. gloo on CPU); ``group`` selects a sub-group. A one-process group, where
    the single rank holds every class, gives the ordinary loss:

    >>> import os, tempfile, torch, torch.distributed as dist
    >>> from xentlib.distributed import vocab_parallel_cross_entropy
    >>> store = os.path.join(tempfile.mkdtemp(), "store")
    >>> dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    >>> z = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> round(float(vocab_parallel_cross_entropy(z, torch.tensor([0, 2]))), 6)
    0.175456
    >>> dist.destroy_process_group()
    """
    if not dist.is_available() or not dist.is_initialized():
        error, _, _ = _local_checks(logits_shard, labels, ignore_index, label_smoothing,
                                    reduction, torch.device("cpu"))
        raise error or RuntimeError(
            "vocab_parallel_cross_entropy needs torch.distributed.init_process_group")
    # Every rank checks its own arguments, then all ranks exchange the outcome with the shard
    # widths in one all_gather, so that a rank with bad input never leaves its peers
    # waiting in a collective: they all raise.
    device = _comm_device(logits_shard, group)
    local_error, facts, labels = _local_checks(logits_shard, labels, ignore_index,
                                               label_smoothing, reduction, device)
    gathered = [torch.zeros(len(facts), dtype=torch.int64, device=device)
                for _ in range(dist.get_world_size(group))]
    dist.all_gather(gathered, torch.tensor(facts, dtype=torch.int64, device=device), group=group)
    table = torch.stack(gathered).tolist()
    rank = dist.get_rank(group)
    if local_error is not None:
        raise local_error
    failed = [r for r, row in enumerate(table) if row[_FAILED]]
    if failed:
        raise RuntimeError(f"vocab_parallel_cross_entropy failed on rank(s) {failed} of this group "
                           f"(see the error there); every rank stops")
    _same_options(table)
    sizes = [row[_WIDTH] for row in table]
    start, vocab = sum(sizes[:rank]), sum(sizes)
    if len({tuple(row[_ROWS:]) for row in table}) > 1:
        raise ValueError("labels must be the same tensor on every rank; the ranks hold "
                         "different shapes or values")
    if vocab == 0:
        raise ValueError("logits_shard: the shards hold no class at all (every V_r is 0)")
    eps = float(label_smoothing)
    z = logits_shard.reshape(facts[_ROWS], sizes[rank])
    y = labels.reshape(-1).long()
    low, high = table[0][_LOW], table[0][_HIGH]
    if V.value_checks_enabled() and (low < 0 or high >= vocab):
        # the same labels on every rank: every rank raises the same error
        front_door.label_range(y, vocab, ignore_index)
    out = _VocabParallelCE.apply(z, y, start, vocab, ignore_index, eps, reduction, group)
    return out.reshape(labels.shape) if reduction == "none" else out


# the facts each rank shares: failed (0/1), shard width, the options (dtype, label_smoothing's
# bits, ignore_index, reduction), rows, label min and max, label checksum
_FAILED, _WIDTH, _DTYPE, _SMOOTHING, _IGNORE, _REDUCTION, _ROWS, _LOW, _HIGH = range(9)
_FACTS = 10
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_NO_INDEX = -(2 ** 63)  # ignore_index=None


def _same_options(table):
    """Every rank's dtype and options equal (else each rank would reduce other numbers, or
    tensors of other dtypes, which hangs or fails inside gloo/NCCL): the same error on every rank."""
    for column, name, read in ((_DTYPE, "logits_shard's dtype", lambda v: _DTYPES[v]),
                               (_SMOOTHING, "label_smoothing", _bits_to_float),
                               (_IGNORE, "ignore_index", lambda v: None if v == _NO_INDEX else v),
                               (_REDUCTION, "reduction", lambda v: V.REDUCTIONS[v])):
        values = [row[column] for row in table]
        if len(set(values)) > 1:
            found = ", ".join(f"{read(v)} on rank {r}" for r, v in enumerate(values))
            raise ValueError(f"{name} must be the same on every rank; got {found}")


def _float_bits(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", x))[0]


def _bits_to_float(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<q", bits))[0]


def _local_checks(logits_shard, labels, ignore_index, label_smoothing, reduction, device):
    """``(error or None, facts, labels)``: this rank's verdict on its arguments, what it
    shares with the other ranks, and the labels as a tensor."""
    try:
        if not isinstance(logits_shard, torch.Tensor):
            raise TypeError(f"logits_shard must be a torch.Tensor; got {type(logits_shard).__name__}")
        labels = front_door.ops.as_labels(labels, "labels", like=logits_shard)
        if logits_shard.dtype not in _DTYPES:
            raise V.not_float("logits_shard", logits_shard.dtype)
        if device.type == "cuda" and logits_shard.device != device:
            raise ValueError(f"logits_shard must be on the current CUDA device ({device}) for "
                             f"NCCL; got {logits_shard.device}. Call torch.cuda.set_device first")
        V.check_fraction("label_smoothing", label_smoothing)
        V.check_int("ignore_index", ignore_index, allow_none=True)
        V.check_reduction(reduction)
        if logits_shard.ndim < 1:
            raise ValueError("logits_shard must have shape (..., V_r), this rank's classes on the "
                             "last axis; got a 0-d tensor")
        if tuple(labels.shape) != tuple(logits_shard.shape[:-1]):
            raise V.labels_shape("labels", labels.shape, logits_shard.shape[:-1], "logits_shard")
        front_door.logits(logits_shard, "logits_shard")
    except (TypeError, ValueError) as exc:
        return exc, [1] + [0] * (_FACTS - 1), labels
    y = labels.reshape(-1).long()
    kept = y if ignore_index is None else y[y != ignore_index]
    low, high = (int(kept.min()), int(kept.max())) if kept.numel() else (0, 0)
    checksum = int((y * torch.arange(1, y.numel() + 1, device=y.device)).sum()) if y.numel() else 0
    options = [_DTYPES.index(logits_shard.dtype), _float_bits(float(label_smoothing)),
               _NO_INDEX if ignore_index is None else int(ignore_index), V.REDUCTIONS.index(reduction)]
    return None, [0, logits_shard.shape[-1], *options, y.numel(), low, high, checksum], labels


def _comm_device(like, group):
    """Where the exchanged tensors live: NCCL needs the current CUDA device, gloo the CPU."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return like.device if isinstance(like, torch.Tensor) else torch.device("cpu")


class _VocabParallelCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, y, start, vocab, ignore_index, eps, reduction, group):
        ctx.in_dtype = z.dtype
        work = torch.float64 if z.dtype == torch.float64 else torch.float32
        z = z.to(work)
        kept = torch.ones_like(y, dtype=torch.bool) if ignore_index is None else y != ignore_index
        local = y - start
        mine = kept & (local >= 0) & (local < z.shape[1])
        local = torch.where(mine, local, 0)
        row_max = z.amax(dim=1) if z.shape[1] else torch.full((z.shape[0],), -torch.inf,
                                                              dtype=work, device=z.device)
        dist.all_reduce(row_max, op=dist.ReduceOp.MAX, group=group)
        shifted = z - row_max[:, None]
        e = shifted.exp()
        partial = torch.stack([
            e.sum(dim=1),
            torch.where(mine, shifted.gather(1, local[:, None])[:, 0], 0.0) if z.shape[1]
            else torch.zeros_like(row_max),
            shifted.sum(dim=1) if eps > 0 else torch.zeros_like(row_max)])
        dist.all_reduce(partial, op=dist.ReduceOp.SUM, group=group)
        sum_exp, z_y, z_sum = partial
        lse = sum_exp.log()
        loss = (1 - eps) * (lse - z_y) + eps * (lse - z_sum / vocab)
        loss = torch.where(kept, loss, 0.0)
        e.div_(sum_exp[:, None])                      # this shard's softmax, kept for backward
        count = int(kept.sum())
        ctx.save_for_backward(e, local, mine, kept)
        ctx.eps, ctx.vocab, ctx.reduction, ctx.count = eps, vocab, reduction, count
        if reduction == "none":
            return loss
        total = loss.sum(dtype=torch.float64)
        if reduction == "mean":
            total = total / count if count else total * 0
        return total.to(work)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        p, local, mine, kept = ctx.saved_tensors
        eps = ctx.eps
        if ctx.reduction == "none":
            scale = grad_out.to(p.dtype)
        else:
            scale = grad_out.to(p.dtype) / (ctx.count if ctx.reduction == "mean" and ctx.count
                                            else 1)
            scale = scale.expand(p.shape[0])
        scale = torch.where(kept, scale, 0.0)
        grad = p * scale[:, None]
        if grad.shape[1]:
            grad.scatter_add_(1, local[:, None], torch.where(mine, -(1 - eps) * scale, 0.0)[:, None])
        if eps > 0:
            grad.sub_((eps / ctx.vocab * scale)[:, None])
        return grad.to(ctx.in_dtype), None, None, None, None, None, None, None
