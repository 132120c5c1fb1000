"""linear_cross_entropy: the chunked, fused form equals the naive one, with every option.

Naive form: logits = hidden @ weight.T + bias, then the NumPy reference
``sparse_categorical_cross_entropy(..., from_logits=True)`` for values and the
framework's autodiff of the naive expression for gradients. Speed is never
asserted here (see bench/).
"""
from contextlib import nullcontext

import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F

import xentlib
from xentlib import numpy as xnp
from xentlib import tensorflow as xtf
from xentlib import torch as xtorch

lce_np, lce_torch, lce_tf = (m.linear_cross_entropy for m in (xnp, xtorch, xtf))

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



@pytest.mark.parametrize("d", [511, 512])
def test_tensorflow_logits_either_product_order(d):
    """From d = 512 on the logits are computed as (W h^T)^T: the same value and gradients."""
    h, w, b, y = (tf.constant(x) for x in _inputs((5,), d, 7, 8))
    with tf.GradientTape() as tape:
        tape.watch([h, w, b])
        ref = _tf_naive(h, w, b, y, "mean", label_smoothing=0.1)
    ref_grads = tape.gradient(ref, [h, w, b])
    with tf.GradientTape() as tape:
        tape.watch([h, w, b])
        loss = lce_tf(h, w, y, bias=b, chunk_size=2, label_smoothing=0.1)
    np.testing.assert_allclose(float(loss), float(ref), rtol=1e-12)
    for g, r in zip(tape.gradient(loss, [h, w, b]), ref_grads):
        np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("strategy", [None, "one device"])
def test_tensorflow_eager_weight_gradient_summed_in_place(strategy):
    """Eagerly the chunks' weight gradients are added into one variable, which the tape
    must not see; under a distribution strategy the plain sum is used. Same gradients."""
    h, w, b, y = (tf.constant(x) for x in _inputs((9,), 4, 7, 6))
    with tf.GradientTape() as tape:
        tape.watch([h, w])
        ref = _tf_naive(h, w, b, y, "mean")
    ref_grads = tape.gradient(ref, [h, w])
    scope = tf.distribute.OneDeviceStrategy("/cpu:0").scope() if strategy else nullcontext()
    with scope:
        for chunk in (1, 4, None):
            with tf.GradientTape() as tape:
                tape.watch([h, w])
                loss = lce_tf(h, w, y, bias=b, chunk_size=chunk)
            assert tape.watched_variables() == ()
            for g, r in zip(tape.gradient(loss, [h, w]), ref_grads):
                np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-10, atol=1e-12)

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


def test_default_chunk_size():
    """About 2**23 logits per chunk (2**22 in TensorFlow), at least 256 rows and d // 2 up
    to 1024, at most the number of rows."""
    for fn, elements in ((lce_np, 1 << 23), (lce_torch, 1 << 23), (lce_tf, 1 << 22)):
        assert fn.default_chunk_size(100_000, 1024, 64) == elements // 1024
        assert fn.default_chunk_size(100_000, 1 << 18, 64) == 256
        assert fn.default_chunk_size(100_000, 1 << 18, 1024) == 512
        assert fn.default_chunk_size(100_000, 1 << 18, 8192) == 1024
        assert fn.default_chunk_size(100, 1024, 64) == 100


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


# ---- options: class_weight, z_loss, softcap, extras (one float64 torch reference) ----

NEW_OPTIONS = [dict(class_weight=True), dict(z_loss=0.05), dict(softcap=1.5),
               dict(class_weight=True, label_smoothing=0.2, ignore_index=2),
               dict(z_loss=0.1, softcap=2.0, label_smoothing=0.1, ignore_index=-100,
                    class_weight=True)]
ALL_EXTRAS = ("lse", "label_logprob", "entropy", "argmax")


def _options_inputs(opt, seed=11, lead=(3, 5), d=6, vocab=9):
    h, w, b, y = _inputs(lead, d, vocab, seed, opt.get("ignore_index"))
    h = h * 2  # logits of a few units: the soft cap bends them
    cw = np.random.default_rng(seed + 1).uniform(0.2, 2.0, vocab) if opt.get("class_weight") \
        else None
    return h, w, b, y, cw, {k: v for k, v in opt.items() if k != "class_weight"}


def _logits(h, w, b, softcap=None):
    z = h @ w.T + b
    return z if softcap is None else softcap * torch.tanh(z / softcap)


