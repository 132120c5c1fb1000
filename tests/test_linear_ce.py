"""linear_cross_entropy (issue 5): the chunked, fused form equals the naive one.

Naive form: logits = hidden @ weight.T + bias, then the NumPy reference
``sparse_categorical_cross_entropy(..., from_logits=True)`` for values and the
framework's autodiff of the naive expression for gradients. Speed is never
asserted here (see bench/).
"""
import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F

from xentlib import numpy as xnp
from xentlib._linear_numpy import linear_cross_entropy as lce_np
from xentlib._linear_tensorflow import linear_cross_entropy as lce_tf
from xentlib._linear_torch import linear_cross_entropy as lce_torch

OPTIONS = [dict(), dict(ignore_index=2), dict(label_smoothing=0.1),
           dict(ignore_index=-100, label_smoothing=0.2)]
SHAPES = [((9,), 4, 7), ((2, 5), 3, 13), ((1,), 6, 2), ((3, 1, 4), 5, 11)]


def _inputs(lead, d, vocab, seed, ignore_index=None, bias=True):
    rng = np.random.default_rng(seed)
    h = rng.normal(size=lead + (d,))
    w = rng.normal(size=(vocab, d)) / np.sqrt(d)
    b = rng.normal(size=vocab) if bias else None
    y = rng.integers(0, vocab, size=lead)
    if ignore_index is not None:
        y[rng.random(lead) < 0.3] = ignore_index
    return h, w, b, y


def _naive_np(h, w, b, y, reduction="mean", **opt):
    z = h @ w.T + (0 if b is None else b)
    return xnp.sparse_categorical_cross_entropy(y, z, from_logits=True, reduction=reduction, **opt)


def _torch_naive(h, w, b, y, reduction, ignore_index=None, label_smoothing=0.0):
    """Autograd reference: F.cross_entropy on materialised logits; empty mean = 0."""
    z = h @ w.T + (0 if b is None else b)
    ii = -12345 if ignore_index is None else ignore_index
    out = F.cross_entropy(z.reshape(-1, w.shape[0]), y.reshape(-1), ignore_index=ii,
                          label_smoothing=label_smoothing, reduction=reduction)
    if reduction == "none":
        return out.reshape(y.shape)
    return torch.nan_to_num(out, nan=0.0)


def _tf_naive(h, w, b, y, reduction, ignore_index=None, label_smoothing=0.0):
    z = tf.linalg.matmul(h, w, transpose_b=True) + (0 if b is None else b)
    vocab = w.shape[0]
    kept = tf.ones_like(y, tf.bool) if ignore_index is None else tf.not_equal(y, ignore_index)
    safe = tf.where(kept, y, tf.zeros_like(y))
    target = (1 - label_smoothing) * tf.one_hot(safe, vocab, dtype=z.dtype) + label_smoothing / vocab
    per = -tf.reduce_sum(target * tf.nn.log_softmax(z), -1) * tf.cast(kept, z.dtype)
    if reduction == "none":
        return per
    total = tf.reduce_sum(per)
    return tf.math.divide_no_nan(total, tf.reduce_sum(tf.cast(kept, z.dtype))) \
        if reduction == "mean" else total


