"""vocab_parallel_cross_entropy: 2 and 4 gloo processes equal one process; failures reach every rank.

Each spawned rank builds the same full logits, keeps its vocabulary shard,
computes the loss and the gradient of its shard, and compares them with the
single-process result (F.cross_entropy with autograd on the full logits, and the
NumPy reference); a mismatch raises in the child, which fails the test.
"""
import os
import tempfile

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from xentlib import numpy as xnp
from xentlib.distributed import vocab_parallel_cross_entropy, vocab_shard

CASES = [dict(reduction=r, **opt) for r in ("mean", "sum", "none")
         for opt in (dict(), dict(ignore_index=-100, label_smoothing=0.1), dict(ignore_index=3))]


def _reference(z, y, upstream, reduction, ignore_index=None, label_smoothing=0.0):
    z = z.clone().requires_grad_()
    ii = -12345 if ignore_index is None else ignore_index
    out = F.cross_entropy(z.reshape(-1, z.shape[-1]), y.reshape(-1), ignore_index=ii,
                          label_smoothing=label_smoothing, reduction=reduction)
    out = out.reshape(y.shape) if reduction == "none" else out
    (out * upstream).sum().backward()
    return out.detach(), z.grad


def _worker(rank, world, path, vocab):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=world)
    try:
        start, stop = vocab_shard(vocab, rank, world)
        for i, case in enumerate(CASES):
            g = torch.Generator().manual_seed(i)
            z = torch.randn(3, 4, vocab, dtype=torch.float64, generator=g) * 3
            y = torch.randint(0, vocab, (3, 4), generator=g)
            if case.get("ignore_index") is not None:
                y[0, :2] = case["ignore_index"]
            upstream = torch.randn(y.shape if case["reduction"] == "none" else (),
                                   dtype=torch.float64, generator=g)
            ref, ref_grad = _reference(z, y, upstream, **case)
            np_ref = xnp.sparse_categorical_cross_entropy(y.numpy(), z.numpy(), from_logits=True,
                                                          **case)
            shard = z[..., start:stop].clone().requires_grad_()
            out = vocab_parallel_cross_entropy(shard, y, **case)
            (out * upstream).sum().backward()
            np.testing.assert_allclose(out.detach().numpy(), ref.numpy(), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(out.detach().numpy(), np_ref, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(shard.grad.numpy(), ref_grad[..., start:stop].numpy(),
                                       rtol=1e-10, atol=1e-12)
        # float32 shards and an all-ignored batch (mean = 0, zero gradient)
        z = torch.randn(5, vocab, generator=torch.Generator().manual_seed(99))
        shard = z[:, start:stop].clone().requires_grad_()
        out = vocab_parallel_cross_entropy(shard, torch.full((5,), -1), ignore_index=-1)
        out.backward()
        assert float(out) == 0.0 and float(shard.grad.abs().sum()) == 0.0
        y = torch.arange(5) % vocab
        out = vocab_parallel_cross_entropy(z[:, start:stop], y)
        assert out.dtype == torch.float32
        assert abs(float(out) - float(F.cross_entropy(z.double(), y))) < 1e-6 * float(out)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world,vocab", [(2, 7), (4, 10)])
def test_vocab_parallel_matches_single_process(world, vocab):
    with tempfile.TemporaryDirectory() as tmp:
        # fork: the children inherit the imported torch instead of importing it again
        mp.start_processes(_worker, args=(world, os.path.join(tmp, "store"), vocab),
                           nprocs=world, join=True, start_method="fork")


def test_vocab_shard_covers_vocabulary():
    for vocab, world in [(10, 4), (7, 2), (3, 3), (128000, 8)]:
        shards = [vocab_shard(vocab, r, world) for r in range(world)]
        assert shards[0][0] == 0 and shards[-1][1] == vocab
        assert all(a[1] == b[0] for a, b in zip(shards, shards[1:]))


def test_needs_process_group():
    if dist.is_initialized():
        pytest.skip("a process group is already initialised")
    with pytest.raises(RuntimeError, match="init_process_group"):
        vocab_parallel_cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]))