def _naive_loss(h, w, b, y, cw, reduction, ignore_index=None, label_smoothing=0.0, z_loss=0.0,
                softcap=None):
    """Materialised logits, F.cross_entropy and the z-loss in plain autograd ops (which
    torch.func transforms too); an empty mean is 0."""
    z = _logits(h, w, b, softcap)
    ii = -12345 if ignore_index is None else ignore_index
    flat_z, flat_y = z.reshape(-1, w.shape[0]), y.reshape(-1)
    per = F.cross_entropy(flat_z, flat_y, weight=cw, ignore_index=ii,
                          label_smoothing=label_smoothing, reduction="none")
    kept = flat_y != ii
    w_y = kept.to(z.dtype) if cw is None else torch.where(kept, cw[torch.where(kept, flat_y, 0)], 0.0)
    per = per + z_loss * w_y * torch.logsumexp(flat_z, 1) ** 2
    if reduction == "none":
        return per.reshape(y.shape)
    if reduction == "sum":
        return per.sum()
    total = w_y.sum()
    return per.sum() / torch.where(total == 0, 1.0, total)  # per is 0 where total is


def _reference(h, w, b, y, cw, reduction, ignore_index=None, softcap=None, **opt):
    """:func:`_naive_loss` and the extras."""
    loss = _naive_loss(h, w, b, y, cw, reduction, ignore_index=ignore_index, softcap=softcap, **opt)
    flat_z, flat_y = _logits(h, w, b, softcap).reshape(-1, w.shape[0]), y.reshape(-1)
    kept = flat_y != (-12345 if ignore_index is None else ignore_index)
    safe = torch.where(kept, flat_y, 0)
    log_p = torch.log_softmax(flat_z, 1)
    extras = {"lse": torch.logsumexp(flat_z, 1), "argmax": flat_z.argmax(1),
              "label_logprob": torch.where(kept, log_p.gather(1, safe[:, None])[:, 0], 0.0),
              "entropy": -(log_p.exp() * log_p).sum(1)}
    return loss, {k: v.detach().reshape(y.shape).numpy() for k, v in extras.items()}


def _check_extras(got, ref, to_numpy):
    assert set(got) == set(ALL_EXTRAS)
    for name in ALL_EXTRAS:
        value = to_numpy(got[name])
        assert value.shape == ref[name].shape
        if name == "argmax":
            np.testing.assert_array_equal(value, ref[name])
        else:
            np.testing.assert_allclose(value, ref[name], rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opt", NEW_OPTIONS)
def test_options_value_and_grads(opt, reduction):
    """Every backend, every new option: the value, every gradient and the extras."""
    h, w, b, y, cw, opt = _options_inputs(opt)
    th, tw, tb = (torch.tensor(a, requires_grad=True) for a in (h, w, b))
    tcw = None if cw is None else torch.tensor(cw)
    ref, ref_extras = _reference(th, tw, tb, torch.tensor(y), tcw, reduction, **opt)
    upstream = np.random.default_rng(5).normal(size=tuple(ref.shape))
    ref_grads = torch.autograd.grad((ref * torch.tensor(upstream)).sum(), [th, tw, tb])
    ref = ref.detach().numpy()
    for chunk in (2, None):
        kwargs = dict(bias=b, class_weight=cw, reduction=reduction, chunk_size=chunk, **opt)
        got, extras = lce_np(h, w, y, extras=ALL_EXTRAS, **kwargs)
        np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-12)
        _check_extras(extras, ref_extras, np.asarray)

        params = [torch.tensor(a, requires_grad=True) for a in (h, w, b)]
        got, extras = lce_torch(params[0], params[1], torch.tensor(y), extras=ALL_EXTRAS,
                                **dict(kwargs, bias=params[2]))
        np.testing.assert_allclose(got.detach().numpy(), ref, rtol=1e-11, atol=1e-12)
        _check_extras(extras, ref_extras, lambda t: t.numpy())
        grads = torch.autograd.grad((got * torch.tensor(upstream)).sum(), params)
        for g, r in zip(grads, ref_grads):
            np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-9, atol=1e-12)

        params = [tf.constant(a) for a in (h, w, b)]
        with tf.GradientTape() as tape:
            tape.watch(params)
            got, extras = lce_tf(params[0], params[1], tf.constant(y), extras=ALL_EXTRAS,
                                 **dict(kwargs, bias=params[2]))
            total = tf.reduce_sum(got * upstream)
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-11, atol=1e-12)
        _check_extras(extras, ref_extras, lambda t: t.numpy())
        for g, r in zip(tape.gradient(total, params), ref_grads):
            np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_options_16_bit_inputs(dtype):
    """16-bit inputs, float32 computation: value and gradients against float64 on the same
    (rounded) inputs, to float32 accuracy for the value and 16-bit rounding for the gradients."""
    opt = dict(z_loss=0.01, softcap=3.0, label_smoothing=0.1, ignore_index=-100)
    h, w, b, y, cw, opt = _options_inputs(dict(opt, class_weight=True), lead=(40,), d=16,
                                          vocab=50)
    t16 = getattr(torch, dtype)
    params = [torch.tensor(a).to(t16).requires_grad_() for a in (h, w, b)]
    exact = [p.detach().double().requires_grad_() for p in params]
    ref, _ = _reference(*exact, torch.tensor(y), torch.tensor(cw), "mean", **opt)
    ref_grads = torch.autograd.grad(ref, exact)
    got = lce_torch(params[0], params[1], torch.tensor(y), bias=params[2], class_weight=cw,
                    chunk_size=7, **opt)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(float(got.detach()), float(ref.detach()), rtol=1e-6)
    tol = 1e-2 if dtype == "bfloat16" else 2e-3
    for g, r in zip(torch.autograd.grad(got, params), ref_grads):
        assert g.dtype == t16
        np.testing.assert_allclose(g.double().numpy(), r.numpy(), rtol=tol,
                                   atol=tol * float(r.abs().max()))

    tf_params = [tf.cast(tf.constant(p.detach().double().numpy()), dtype) for p in params]
    with tf.GradientTape() as tape:
        tape.watch(tf_params)
        got = lce_tf(tf_params[0], tf_params[1], tf.constant(y), bias=tf_params[2],
                     class_weight=cw, chunk_size=7, **opt)
    assert got.dtype == tf.float32
    np.testing.assert_allclose(float(got), float(ref.detach()), rtol=1e-6)
    for g, r in zip(tape.gradient(got, tf_params), ref_grads):
        assert g.dtype.name == dtype
        np.testing.assert_allclose(tf.cast(g, tf.float64).numpy(), r.numpy(), rtol=tol,
                                   atol=tol * float(r.abs().max()))