@pytest.mark.parametrize("opt", OPTIONS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", SHAPES)
def test_numpy_value(shape, reduction, opt):
    lead, d, vocab = shape
    h, w, b, y = _inputs(lead, d, vocab, 0, opt.get("ignore_index"))
    for chunk in (1, 2, 5, None):
        got = lce_np(h, w, y, bias=b, reduction=reduction, chunk_size=chunk, **opt)
        np.testing.assert_allclose(got, _naive_np(h, w, b, y, reduction, **opt), rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize("opt", OPTIONS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", SHAPES)
def test_torch_value_and_grads(shape, reduction, opt):
    lead, d, vocab = shape
    with_bias = shape != SHAPES[1]
    arrays = _inputs(lead, d, vocab, 1, opt.get("ignore_index"), with_bias)
    ref_value = _naive_np(*arrays, reduction, **opt)
    h, w, b = (None if a is None else torch.tensor(a, requires_grad=True) for a in arrays[:3])
    y = torch.tensor(arrays[3])
    params = [p for p in (h, w, b) if p is not None]
    ref = _torch_naive(h, w, b, y, reduction, **opt)
    upstream = torch.randn(ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ref_grads = torch.autograd.grad((ref * upstream).sum(), params)
    for chunk in (1, 3, None):
        out = lce_torch(h, w, y, bias=b, reduction=reduction, chunk_size=chunk, **opt)
        assert out.dtype == torch.float64 and out.shape == ref.shape
        np.testing.assert_allclose(out.detach().numpy(), ref_value, rtol=1e-12, atol=1e-12)
        grads = torch.autograd.grad((out * upstream).sum(), params)
        for g, r in zip(grads, ref_grads):
            np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("opt", OPTIONS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", SHAPES[1:3])
def test_tensorflow_value_and_grads(shape, reduction, opt):
    lead, d, vocab = shape
    arrays = _inputs(lead, d, vocab, 2, opt.get("ignore_index"))
    ref_value = _naive_np(*arrays, reduction, **opt)
    h, b = tf.constant(arrays[0]), tf.constant(arrays[2])
    w = tf.Variable(arrays[1])
    y = tf.constant(arrays[3])
    upstream = tf.constant(np.random.default_rng(4).normal(size=ref_value.shape))
    with tf.GradientTape() as tape:
        tape.watch([h, b])
        ref = tf.reduce_sum(_tf_naive(h, w, b, y, reduction, **opt) * upstream)
    ref_grads = tape.gradient(ref, [h, w, b])
    for chunk in (2, None):
        with tf.GradientTape() as tape:
            tape.watch([h, b])
            out = lce_tf(h, w, y, bias=b, reduction=reduction, chunk_size=chunk, **opt)
            total = tf.reduce_sum(out * upstream)
        assert out.dtype == tf.float64 and tuple(out.shape) == ref_value.shape
        np.testing.assert_allclose(out.numpy(), ref_value, rtol=1e-12, atol=1e-12)
        for g, r in zip(tape.gradient(total, [h, w, b]), ref_grads):
            np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-10, atol=1e-12)


def test_tensorflow_in_tf_function_with_unknown_rows():
    h, w, b, y = _inputs((10,), 4, 9, 5)
    spec = [tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([9, 4], tf.float32),
            tf.TensorSpec([None], tf.int64)]

    @tf.function(input_signature=spec)
    def loss_and_grad(h, w, y):
        with tf.GradientTape() as tape:
            tape.watch(h)
            loss = lce_tf(h, w, y, chunk_size=3, label_smoothing=0.1)
        return loss, tape.gradient(loss, h)

    loss, grad = loss_and_grad(tf.constant(h, tf.float32), tf.constant(w, tf.float32),
                               tf.constant(y))
    np.testing.assert_allclose(float(loss), _naive_np(h, w, None, y, label_smoothing=0.1),
                               rtol=1e-5)
    assert grad.shape == (10, 4)


@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_float32_accuracy_any_chunk(chunk):
    """float32 inputs: the loss is within 1e-6 (relative) of the float64 computation.

    (TensorFlow's eager chunk loop is slow at one row per chunk; it runs 5 rows there.)
    """
    h, w, _, y = _inputs((300,), 64, 512, 6)
    h32, w32 = h.astype(np.float32), w.astype(np.float32)
    ref = _naive_np(h32.astype(np.float64), w32.astype(np.float64), None, y)
    got_np = lce_np(h32, w32, y, chunk_size=chunk)
    got_torch = lce_torch(torch.tensor(h32), torch.tensor(w32), torch.tensor(y), chunk_size=chunk)
    got_tf = lce_tf(tf.constant(h32), tf.constant(w32), tf.constant(y),
                    chunk_size=5 if chunk == 1 else chunk)
    for got in (got_np, got_torch.numpy(), got_tf.numpy()):
        assert got.dtype == np.float32
        assert abs(float(got) - ref) <= 1e-6 * abs(ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_torch_low_precision(dtype):
    h, w, b, y = _inputs((20,), 8, 30, 7, ignore_index=0)
    ht, wt, bt = (torch.tensor(a).to(dtype).requires_grad_() for a in (h, w, b))
    out = lce_torch(ht, wt, torch.tensor(y), bias=bt, ignore_index=0, chunk_size=6)
    assert out.dtype == torch.float32
    ref = _torch_naive(*(t.detach().double().requires_grad_() for t in (ht, wt, bt)),
                       torch.tensor(y), "mean", ignore_index=0)
    np.testing.assert_allclose(float(out.detach()), float(ref.detach()), rtol=1e-6)
    out.backward()
    assert ht.grad.dtype == dtype and wt.grad.dtype == dtype and bt.grad.dtype == dtype


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.float32])
def test_tensorflow_low_precision(dtype):
    h, w, b, y = _inputs((20,), 8, 30, 8, ignore_index=0)
    ht, wt, bt = (tf.cast(tf.constant(a), dtype) for a in (h, w, b))
    with tf.GradientTape() as tape:
        tape.watch([ht, wt, bt])
        out = lce_tf(ht, wt, tf.constant(y), bias=bt, ignore_index=0, chunk_size=6)
    assert out.dtype == tf.float32
    ref = _naive_np(*(tf.cast(t, tf.float64).numpy() for t in (ht, wt, bt)), y, ignore_index=0)
    np.testing.assert_allclose(float(out), ref, rtol=1e-6)
    assert all(g.dtype == dtype for g in tape.gradient(out, [ht, wt, bt]))


def test_all_ignored_mean_is_zero():
    h, w, b, y = _inputs((4,), 3, 5, 9)
    y[:] = -1
    assert float(lce_np(h, w, y, ignore_index=-1)) == 0.0
    ht = torch.tensor(h, requires_grad=True)
    out = lce_torch(ht, torch.tensor(w), torch.tensor(y), ignore_index=-1)
    out.backward()
    assert float(out.detach()) == 0.0 and float(ht.grad.abs().sum()) == 0.0
    assert float(lce_tf(tf.constant(h), tf.constant(w), tf.constant(y), ignore_index=-1)) == 0.0


def test_no_grad_and_forward_only():
    h, w, _, y = _inputs((6,), 3, 5, 10)
    ht = torch.tensor(h, requires_grad=True)
    with torch.no_grad():
        out = lce_torch(ht, torch.tensor(w), torch.tensor(y))
    assert not out.requires_grad
    np.testing.assert_allclose(float(out), _naive_np(h, w, None, y), rtol=1e-12)


BAD = [
    (dict(labels=np.array([0, 9])), ValueError, "labels must lie in [0, 5)"),
    (dict(labels=np.array([0.0, 1.0])), TypeError, "labels must hold integer"),
    (dict(labels=np.array([0, 1, 2])), ValueError, "labels has shape (3,)"),
    (dict(hidden=np.array([[1, 2, 3], [4, 5, 6]])), TypeError, "hidden must have a floating"),
    (dict(weight=np.ones((5, 4))), ValueError, "weight has shape (5, 4)"),
    (dict(bias=np.ones(4)), ValueError, "bias must have shape (5,)"),
    (dict(hidden=np.array([[np.nan, 0.0, 0.0], [0.0, 0.0, 0.0]])), ValueError, "hidden must be finite"),
    (dict(reduction="avg"), ValueError, "reduction must be one of"),
    (dict(label_smoothing=1.5), ValueError, "label_smoothing must be in [0, 1]"),
    (dict(chunk_size=0), ValueError, "chunk_size must be >= 1"),
]


@pytest.mark.parametrize("backend", ["numpy", "torch", "tensorflow"])
@pytest.mark.parametrize("change,error,message", BAD)
def test_bad_input(backend, change, error, message):
    args = dict(hidden=np.zeros((2, 3)), weight=np.ones((5, 3)), labels=np.array([0, 1]),
                bias=None)
    change = dict(change)
    options = {k: change.pop(k) for k in list(change) if k not in args}
    args.update(change)
    convert = {"numpy": np.asarray, "torch": torch.as_tensor, "tensorflow": tf.constant}[backend]
    fn = {"numpy": lce_np, "torch": lce_torch, "tensorflow": lce_tf}[backend]
    tensors = {k: None if v is None else convert(v) for k, v in args.items()}
    with pytest.raises(error) as info:
        fn(tensors["hidden"], tensors["weight"], tensors["labels"], bias=tensors["bias"],
           **options)
    assert message in str(info.value)