def test_bad_labels_shape():
    with pytest.raises(ValueError, match="labels has shape"):
        vocab_parallel_cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1, 2]))


def _failure_worker(rank, world, path):
    """Bad input on one rank: every rank raises (none waits in a collective), and the group
    stays usable; an empty shard (9/0) and list labels work."""
    import datetime
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        g = torch.Generator().manual_seed(0)
        z = torch.randn(4, 9, dtype=torch.float64, generator=g)
        y = torch.tensor([0, 8, 3, 5])
        start, stop = vocab_shard(9, rank, world)

        def expect(error, text, shard, labels):
            try:
                vocab_parallel_cross_entropy(shard, labels)
            except error as exc:
                assert text in str(exc), (rank, str(exc))
            else:
                raise AssertionError(f"rank {rank}: no {error.__name__} ({text})")

        shard = z[:, start:stop].clone()
        nan_shard = shard.clone()
        nan_shard[0, 0] = float("nan")
        if rank == 1:
            expect(ValueError, "logits_shard must be finite", nan_shard, y)
            expect(ValueError, "logits_shard must have shape (..., V_r)", torch.tensor(1.0),
                   torch.tensor(0))
        else:
            expect(RuntimeError, "failed on rank(s) [1]", shard, y)
            expect(RuntimeError, "failed on rank(s) [1]", shard, y)
        expect(ValueError, "labels must be the same tensor on every rank", shard, y + rank)
        # options or dtypes that differ between ranks: the same named error on every rank
        # (other dtypes hung or failed inside gloo; another label_smoothing gave a wrong number)
        for kwargs, text in ((dict(label_smoothing=0.1 * rank),
                              "label_smoothing must be the same on every rank; got 0.0 on rank 0, 0.1 on rank 1"),
                             (dict(ignore_index=None if rank else -1), "ignore_index must be the same"),
                             (dict(reduction="sum" if rank else "mean"), "reduction must be the same")):
            try:
                vocab_parallel_cross_entropy(shard, y, **kwargs)
            except ValueError as exc:
                assert text in str(exc), (rank, str(exc))
            else:
                raise AssertionError(f"rank {rank}: no error for {kwargs}")
        expect(ValueError, "logits_shard's dtype must be the same on every rank; got torch.float64 on "
               "rank 0, torch.float32 on rank 1", shard.float() if rank else shard, y)
        expect(ValueError, "labels must lie in [0, 9)", shard, torch.tensor([0, 9, 1, 2]))
        # splits 9 / 0: the second rank holds no class
        empty = z.clone().requires_grad_() if rank == 0 else z[:, 9:].clone().requires_grad_()
        out = vocab_parallel_cross_entropy(empty, y.tolist(), label_smoothing=0.1)
        out.backward()
        ref, ref_grad = _reference(z, y, torch.tensor(1.0, dtype=torch.float64), "mean",
                                   label_smoothing=0.1)
        np.testing.assert_allclose(float(out), float(ref), rtol=1e-12)
        assert empty.grad.shape == ((4, 9) if rank == 0 else (4, 0))
        if rank == 0:
            np.testing.assert_allclose(empty.grad.numpy(), ref_grad.numpy(), rtol=1e-10)
    finally:
        dist.destroy_process_group()


def test_vocab_parallel_failures_reach_every_rank():
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(_failure_worker, args=(2, os.path.join(tmp, "store")), nprocs=2,
                           join=True, start_method="fork")


def test_zero_dim_shard_without_group():
    with pytest.raises(ValueError, match=r"logits_shard must have shape \(\.\.\., V_r\)"):
        vocab_parallel_cross_entropy(torch.tensor(1.0), torch.tensor(0))