def test_extras_alone_and_no_grad():
    """extras without any option; under no_grad the extras still come, with no gradient work."""
    h, w, b, y, _, _ = _options_inputs({})
    ref, ref_extras = _reference(torch.tensor(h), torch.tensor(w), torch.tensor(b),
                                 torch.tensor(y), None, "mean")
    with torch.no_grad():
        loss, extras = lce_torch(torch.tensor(h), torch.tensor(w), y, bias=b,
                                 extras=("entropy", "argmax"))
    assert set(extras) == {"entropy", "argmax"} and extras["argmax"].dtype == torch.int64
    np.testing.assert_allclose(extras["entropy"].numpy(), ref_extras["entropy"], rtol=1e-11)
    np.testing.assert_allclose(float(loss), float(ref), rtol=1e-12)


BAD_OPTIONS = [
    (dict(z_loss=-1.0), ValueError, "z_loss must be finite and >= 0"),
    (dict(z_loss="1e-4"), TypeError, "z_loss must be a float"),
    (dict(softcap=0.0), ValueError, "softcap must be positive"),
    (dict(extras=("lse", "logits")), ValueError, "extras must be names from"),
    (dict(extras="lse"), TypeError, "extras must be a tuple of names"),
    (dict(class_weight=np.ones(4)), ValueError, "class_weight must have shape (5,)"),
    (dict(class_weight=-np.ones(5)), ValueError, "class_weight must be non-negative"),
]


@pytest.mark.parametrize("backend", ["numpy", "torch", "tensorflow"])
@pytest.mark.parametrize("option,error,message", BAD_OPTIONS)
def test_bad_options(backend, option, error, message):
    fn = {"numpy": lce_np, "torch": lce_torch, "tensorflow": lce_tf}[backend]
    with pytest.raises(error) as info:
        fn(np.zeros((2, 3)), np.ones((5, 3)), np.array([0, 1]), **option)
    assert str(info.value).startswith(message.split()[0]) and message in str(info.value)


# ---- inputs and devices ----------------------------------------------------------------

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_torch_device_and_array_inputs(device):
    """Loss, extras and gradients on hidden's device; lists and NumPy arrays are accepted."""
    h, w, b, y, cw, _ = _options_inputs(dict(class_weight=True))
    th = torch.tensor(h, device=device, requires_grad=True)
    tw = torch.tensor(w, device=device, requires_grad=True)
    loss, extras = lce_torch(th, tw, y.tolist(), bias=b, class_weight=cw, z_loss=0.01,
                             extras=("lse",), chunk_size=4)
    loss.backward()
    assert loss.device.type == extras["lse"].device.type == th.grad.device.type == device
    assert tw.grad.device.type == device
    np.testing.assert_allclose(float(loss.detach().cpu()),
                               float(lce_np(h, w, y, bias=b, class_weight=cw, z_loss=0.01)),
                               rtol=1e-12)


# ---- TensorFlow graphs and XLA ---------------------------------------------------------

def test_tensorflow_xla_value_grads_and_invalid_label():
    """jit_compile=True compiles (every chunk has one static shape); an out-of-range label,
    which no assertion can report under XLA, makes that item's loss NaN."""
    h, w, b, y, cw, _ = _options_inputs({}, lead=(10,))
    h, w = tf.constant(h, tf.float32), tf.Variable(w.astype(np.float32))

    @tf.function(jit_compile=True)
    def step(h, y):
        with tf.GradientTape() as tape:
            tape.watch(h)
            loss = lce_tf(h, w, y, chunk_size=4, label_smoothing=0.1, z_loss=1e-3)
        return loss, tape.gradient(loss, [h, w])

    loss, grads = step(h, tf.constant(y))
    ref = lce_np(h.numpy(), w.numpy(), y, chunk_size=4, label_smoothing=0.1, z_loss=1e-3)
    np.testing.assert_allclose(float(loss), float(ref), rtol=1e-5)
    assert all(bool(tf.reduce_all(tf.math.is_finite(g))) for g in grads)

    @tf.function(jit_compile=True)
    def per_item(h, y):
        return lce_tf(h, w, y, reduction="none", chunk_size=4)

    bad = y.copy()
    bad[3] = 99
    out = per_item(h, tf.constant(bad)).numpy()
    assert np.isnan(out[3]) and np.isfinite(np.delete(out, 3)).all()



# ---- torch: higher-order gradients and torch.func (plain autograd ops, exact) ----------

FUNC_OPTIONS = OPTIONS + NEW_OPTIONS
PARAMS = ("hidden", "weight", "bias")


def _func_problem(opt, reduction, seed=11, dtype=torch.float64):
    """(h, w, b) as tensors, labels, class weights, the other options and an upstream
    gradient of the loss's shape (it makes the loss a scalar objective)."""
    h, w, b, y, cw, opt = _options_inputs(opt, seed)
    params = [torch.tensor(a).to(dtype) for a in (h, w, b)]
    cw = None if cw is None else torch.tensor(cw).to(dtype)
    shape = y.shape if reduction == "none" else ()
    upstream = torch.tensor(np.random.default_rng(seed + 2).normal(size=shape)).to(dtype)
    return params, torch.tensor(y), cw, opt, upstream


def _objectives(y, cw, opt, reduction, upstream, chunk=None):
    """Scalar functions of (h, w, b): ours and the naive form, each times ``upstream``."""
    def ours(h, w, b):
        return (lce_torch(h, w, y, bias=b, class_weight=cw, reduction=reduction,
                          chunk_size=chunk, **opt) * upstream).sum()

    def naive(h, w, b):
        return (_naive_loss(h, w, b, y, cw, reduction, **opt) * upstream).sum()
    return ours, naive


def _assert_all_close(got, ref, rtol, what):
    for name, g, r in zip(PARAMS, got, ref):
        scale = float(r.abs().max())
        np.testing.assert_allclose(g.detach().double().numpy(), r.double().numpy(), rtol=rtol,
                                   atol=rtol * scale, err_msg=f"{what}: {name}")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opt", FUNC_OPTIONS)
def test_torch_func_grad_every_option(opt, reduction):
    """torch.func.grad for hidden, weight and bias equals that of the naive form, float64."""
    params, y, cw, opt, upstream = _func_problem(opt, reduction)
    for chunk in (2, None):
        ours, naive = _objectives(y, cw, opt, reduction, upstream, chunk)
        got, value = torch.func.grad_and_value(ours, argnums=(0, 1, 2))(*params)
        ref, ref_value = torch.func.grad_and_value(naive, argnums=(0, 1, 2))(*params)
        np.testing.assert_allclose(float(value), float(ref_value), rtol=1e-12)
        _assert_all_close(got, ref, 1e-10, f"grad, chunk {chunk}")


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("opt", FUNC_OPTIONS)
def test_torch_hessian_vector_products(opt, reduction):
    """Grad of grad, both ways, equals the naive form's: forward-over-reverse in torch.func,
    and the fused pass's backward differentiated with create_graph=True (a gradient penalty)."""
    params, y, cw, opt, upstream = _func_problem(opt, reduction)
    g = torch.Generator().manual_seed(3)
    tangents = tuple(torch.randn(p.shape, dtype=p.dtype, generator=g) for p in params)
    ours, naive = _objectives(y, cw, opt, reduction, upstream, chunk=4)
    grad = lambda f: torch.func.grad(f, argnums=(0, 1, 2))
    ref = torch.func.jvp(grad(naive), tuple(params), tangents)[1]
    _assert_all_close(torch.func.jvp(grad(ours), tuple(params), tangents)[1], ref, 1e-10,
                      "torch.func hvp")

    leaves = [p.clone().requires_grad_() for p in params]
    first = torch.autograd.grad(ours(*leaves), leaves, create_graph=True)
    assert all(f.requires_grad for f in first)
    _assert_all_close(first, grad(naive)(*params), 1e-10, "create_graph first order")
    directional = sum((f * t).sum() for f, t in zip(first, tangents))
    _assert_all_close(torch.autograd.grad(directional, leaves), ref, 1e-10, "create_graph hvp")


def test_torch_func_vmap_over_problems():
    """vmap over a batch of problems (hidden, weight, bias, labels all batched): the losses,
    and per-problem gradients with vmap(grad)."""
    opt = dict(z_loss=0.1, softcap=2.0, label_smoothing=0.1, ignore_index=-100, class_weight=True)
    problems = [_func_problem(opt, "mean", seed=s) for s in (11, 12, 13)]
    cw, options = problems[0][2], problems[0][3]
    h, w, b = (torch.stack([p[0][i] for p in problems]) for i in range(3))
    y = torch.stack([p[1] for p in problems])

    def ours(h, w, b, y):
        return lce_torch(h, w, y, bias=b, class_weight=cw, chunk_size=4, **options)

    def naive(h, w, b, y):
        return _naive_loss(h, w, b, y, cw, "mean", **options)
    with xentlib.value_checks(False):  # the value checks read data back: not under vmap
        losses = torch.func.vmap(ours)(h, w, b, y)
        grads = torch.func.vmap(torch.func.grad(ours, argnums=(0, 1, 2)))(h, w, b, y)
    for i in range(3):
        np.testing.assert_allclose(float(losses[i]), float(naive(h[i], w[i], b[i], y[i])),
                                   rtol=1e-12)
        ref = torch.func.grad(naive, argnums=(0, 1, 2))(h[i], w[i], b[i], y[i])
        _assert_all_close([g[i] for g in grads], ref, 1e-10, f"vmap(grad), problem {i}")


@pytest.mark.parametrize("dtype, rtol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_torch_func_low_precision(dtype, rtol):
    """float32 and bf16 inputs under torch.func and create_graph=True: the loss in float32,
    gradients in the input dtype, close to float64 on the same (rounded) inputs."""
    opt = dict(z_loss=0.05, softcap=2.0, label_smoothing=0.1, ignore_index=2, class_weight=True)
    params, y, cw, opt, upstream = _func_problem(opt, "mean", dtype=dtype)
    exact = [p.double() for p in params]
    ours, _ = _objectives(y, cw, opt, "mean", upstream, chunk=4)
    _, naive = _objectives(y, cw.double(), opt, "mean", upstream.double())
    ref = torch.func.grad(naive, argnums=(0, 1, 2))(*exact)
    got, value = torch.func.grad_and_value(ours, argnums=(0, 1, 2))(*params)
    assert value.dtype == torch.float32 and all(g.dtype == dtype for g in got)
    np.testing.assert_allclose(float(value), float(naive(*exact)), rtol=1e-6)
    _assert_all_close(got, ref, rtol, "torch.func.grad")
    leaves = [p.clone().requires_grad_() for p in params]
    first = torch.autograd.grad(ours(*leaves), leaves, create_graph=True)
    _assert_all_close(first, ref, rtol, "create_graph")


def test_torch_func_extras_as_aux():
    """The extras under torch.func (grad's has_aux): equal to the reference, no gradient."""
    params, y, cw, opt, _ = _func_problem(dict(softcap=1.5, ignore_index=2), "mean")
    _, ref_extras = _reference(*params, y, cw, "mean", **opt)

    def ours(h, w, b):
        return lce_torch(h, w, y, bias=b, extras=ALL_EXTRAS, chunk_size=4, **opt)
    grads, extras = torch.func.grad(ours, argnums=(0, 1, 2), has_aux=True)(*params)
    _check_extras(extras, ref_extras, lambda t: t.numpy())
    _assert_all_close(grads, torch.func.grad(lambda *p: ours(*p)[0], argnums=(0, 1, 2))(*params),
                      1e-12, "with extras")
