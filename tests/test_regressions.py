"""One regression test per failure found by the adversarial review (reliability), every backend concerned."""
import threading

import numpy as np
import pytest

import xentlib
from xentlib._validate import value_checks_enabled

tf = pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")
from xentlib import numpy as xn  # noqa: E402  (after importorskip: torch and tensorflow are optional)
from xentlib import tensorflow as xtf  # noqa: E402  (after importorskip: torch and tensorflow are optional)
from xentlib import torch as xt  # noqa: E402  (after importorskip: torch and tensorflow are optional)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# ---- torch -------------------------------------------------------------------------------

def test_torch_binary_from_logits_does_not_cancel_at_large_logits():
    z = torch.tensor([[-6780.9917, 1e4, 1e4]])
    assert float(xt.binary_cross_entropy((z > 0).float(), z, from_logits=True)) == 0.0
    big = torch.tensor(np.random.default_rng(0).choice([-1e4, 1e4], 64), dtype=torch.float32)
    assert float(xt.binary_cross_entropy((big > 0).float(), big, from_logits=True)) == 0.0
    # Each item's loss is 3e38, and so is their mean: summed in float64, it does not overflow.
    huge = xt.binary_cross_entropy(torch.zeros(4), torch.full((4,), 3e38), from_logits=True)
    assert huge.dtype == torch.float32 and float(huge) == float(np.float32(3e38))


def _losses():
    labels = torch.tensor([0, 1, 2])
    soft = torch.softmax(torch.ones(3, 4, dtype=torch.float64), -1)
    yield "sparse", (lambda z: xt.sparse_categorical_cross_entropy(labels, z, from_logits=True, label_smoothing=0.1),
                     lambda z: torch.nn.functional.cross_entropy(z, labels, label_smoothing=0.1))
    yield "categorical", (lambda z: xt.categorical_cross_entropy(soft, z, from_logits=True),
                          lambda z: torch.nn.functional.cross_entropy(z, soft))
    yield "binary", (lambda z: xt.binary_cross_entropy(soft, z, from_logits=True),
                     lambda z: torch.nn.functional.binary_cross_entropy_with_logits(z, soft))


@pytest.mark.parametrize("name, fns", list(_losses()), ids=[n for n, _ in _losses()])
@pytest.mark.parametrize("device", DEVICES)
def test_torch_second_order_gradients_are_exact(name, fns, device):
    ours, builtin = fns
    z = torch.randn(3, 4, dtype=torch.float64, device=device, requires_grad=True)
    penalties = []
    for fn in (ours, builtin):
        (g,) = torch.autograd.grad(fn(z), z, create_graph=True)
        assert g.requires_grad
        penalties.append(torch.autograd.grad((g ** 2).sum(), z)[0])
    torch.testing.assert_close(*penalties)


@pytest.mark.parametrize("name, fns", list(_losses()), ids=[n for n, _ in _losses()])
def test_torch_func_grad_and_vmap(name, fns):
    ours, builtin = fns
    z = torch.randn(3, 4, dtype=torch.float64)
    torch.testing.assert_close(torch.func.grad(ours)(z), torch.func.grad(builtin)(z))
    with xentlib.value_checks(False):  # the value checks read data back: not under vmap
        batched = torch.func.vmap(ours)(torch.stack([z, 2 * z]))
    torch.testing.assert_close(batched, torch.stack([builtin(z), builtin(2 * z)]))


def test_torch_categorical_at_the_float32_extremes():
    z = torch.tensor([[3e38, -3e38]])
    assert float(xt.categorical_cross_entropy(torch.tensor([[1.0, 0.0]]), z, from_logits=True)) == 0.0


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_smoothing_in_the_compute_dtype(dtype):
    y = torch.tensor([[1.0, 0, 0, 0]], dtype=getattr(torch, dtype))
    loss = xt.categorical_cross_entropy(y, torch.zeros(1, 4, dtype=y.dtype), from_logits=True, label_smoothing=0.1)
    assert float(loss) == pytest.approx(np.log(4), rel=1e-6)
    loss = xn.categorical_cross_entropy(np.array([[1.0, 0, 0, 0]], np.float16), np.zeros((1, 4), np.float16),
                                        from_logits=True, label_smoothing=0.1)
    assert float(loss) == pytest.approx(np.log(4), rel=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_tensors_created_on_the_input_device(device):
    z = torch.zeros(2, 3, device=device)
    weighted = xt.sparse_categorical_cross_entropy([0, 1], z, from_logits=True, class_weight=[1.0, 2.0, 3.0])
    assert weighted.device == z.device
    binary = xt.binary_cross_entropy([[0.0, 1, 0], [1, 0, 1]], z, from_logits=True, pos_weight=[1.0, 2, 3])
    assert binary.device == z.device
    assert xt.gaussian_nll([[0.0] * 3] * 2, z, [1.0, 2.0, 3.0]).device == z.device


def test_import_torch_backend_does_not_import_torch_distributed():
    import subprocess
    import sys
    code = "import sys, xentlib.torch; print('xentlib.distributed' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


# ---- TensorFlow ----------------------------------------------------------------------------

SPEC = tf.TensorSpec([None, None], tf.float32)


def test_tf_unknown_class_dimension():
    cce = tf.function(lambda y, z: xtf.categorical_cross_entropy(y, z, from_logits=True, label_smoothing=0.1),
                      input_signature=[SPEC, SPEC])
    assert float(cce(tf.one_hot([0, 1], 3), tf.zeros((2, 3)))) == pytest.approx(np.log(3))
    smooth = tf.function(lambda y: xtf.smooth_labels(y, 0.3), input_signature=[SPEC])
    np.testing.assert_allclose(smooth(tf.one_hot([0], 3)).numpy(), [[0.8, 0.1, 0.1]], rtol=1e-6)
    sparse = tf.function(lambda y, z: xtf.sparse_categorical_cross_entropy(
        y, z, from_logits=True, class_weight=[1.0, 2.0, 3.0]), input_signature=[tf.TensorSpec([None], tf.int64), SPEC])
    assert float(sparse(tf.constant([0, 2], tf.int64), tf.zeros((2, 3)))) == pytest.approx(np.log(3))
    binary = tf.function(lambda y, z: xtf.binary_cross_entropy(y, z, from_logits=True, pos_weight=[1.0, 2.0, 3.0]),
                         input_signature=[SPEC, SPEC])
    assert float(binary(tf.ones((2, 3)), tf.zeros((2, 3)))) == pytest.approx(2 * np.log(2))


def test_tf_under_xla_a_bad_label_gives_nan():
    loss = tf.function(lambda y, z: xtf.sparse_categorical_cross_entropy(y, z, from_logits=True), jit_compile=True)
    assert np.isnan(float(loss(tf.constant([7]), tf.zeros((1, 3)))))
    per_item = tf.function(lambda y, z: xtf.sparse_categorical_cross_entropy(y, z, from_logits=True, reduction="none"),
                           jit_compile=True)(tf.constant([0, 7]), tf.zeros((2, 3))).numpy()
    assert per_item[0] == pytest.approx(np.log(3)) and np.isnan(per_item[1])


def test_tf_subnormal_probabilities_are_not_flushed():
    expected = float(xn.cross_entropy([0.5, 0.5], [1.0, 1e-310]))
    assert float(xtf.cross_entropy([0.5, 0.5], [1.0, 1e-310])) == pytest.approx(expected)
    q = np.array([[1.0, 1e-40]], np.float32)
    assert float(xtf.sparse_categorical_cross_entropy([1], q)) == pytest.approx(-np.log(np.float64(q[0, 1])), rel=1e-5)


@pytest.mark.parametrize("fn", ["cross_entropy", "kl_divergence"])
@pytest.mark.parametrize("dtypes", [(np.float32, np.float64), (np.float64, np.float32), (np.float16, np.float64)])
def test_mixed_dtypes_promote_in_every_backend(fn, dtypes):
    p, q = np.array([0.25, 0.75], dtypes[0]), np.array([0.5, 0.5], dtypes[1])
    expected = float(getattr(xn, fn)(p, q))
    assert float(getattr(xt, fn)(torch.from_numpy(p), torch.from_numpy(q))) == pytest.approx(expected, rel=1e-3)
    assert float(getattr(xtf, fn)(p, q)) == pytest.approx(expected, rel=1e-3)


def test_tf_promotion_keeps_float32_subnormals():
    """TensorFlow's CPU cast float32 -> float64 flushes subnormals: p > 0 at q = 1e-45 is not inf."""
    p = np.array([1.0 - 1e-45, 1e-45])
    q = np.array([1.0, 1e-45], np.float32)
    expected = float(xn.kl_divergence(p, q))
    assert np.isfinite(expected)
    assert float(xtf.kl_divergence(p, q)) == pytest.approx(expected, abs=1e-12)
    assert float(xtf.cross_entropy(p, q)) == pytest.approx(float(xn.cross_entropy(p, q)), abs=1e-12)


# ---- every backend ---------------------------------------------------------------------------

@pytest.fixture(params=["numpy", "torch", "tensorflow"])
def xl(request):
    return {"numpy": xn, "torch": xt, "tensorflow": xtf}[request.param]


def test_sparse_on_probabilities_zero_times_inf(xl):
    assert float(xl.sparse_categorical_cross_entropy([0], [[0.0, 1.0]], label_smoothing=1.0)) == np.inf
    value = xl.sparse_categorical_cross_entropy([0, 1], [[0.0, 1.0], [0.5, 0.5]], class_weight=[0.0, 1.0])
    assert float(value) == pytest.approx(np.log(2))


@pytest.mark.parametrize("call, match", [
    (lambda xl: xl.categorical_cross_entropy(np.zeros((2, 0)), np.zeros((2, 0))), "y_pred has no classes"),
    (lambda xl: xl.entropy(np.zeros((3, 0))), "p has no classes"),
    (lambda xl: xl.joint_entropy(np.zeros((0, 0))), "p_xy must have at least one value"),
    (lambda xl: xl.sparse_categorical_cross_entropy(np.zeros(2, int), np.zeros((2, 0))), "y_pred has no classes"),
    (lambda xl: xl.softmax(np.float64(1.0)), "x is a scalar"),
    (lambda xl: xl.entropy(np.float64(1.0)), "p is a scalar"),
    (lambda xl: xl.gaussian_nll(np.zeros(3), np.zeros(3), np.ones((3, 1))),
     "variance must be a scalar or broadcastable"),
    (lambda xl: xl.binary_cross_entropy(np.float64(1.0), np.float64(0.5), pos_weight=np.ones(3)), "pos_weight must"),
], ids=["cce-C0", "entropy-C0", "joint-0x0", "scce-C0", "softmax-0d", "entropy-0d", "variance-N1", "pos_weight-0d"])
def test_named_value_errors(xl, call, match):
    with pytest.raises(ValueError, match=match):
        call(xl)


@pytest.mark.parametrize("call, match", [
    (lambda xl: xl.sigmoid("0.5"), "x must be an array of floats"),
    (lambda xl: xl.binary_cross_entropy([1.0], [0.5], pos_weight="2"), "pos_weight must be an array of floats"),
    (lambda xl: xl.logsumexp([1.0, 2.0], keepdims="yes"), "keepdims must be True or False"),
], ids=["string-x", "string-pos_weight", "keepdims"])
def test_named_type_errors(xl, call, match):
    with pytest.raises(TypeError, match=match):
        call(xl)


def test_gradient_descent_refuses_nan_gradients_and_non_scalar_losses():
    with pytest.raises(ValueError, match="^loss_and_grad returned a gradient with NaN or inf at step 0 "):
        xn.gradient_descent(lambda t: (0.0, t * np.nan), [1.0], steps=1)
    with pytest.raises(TypeError, match="scalar loss"):
        xn.gradient_descent(lambda t: (t, t), [1.0, 2.0], steps=1)
    with pytest.raises(TypeError, match="scalar loss"):
        xn.gradient_descent(lambda t: (None, t), [1.0], steps=1)
    with pytest.raises(TypeError, match="a pair"):
        xn.gradient_descent(lambda t: t, [1.0], steps=1)


# ---- value_checks ----------------------------------------------------------------------------

def test_value_checks_bare_call_and_context_manager():
    xentlib.value_checks(False)
    try:
        assert not value_checks_enabled()
    finally:
        xentlib.value_checks(True)
    assert value_checks_enabled()
    with xentlib.value_checks(False):
        assert not value_checks_enabled()
    assert value_checks_enabled()


def test_threads_started_inside_value_checks_false_still_check():
    seen = []
    with xentlib.value_checks(False):
        thread = threading.Thread(target=lambda: seen.append(value_checks_enabled()))
        thread.start()
        thread.join()
    assert seen == [True]  # as documented: a new thread starts with the checks on


# ---- weighted float32 losses beyond float32's maximum (found by the CI-scale fuzz) --------

BACKENDS = {"numpy": (xn, np.asarray), "torch": (xt, torch.tensor), "tensorflow": (xtf, tf.constant)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_weighted_float32_losses_beyond_float32_max(backend):
    xl, array = BACKENDS[backend]
    z = array(np.array([[8.5070587e37, 0.0, 0.0]], np.float32))
    weight = array(np.array([3.0, 3.0, 3.0], np.float32))
    # eps/K * sum_c w_c (lse - z_c) = 0.1/3 * 3 * 2 * 8.5e37: the class sum passes float32's
    # maximum, the item (and the weighted mean, divided by w_y = 3) do not.
    for reduction, expected in [("mean", 0.1 / 3 * 2 * 8.5070587e37),
                                ("none", [0.1 * 2 * 8.5070587e37])]:
        got = xl.sparse_categorical_cross_entropy(array(np.array([0])), z, from_logits=True,
                                                  label_smoothing=0.1, class_weight=weight,
                                                  reduction=reduction)
        assert np.asarray(got).dtype == np.float32
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6)
    # Unweighted: sum_c (lse - z_c) = 4.25e38 passes float32's maximum; 0.1 / 5 of it does not.
    z5 = array(np.array([[-8.5070587e37, 8.5070587e37, 0.0, 0.0, 0.0]], np.float32))
    got = xl.sparse_categorical_cross_entropy(array(np.array([0])), z5, from_logits=True,
                                              label_smoothing=0.1)
    np.testing.assert_allclose(float(got), 1.616341146533012e38, rtol=1e-6)
    # pos_weight * |logit| beyond float32's maximum is inf per element (the documented limit:
    # binary CE is elementwise, computed in the input's dtype), never NaN.
    logits = array(np.array([-2e38, 0.0], np.float32))
    targets = array(np.array([1.0, 0.0], np.float32))
    items = xl.binary_cross_entropy(targets, logits, from_logits=True,
                                    pos_weight=array(np.float32(3.0)), reduction="none")
    assert np.isposinf(np.asarray(items)[0]) and np.asarray(items)[1] == np.float32(np.log(2))


# ---- TensorFlow's eager losses run as one graph once a call repeats (compiled_when_hot) ----

@pytest.mark.parametrize("name, make", [
    ("sparse", lambda z: xtf.sparse_categorical_cross_entropy(tf.constant([0, 2, 1, 1]), z, from_logits=True,
                                                              label_smoothing=0.1)),
    ("categorical", lambda z: xtf.categorical_cross_entropy(tf.gather(tf.eye(3), tf.constant([0, 2, 1, 1])),
                                                            z, from_logits=True)),
    ("binary", lambda z: xtf.binary_cross_entropy(tf.cast(z > 0, tf.float32), z, from_logits=True)),
])
def test_tf_losses_equal_eager_values_and_gradients_once_compiled(name, make):
    z = tf.constant(np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32))
    results = []
    for _ in range(6):  # calls 4 to 6 run the compiled graph
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = make(z)
        results.append((float(loss), tape.gradient(loss, z).numpy()))
    for value, grad in results[3:]:
        assert value == pytest.approx(results[0][0], rel=1e-6)
        np.testing.assert_allclose(grad, results[0][1], rtol=1e-6, atol=1e-7)


def test_tf_compiled_graphs_keep_each_calls_options_and_shapes():
    """A graph takes the call's tensors alone, its Python options fixed when traced: another
    option, or (beyond 8 graphs, with lengths relaxed) another shape, must not reuse a stale one."""
    rng = np.random.default_rng(1)
    for rows in range(1, 12):  # from the ninth shape on, graphs with relaxed lengths
        z = tf.constant(rng.normal(size=(rows, 3)).astype(np.float32))
        labels = tf.constant(rng.integers(0, 3, rows))
        for smoothing in (0.0, 0.2):
            expected = _numpy_sparse(labels.numpy(), z.numpy(), smoothing)
            for _ in range(5):  # calls 4 and 5 from the graph
                got = xtf.sparse_categorical_cross_entropy(labels, z, from_logits=True,
                                                           label_smoothing=smoothing)
                assert float(got) == pytest.approx(expected, rel=1e-5), (rows, smoothing)


def test_tf_second_derivative_through_a_relaxed_graph_by_the_documented_jacobian():
    """Once the batch length is unknown, tape.jacobian's vectorizer fails at the loss's tf.cond
    (as for any tf.function with a None batch); the module docstring's workaround,
    experimental_use_pfor=False, gives the Hessian of tf.nn's cross-entropy."""
    for rows in range(1, 10):  # 9 signatures: the next graph has relaxed lengths
        for _ in range(4):
            xtf.categorical_cross_entropy(tf.fill((rows, 4), 0.25), tf.zeros((rows, 4)), from_logits=True)
    t = tf.nn.softmax(tf.random.stateless_normal((20, 4), seed=(1, 2)))
    z = tf.random.stateless_normal((20, 4), seed=(3, 4))

    def hessian(loss):
        with tf.GradientTape(persistent=True) as outer:
            outer.watch(z)
            with tf.GradientTape() as inner:
                inner.watch(z)
                value = loss()
            grad = inner.gradient(value, z)
        return outer.jacobian(grad, z, experimental_use_pfor=False).numpy()

    expected = hessian(lambda: tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(t, z)))
    for _ in range(5):  # calls 4 and 5 from the relaxed graph
        got = hessian(lambda: xtf.categorical_cross_entropy(t, z, from_logits=True))
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)


def _numpy_sparse(labels, z, smoothing):
    log_q = z - z.max(-1, keepdims=True)
    log_q = log_q - np.log(np.exp(log_q).sum(-1, keepdims=True))
    target = np.eye(z.shape[-1])[labels] * (1 - smoothing) + smoothing / z.shape[-1]
    return float(-(target * log_q).sum(-1).mean())


def test_tf_bad_labels_raise_the_named_error_once_compiled():
    z = tf.zeros((2, 3))
    for _ in range(4):
        xtf.sparse_categorical_cross_entropy(tf.constant([0, 1]), z, from_logits=True)
    with pytest.raises(ValueError, match=r"^labels must lie in \[0, 3\)"):
        xtf.sparse_categorical_cross_entropy(tf.constant([0, 3]), z, from_logits=True)
    with pytest.raises(ValueError, match="^y_pred"):
        xtf.sparse_categorical_cross_entropy(tf.constant([0, 1]), z + np.nan, from_logits=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_categorical_from_logits_spread_beyond_the_dtype_max_is_zero_not_nan(backend):
    xl, array = BACKENDS[backend]
    for dtype, big in [(np.float32, 2e38), (np.float64, 1e308)]:
        got = xl.categorical_cross_entropy(array(np.array([[1, 0]], dtype)),
                                           array(np.array([[big, -big]], dtype)), from_logits=True)
        assert float(got) == 0.0


def test_tf_binary_losses_keep_subnormal_probabilities():
    """tf.clip_by_value flushes subnormals on the CPU: -log 1e-310 is 713.80, not inf."""
    for fn in (xtf.binary_cross_entropy, xtf.binary_focal_cross_entropy):
        kwargs = {} if fn is xtf.binary_cross_entropy else {"gamma": 0.0}
        for dtype, q, expected in [(tf.float64, 1e-310, 713.8013788281542), (tf.float32, 1e-40, 92.1034088)]:
            got = fn(tf.constant([1.0], dtype), tf.constant([q], dtype), **kwargs)
            assert float(got) == pytest.approx(expected, rel=1e-6), fn.__name__


# ---- weighted means whose sums pass float32's maximum -------------------------------------

def _grad(backend, fn, z):
    """d fn(z) / dz in the backend (NumPy: None)."""
    if backend == "torch":
        zt = torch.tensor(z, requires_grad=True)
        out = fn(zt)
        out.backward()
        return float(out), zt.grad.numpy()
    if backend == "tensorflow":
        zt = tf.constant(z)
        with tf.GradientTape() as tape:
            tape.watch(zt)
            out = fn(zt)
        return float(out), tape.gradient(out, zt).numpy()
    return float(fn(z)), None


def _weighted_mean_reference(labels, z, w, eps):
    """Weighted sparse CE from logits in float64 and its gradient, written out."""
    z, w = z.astype(np.float64), w.astype(np.float64)
    n, k = z.shape
    log_q = z - z.max(-1, keepdims=True)
    log_q -= np.log(np.exp(log_q).sum(-1, keepdims=True))
    w_y, onehot = w[labels], np.eye(k)[labels]
    total = (1 - eps) * -(w_y * log_q[np.arange(n), labels]).sum() - eps / k * (log_q @ w).sum()
    q = np.exp(log_q)
    grad = (1 - eps) * w_y[:, None] * (q - onehot) + eps / k * (w.sum() * q - w)
    return total / w_y.sum(), grad / w_y.sum()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_weighted_mean_with_huge_class_weights(backend, eps):
    """1e35 float32 class weights over 10,000 items: their sum, the mean's denominator, passes
    float32's maximum (torch and TensorFlow gave 0 and a zero gradient); the mean does not."""
    xl, array = BACKENDS[backend]
    rng = np.random.default_rng(0)
    z = (rng.normal(size=(10_000, 5)) * 2).astype(np.float32)
    labels = rng.integers(0, 5, 10_000)
    w = (rng.uniform(0.5, 2, 5) * 1e35).astype(np.float32)
    expected, expected_grad = _weighted_mean_reference(labels, z, w, eps)
    value, grad = _grad(backend, lambda t: xl.sparse_categorical_cross_entropy(
        array(labels), t, from_logits=True, label_smoothing=eps, class_weight=array(w)), z)
    assert value == pytest.approx(expected, rel=1e-5)
    if grad is not None:
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-5 * abs(expected_grad).max())
    # 'sum' keeps the true weights: its sum passes float32's maximum
    total = xl.sparse_categorical_cross_entropy(array(labels), array(z), from_logits=True,
                                                class_weight=array(w), reduction="sum")
    assert np.isposinf(float(total))
    # all-zero weights: a mean over no weight is 0, never NaN
    zero = xl.sparse_categorical_cross_entropy(array(labels), array(z), from_logits=True,
                                               class_weight=array(np.zeros(5, np.float32)))
    assert float(zero) == 0.0


def test_torch_weighted_mean_with_huge_class_weights_differentiable_weights():
    """The differentiable path (gradients to class_weight too): the scale is a constant factor."""
    rng = np.random.default_rng(1)
    z = torch.tensor((rng.normal(size=(10_000, 5)) * 2).astype(np.float32), requires_grad=True)
    labels = torch.tensor(rng.integers(0, 5, 10_000))
    for scale in (1e35, 1.0):
        w = torch.tensor((rng.uniform(0.5, 2, 5) * scale).astype(np.float32), requires_grad=True)
        loss = xt.sparse_categorical_cross_entropy(labels, z, from_logits=True, class_weight=w)
        loss.backward()
        z64, w64 = z.detach().double().requires_grad_(), w.detach().double().requires_grad_()
        w_y = w64[labels]
        ref = (w_y * -torch.log_softmax(z64, -1)[torch.arange(len(labels)), labels]).sum() / w_y.sum()
        ref.backward()
        assert float(loss) == pytest.approx(float(ref), rel=1e-5)
        for ours, exact in ((z.grad, z64.grad), (w.grad, w64.grad)):
            np.testing.assert_allclose(ours.numpy(), exact.numpy(), rtol=1e-4, atol=1e-5 * float(exact.abs().max()))
        z.grad = None


# ---- label smoothing from logits whose spread passes the dtype's maximum -----------------

def _smoothing_cases(xl, array):
    labels, eps = np.array([0, 1]), 0.1
    onehot = np.eye(2, dtype=np.float32)[labels]
    weight = np.array([1.0, 2.0], np.float32)
    yield "sparse", lambda z: xl.sparse_categorical_cross_entropy(array(labels), z, from_logits=True,
                                                                  label_smoothing=eps)
    yield "sparse-weighted", lambda z: xl.sparse_categorical_cross_entropy(
        array(labels), z, from_logits=True, label_smoothing=eps, class_weight=array(weight))
    yield "sparse-none", lambda z: xl.sparse_categorical_cross_entropy(
        array(labels), z, from_logits=True, label_smoothing=eps, reduction="none")
    yield "categorical", lambda z: xl.categorical_cross_entropy(array(onehot), z, from_logits=True,
                                                                label_smoothing=eps)
    yield "focal", lambda z: xl.categorical_focal_cross_entropy(array(onehot), z, from_logits=True,
                                                                label_smoothing=eps)


SMOOTHING_CASES = [name for name, _ in _smoothing_cases(xn, np.asarray)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", SMOOTHING_CASES)
def test_label_smoothing_from_logits_spread_beyond_the_dtype_max(backend, case):
    """float32 logits [3e38, -3e38]: log q of the second class is -6e38, -inf in float32, though
    the smoothed loss, eps/K of it, is finite (every backend gave inf). Values against float64,
    the gradient against softmax - ((1 - eps) onehot + eps/K)."""
    xl, array = BACKENDS[backend]
    z = np.array([[3e38, -3e38], [1.0, 2.5]], np.float32)
    fn = dict(_smoothing_cases(xl, array))[case]
    expected = np.asarray(dict(_smoothing_cases(xn, np.asarray))[case](z.astype(np.float64)))
    assert np.isfinite(expected).all()
    if backend == "numpy":
        got, grad = np.asarray(fn(z)), None
    elif backend == "torch":
        zt = torch.tensor(z, requires_grad=True)
        out = fn(zt)
        out.sum().backward()
        got, grad = out.detach().numpy(), zt.grad.numpy()
    else:
        zt = tf.constant(z)
        with tf.GradientTape() as tape:
            tape.watch(zt)
            out = fn(zt)
        got, grad = out.numpy(), tape.gradient(out, zt).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    if grad is not None and case in ("sparse", "categorical", "sparse-none"):
        q = np.exp(xn.log_softmax(z.astype(np.float64)))
        target = 0.9 * np.eye(2)[[0, 1]] + 0.1 / 2
        np.testing.assert_allclose(grad, (q - target) / (1 if case == "sparse-none" else 2), rtol=1e-6, atol=1e-7)


# ---- fuzz findings (tests/test_fuzz.py, /work/helpers/fuzz_findings.md ids) ----------------

@pytest.mark.parametrize("backend", ["numpy", "torch"])  # TF flushes the subnormal weights themselves
def test_f1b_tiny_float64_class_weights_with_float32_logits(backend):
    """5e-324 float64 weights were 0 once cast to float32: the mean over 'no weight' gave 0."""
    xl, array = BACKENDS[backend]
    got = xl.sparse_categorical_cross_entropy(array(np.array([0])), array(np.zeros((1, 2), np.float32)),
                                              from_logits=True, class_weight=array(np.array([5e-324, 5e-324])))
    assert float(got) == pytest.approx(np.log(2), rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_f16_class_weights_spanning_more_than_the_dtype_range(backend):
    """The mean's scale is set by the kept labels' weights: scaled by the largest weight of all,
    1e-300 underflowed to 0 and the mean of one item of that class was 0."""
    xl, array = BACKENDS[backend]
    w = array(np.array([1e30, 1e-300]))
    for labels in ([1], [1, -100]):
        got = xl.sparse_categorical_cross_entropy(array(np.array(labels)), array(np.zeros((len(labels), 2))),
                                                  from_logits=True, ignore_index=-100, class_weight=w)
        assert float(got) == pytest.approx(np.log(2), rel=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_f3_zero_class_weights_at_a_spread_beyond_the_dtype_max(backend):
    """Smoothing, weights 0 and log q = -inf (float32): 0 * inf gave NaN in torch and TF."""
    xl, array = BACKENDS[backend]
    got = xl.sparse_categorical_cross_entropy(
        array(np.array([0])), array(np.array([[3.38953e38, -3.38953e38]], np.float32)), from_logits=True,
        label_smoothing=0.1, class_weight=array(np.array([0.0, 0.0])), reduction="sum")
    assert float(got) == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_f6_zero_pos_weight_times_log_zero_is_zero(backend):
    """Binary CE on probabilities: pos_weight 0 times the smoothed target's -log 0 gave NaN."""
    xl, array = BACKENDS[backend]
    got = xl.binary_cross_entropy(array(np.array([0.0], np.float32)), array(np.array([0.0], np.float32)),
                                  label_smoothing=0.1, pos_weight=array(np.array(0.0)))
    assert float(got) == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_f2_building_blocks_of_no_classes(backend):
    """NumPy raised a raw reduction error; torch and TF give the log of an empty sum."""
    xl, array = BACKENDS[backend]
    np.testing.assert_array_equal(np.asarray(xl.logsumexp(array(np.zeros((3, 0))))), np.full(3, -np.inf))
    assert np.asarray(xl.softmax(array(np.zeros((3, 0))))).shape == (3, 0)
    assert np.asarray(xl.log_softmax(array(np.zeros((3, 0))))).shape == (3, 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_f11_f8_gaussian_nll_at_the_dtype_extremes(backend):
    """(y - mean)^2 overflowed before the division by the variance (F11); TF refused a subnormal
    variance (its comparison flushes it) and its log (F8)."""
    xl, array = BACKENDS[backend]
    got = xl.gaussian_nll(array(np.array(0.0)), array(np.array(1e200)), array(np.array(1e300)), full=False)
    assert float(got) == pytest.approx(5e99 + 0.5 * np.log(1e300), rel=1e-12)
    f32 = [array(np.array(v, np.float32)) for v in (0.0, 1.69e38, 1.69e38)]
    assert float(xl.gaussian_nll(*f32, full=False)) == pytest.approx(0.5 * 1.69e38, rel=1e-6)
    tiny = xl.gaussian_nll(array(np.array([1.0], np.float32)), array(np.array([0.0], np.float32)),
                           array(np.array(1e-45, np.float32)))
    assert float(tiny) == np.inf


def test_value_checks_inside_a_suspended_generator_as_documented():
    """No per-generator context in Python: the block's setting leaks to the caller while the
    generator is suspended, and its end undoes the caller's change; a copied context isolates."""
    import contextvars

    def checks_off_around_yield():
        with xentlib.value_checks(False):
            yield value_checks_enabled()

    gen = checks_off_around_yield()
    try:
        assert next(gen) is False
        assert not value_checks_enabled()  # leaked to the caller while suspended
        xentlib.value_checks(False)  # the caller's own change ...
        with pytest.raises(StopIteration):
            next(gen)
        assert value_checks_enabled()  # ... undone by the block's end (the setting from before it)
    finally:
        xentlib.value_checks(True)

    ctx, gen = contextvars.copy_context(), checks_off_around_yield()
    assert ctx.run(next, gen) is False
    assert value_checks_enabled()  # the generator's own context: nothing leaks
    with pytest.raises(StopIteration):
        ctx.run(next, gen)
    assert value_checks_enabled()


def test_f15_tf_sparse_mean_of_finite_items_whose_float32_sum_overflows():
    """Items 1.69e38 and 3.39e38 (float32): their float32 sum overflowed in TF's unweighted path."""
    z = np.array([[-1.69477e38, 0], [-1.69477e38, 1.69477e38]], np.float32)
    for _ in range(5):  # eager, then the compiled graph
        got = xtf.sparse_categorical_cross_entropy(tf.constant([0, 0]), tf.constant(z), from_logits=True)
        assert float(got) == pytest.approx(2.542155e38, rel=1e-6)


def test_f13_tf_repeated_bad_call_keeps_the_named_message():
    """A call that fails a static check is not counted towards compiling it: AutoGraph would put
    'in user code:' before the named message from the fourth identical call on."""
    for _ in range(5):
        with pytest.raises(ValueError, match="^y_pred is a scalar"):
            xtf.categorical_cross_entropy(tf.constant(0.5), tf.constant(0.5), from_logits=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_f17_float64_mean_of_items_whose_sum_overflows(backend):
    """Two items of 1e308 (float64): their sum is inf, their mean is not."""
    xl, array = BACKENDS[backend]
    z = array(np.array([[-1e308, 0.0], [-1e308, 0.0]]))
    for kwargs in ({}, {"class_weight": array(np.array([1.0, 1.0]))}):
        got = xl.sparse_categorical_cross_entropy(array(np.array([0, 0])), z, from_logits=True, **kwargs)
        assert float(got) == pytest.approx(1e308, rel=1e-12)
    got = xl.binary_cross_entropy(array(np.zeros(2)), array(np.array([1e308, 1.7e308])), from_logits=True)
    assert float(got) == pytest.approx(1.35e308, rel=1e-12)
    assert float(xl.mean_squared_error(array(np.zeros(2)), array(np.array([1e154, 1e154])))) == pytest.approx(1e308)


@pytest.mark.parametrize("backend", BACKENDS)
def test_f19_scaled_class_weights_stay_within_the_dtype(backend):
    """Scaled by the kept label's weight 1e-300, the weight 1e30 of a class without items passed
    float64's maximum: TF gave NaN (inf x 0) where the smoothed mean is inf (beyond float64)."""
    xl, array = BACKENDS[backend]
    got = xl.sparse_categorical_cross_entropy(array(np.array([0])), array(np.zeros((1, 2))), from_logits=True,
                                              label_smoothing=0.1, class_weight=array(np.array([1e-300, 1e30])))
    assert float(got) == np.inf


@pytest.mark.parametrize("backend", BACKENDS)
def test_f11b_f8b_gaussian_nll_halved_before_the_square_and_y_equal_to_mean(backend):
    """(3e19 / sqrt 2)^2 passed float32's max before the halving (F11b); TF's flushed subnormal
    variance with y = mean gave 0 / 0 (F8b)."""
    xl, array = BACKENDS[backend]
    f32 = [array(np.array(v, np.float32)) for v in (0.0, 3e19, 2.0)]
    assert float(xl.gaussian_nll(*f32, full=False)) == pytest.approx(2.25e38, rel=1e-6)
    same = [array(np.array(v, np.float32)) for v in (0.0, 0.0, 1e-45)]
    assert float(xl.gaussian_nll(*same, full=False)) == pytest.approx(0.5 * np.log(np.float32(1e-45)), rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_f20_zero_class_weight_at_an_infinite_nll(backend):
    """float32 logits whose label's nll passes float32's max, with that class's weight 0: torch
    gave NaN (0 x inf) where the item adds nothing."""
    xl, array = BACKENDS[backend]
    z = array(np.array([[-3.38953e38, 3.38953e38]], np.float32))
    for reduction in ("sum", "none"):
        got = xl.sparse_categorical_cross_entropy(array(np.array([0])), z, from_logits=True,
                                                  class_weight=array(np.array([0.0, 1.0])), reduction=reduction)
        assert np.all(np.asarray(got) == 0.0)


# ---- second review (defects in the first round's fixes) ---------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", ["expected_calibration_error", "maximum_calibration_error", "brier_score"])
def test_labels_shape_error_names_the_predictions_argument(backend, fn):
    """The calibration metrics call their predictions ``probs``: the message said y_pred."""
    xl, array = BACKENDS[backend]
    with pytest.raises(ValueError, match=r"^labels has shape \(2,\); expected \(1,\) \(probs's shape"):
        getattr(xl, fn)(array(np.array([0, 1])), array(np.array([[0.6, 0.4]])))


@pytest.mark.parametrize("fn", ["expected_calibration_error", "maximum_calibration_error"])
def test_tf_calibration_errors_in_a_tf_function(fn):
    """They counted the bins with .numpy(): an AttributeError in a graph. Now one tf.numpy_function
    (checked: the label assertion still fires)."""
    labels, probs = np.array([0, 1, 1, 0]), np.array([[0.95, 0.05], [0.9, 0.1], [0.4, 0.6], [0.35, 0.65]])
    expected = getattr(xn, fn)(labels, probs, n_bins=3)
    graph = tf.function(lambda y, p: getattr(xtf, fn)(y, p, n_bins=3),
                        input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, None], tf.float64)])
    assert float(graph(tf.constant(labels), tf.constant(probs))) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(tf.errors.InvalidArgumentError, match="labels must lie in"):
        graph(tf.constant([5, 0, 0, 0], tf.int64), tf.constant(probs))


@pytest.mark.parametrize("dtypes", [("float32", "float64"), ("float64", "float32"), ("float32", "float16"),
                                    ("float16", "bfloat16")])
@pytest.mark.parametrize("requires_grad", [False, True])
def test_torch_categorical_from_logits_with_mixed_dtypes(dtypes, requires_grad):
    """Targets and logits of different dtypes: torch.linalg.vecdot refused them (RuntimeError)."""
    y = np.array([[0.25, 0.75], [1.0, 0.0]])
    z = np.array([[1.0, 2.0], [-3.0, 0.5]])
    target = torch.tensor(y, dtype=getattr(torch, dtypes[0]))
    logits = torch.tensor(z, dtype=getattr(torch, dtypes[1]), requires_grad=requires_grad)
    got = xt.categorical_cross_entropy(target, logits, from_logits=True)
    expected = xn.categorical_cross_entropy(target.double().numpy(), logits.detach().double().numpy(),
                                            from_logits=True)
    assert got.dtype == (torch.float64 if dtypes[1] == "float64" else torch.float32)
    assert float(got) == pytest.approx(float(expected), rel=1e-3 if "16" in str(dtypes) else 1e-6)
    if requires_grad:
        got.backward()
        assert logits.grad.dtype == logits.dtype


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("from_logits", [True, False])
def test_scaled_class_weights_stay_within_the_compute_dtype(backend, from_logits):
    """float64 weights [1e-30, 1e30] with float32 predictions: the mean's scale (set by the label's
    weight) was bounded by float64's range, so 1e30 x 2^99 became inf in float32 and TF's
    smoothing term 0 x inf = NaN. The exact mean, 0.9 log 2 + 0.05 (1 + 1e60) log 2, is inf in float32."""
    xl, array = BACKENDS[backend]
    y_pred = np.array([[0.0, 0.0]] if from_logits else [[0.5, 0.5]], np.float32)
    got = xl.sparse_categorical_cross_entropy(array(np.array([0])), array(y_pred), from_logits=from_logits,
                                              label_smoothing=0.1, class_weight=array(np.array([1e-30, 1e30])))
    assert float(got) == np.inf
    # within float32's range the mean is finite: 0.9 log 2 + 0.05 (1 + 1e30) log 2
    got = xl.sparse_categorical_cross_entropy(array(np.array([0])), array(y_pred), from_logits=from_logits,
                                              label_smoothing=0.1, class_weight=array(np.array([1e-15, 1e15])))
    assert float(got) == pytest.approx(0.9 * np.log(2) + 0.05 * (1 + 1e30) * np.log(2), rel=1e-5)


def test_tf_xla_marks_out_of_range_probabilities_with_nan():
    """Under XLA the assertions vanish: sparse CE of a probability 1.5 returned -0.405. Now the
    item is NaN (and so its mean), as for a bad label; valid items keep their value."""
    def compiled(fn, **kw):
        return tf.function(lambda a, b: getattr(xtf, fn)(a, b, **kw), jit_compile=True)

    sparse = compiled("sparse_categorical_cross_entropy", reduction="none")
    got = sparse(tf.constant([0, 1]), tf.constant([[1.5, -0.5], [0.5, 0.5]])).numpy()
    assert np.isnan(got[0]) and got[1] == pytest.approx(np.log(2))
    assert np.isnan(compiled("sparse_categorical_cross_entropy")(tf.constant([0]), tf.constant([[1.5, -0.5]])))
    binary = compiled("binary_cross_entropy", reduction="none")(tf.constant([1.0, 2.0]), tf.constant([0.5, 0.5]))
    assert binary.numpy()[0] == pytest.approx(np.log(2)) and np.isnan(binary.numpy()[1])
    targets = compiled("categorical_cross_entropy", from_logits=True, reduction="none")(
        tf.constant([[1.5, -0.5], [1.0, 0.0]]), tf.constant([[0.5, 0.5], [0.0, 0.0]]))
    assert np.isnan(targets.numpy()[0]) and targets.numpy()[1] == pytest.approx(np.log(2))


def test_tf_categorical_focal_per_class_alpha_with_an_unknown_class_count():
    """A None class dimension made the per-class alpha look like a binary one: a false TypeError."""
    spec = tf.TensorSpec([None, None])
    graph = tf.function(lambda y, z: xtf.categorical_focal_cross_entropy(y, z, alpha=[0.25, 0.75], from_logits=True),
                        input_signature=[spec, spec])
    y, z = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32), np.array([[1.0, 2.0], [0.5, -1.0]], np.float32)
    expected = xn.categorical_focal_cross_entropy(y, z, alpha=[0.25, 0.75], from_logits=True)
    assert float(graph(tf.constant(y), tf.constant(z))) == pytest.approx(float(expected), rel=1e-6)


def test_tf_linear_ce_with_an_unknown_vocabulary_names_the_fix():
    """A None V in the input_signature raised a raw TypeError (None < 1) in the front door."""
    graph = tf.function(lambda h, w, y: xtf.linear_cross_entropy(h, w, y),
                        input_signature=[tf.TensorSpec([None, 4]), tf.TensorSpec([None, 4]),
                                         tf.TensorSpec([None], tf.int64)])
    with pytest.raises(ValueError, match=r"weight must have a known shape \(V, d\) in a graph; got \(None, 4\)"):
        graph(tf.ones([2, 4]), tf.ones([3, 4]), tf.constant([0, 1], tf.int64))


def test_torch_vmap_of_the_losses_without_switching_the_checks_off():
    """vmap refused the value checks' .item() ('vmap: ... calling .item()'): they are skipped there."""
    assert value_checks_enabled()
    rng = np.random.default_rng(3)
    z = torch.tensor(rng.normal(size=(4, 3, 5)))
    labels = torch.tensor(rng.integers(0, 5, (4, 3)))
    soft = torch.softmax(torch.tensor(rng.normal(size=(4, 3, 5))), -1)
    cases = {
        "sparse": (lambda z, y: xt.sparse_categorical_cross_entropy(y, z, from_logits=True, label_smoothing=0.1),
                   labels),
        "sparse probabilities": (lambda z, y: xt.sparse_categorical_cross_entropy(y, torch.softmax(z, -1)), labels),
        "categorical": (lambda z, t: xt.categorical_cross_entropy(t, z, from_logits=True), soft),
        "binary": (lambda z, t: xt.binary_cross_entropy(t, z, from_logits=True), soft),
        "cross_entropy": (lambda z, t: xt.cross_entropy(t, torch.softmax(z, -1)).sum(), soft),
        "focal": (lambda z, t: xt.categorical_focal_cross_entropy(t, z, from_logits=True), soft),
        "perplexity": (lambda z, y: xt.perplexity(y, z, ignore_index=-1), labels),
    }
    for name, (fn, other) in cases.items():
        batched = torch.func.vmap(fn)(z, other)
        one_by_one = torch.stack([fn(z[i], other[i]) for i in range(len(z))])
        torch.testing.assert_close(batched, one_by_one, msg=name)
        grads = torch.func.vmap(torch.func.grad(fn))(z, other)
        assert grads.shape == z.shape and bool(torch.isfinite(grads).all()), name
    with pytest.raises(ValueError, match="^labels must lie in"):  # outside vmap: checked
        xt.sparse_categorical_cross_entropy(labels[0] + 5, z[0], from_logits=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_f14_f28_float64_logits_near_the_max_finite_where_the_loss_is(backend):
    """float64 logits near its max: a gap z_c - max beyond the max (-log q = inf), or the class sum
    of -log q, overflowed: inf where the loss is finite (fuzz F14, F28; review: smoothing)."""
    xl, array = BACKENDS[backend]
    z = array(np.array([[1.7e308, -1.7e308, 0.0]]))
    got = xl.categorical_cross_entropy(array(np.array([[1.0, 0.0, 0.0]])), z, from_logits=True, label_smoothing=0.1)
    assert float(got) == pytest.approx(0.1 / 3 * 1.7e308 * 3, rel=1e-12)  # (0 + 3.4e308 + 1.7e308) eps / 3
    got = xl.categorical_cross_entropy(array(np.array([[0.5, 0.5, 0.0]])), z, from_logits=True)
    assert float(got) == pytest.approx(1.7e308, rel=1e-12)  # 0.5 x 3.4e308
    z14 = array(np.array([[0.0, -8.98846567e307, 8.98846567e307]]))
    got = xl.sparse_categorical_cross_entropy(array(np.array([0])), z14, from_logits=True, label_smoothing=0.1)
    assert float(got) == pytest.approx(8.98846567e307, rel=1e-12)
    got = xl.sparse_categorical_cross_entropy(array(np.array([0, 1])), array(np.array([[1.7e308, -1.7e308, 0.0],
                                                                                     [0.0, 0.0, 1.0]])),
                                              from_logits=True, label_smoothing=0.1,
                                              class_weight=array(np.array([1.0, 2.0, 3.0])), reduction="none")
    # row 0: t = eps w / 3 + 0.9 [c = 0]; sum_c t_c (lse - z_c) = (0.2 / 3) 3.4e308 + 0.1 x 1.7e308
    assert np.asarray(got)[0] == pytest.approx(0.2 / 3 * 1.7e308 * 2 + 0.1 * 1.7e308, rel=1e-12)
    assert np.isfinite(np.asarray(got)[1])
    beyond = xl.categorical_cross_entropy(array(np.array([[0.0, 1.0, 0.0]])), z, from_logits=True)
    assert float(beyond) == np.inf  # -log q_1 = 3.4e308: really beyond the max


@pytest.mark.parametrize("backend", BACKENDS)
def test_f9_perplexity_of_no_tokens_is_a_named_error(backend):
    """No labels at all gave exp(0) = 1.0 (the mean over no item is 0 for the losses, but a
    perplexity of 1 would claim a perfect model); with ignore_index it was already an error."""
    xl, array = BACKENDS[backend]
    with pytest.raises(ValueError, match="^labels: holds no item"):
        xl.perplexity(array(np.zeros(0, np.int64)), array(np.zeros((0, 3))))


def test_f10_tf_conditional_entropy_of_a_bfloat16_table_with_a_tiny_entry():
    """p / p_x below the smallest normal was flushed to 0 by TF's CPU kernels: log 0, an entropy
    of inf (expected 0.5 as torch; bfloat16 rounds 0.5009 to 0.5); now a (log a - log b)."""
    import ml_dtypes
    p_xy = np.array([[0.800781, 0.200195, 1.17549e-38]], ml_dtypes.bfloat16)
    for fn, expected in (("conditional_entropy", 0.5), ("mutual_information", 0.0)):
        got = float(tf.cast(getattr(xtf, fn)(tf.constant(p_xy)), tf.float32))
        assert got == pytest.approx(expected, abs=0.01), fn


def test_f7_f6c_tf_subnormal_probabilities_and_weights_are_not_zero():
    """TF's CPU kernels read a subnormal as 0 (x == 0 is True, x * inf is NaN): p = 1e-45 where
    q = 0 gave -0.0, a subnormal target or pos_weight lost its -log 0 = inf. The zero tests read
    the bits; an infinite term keeps its sign (fuzz F7, F6c)."""
    import ml_dtypes
    f32 = np.float32
    cases = [("cross_entropy", (np.array([1, 1e-45], f32), np.array([1, 0], f32)), {}),
             ("kl_divergence", (np.array([1, 1e-45], f32), np.array([1, 0], f32)), {}),
             ("categorical_cross_entropy", (np.array([[1, 1e-45]], f32), np.array([[1, 0]], f32)), {}),
             ("categorical_focal_cross_entropy", (np.array([[1, 9.18e-41]], ml_dtypes.bfloat16),
                                                  np.array([[1, 0]], ml_dtypes.bfloat16)), dict(gamma=0.0)),
             ("binary_cross_entropy", (np.array([5e-324]), np.array([0.0])), {}),
             ("binary_cross_entropy", (np.array([0.0]), np.array([0.0])), dict(label_smoothing=0.1,
                                                                            pos_weight=np.array(5e-324)))]
    for fn, arrays, kwargs in cases:
        assert float(getattr(xtf, fn)(*(tf.constant(a) for a in arrays), **kwargs)) == np.inf, fn
    got = xtf.cross_entropy(tf.constant(np.array([0.5, 0.5])), tf.constant(np.array([1.0, 1e-310])))  # finite
    assert float(got) == pytest.approx(float(xn.cross_entropy(np.array([0.5, 0.5]), np.array([1.0, 1e-310]))))


@pytest.mark.parametrize("backend", BACKENDS)
def test_f23_mean_over_no_kept_weight_is_zero_even_of_infinite_items(backend):
    """Every label's weight 0, smoothing puts a weight on a class of probability 0: the items are
    inf times... nothing kept; torch's float64 fall-back for an overflowing sum divided by 0: inf."""
    xl, array = BACKENDS[backend]
    got = xl.sparse_categorical_cross_entropy(array(np.array([0])), array(np.array([[1.0, 0.0]], np.float32)),
                                              label_smoothing=0.1, class_weight=array(np.array([0.0, 1.0])))
    assert float(got) == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_f26_a_scaled_class_weight_never_becomes_zero(backend):
    """The mean's power-of-two scale halved a 5e-324 weight to 0 (float64; TF flushes subnormals
    too), so its class's -log 0 added 0, not inf (fuzz F26); a non-zero weight stays non-zero."""
    xl, array = BACKENDS[backend]
    for weight, label in (([5e-324, 1.0], 1), ([1e-300, 1e30], 1), ([3.0, 5e-324], 0)):
        got = xl.sparse_categorical_cross_entropy(array(np.array([label])), array(np.array([[0.0, 1.0]])),
                                                  label_smoothing=0.1, class_weight=array(np.array(weight)))
        assert float(got) == np.inf, weight


@pytest.mark.parametrize("backend", BACKENDS)
def test_full_smoothing_at_an_infinite_nll_is_not_nan(backend):
    """label_smoothing=1 gives the label's nll weight 0: 0 x inf (float64 logits beyond the max
    apart) was NaN in torch and TF, now 0 and the uniform term alone."""
    xl, array = BACKENDS[backend]
    z = array(np.array([[1.7e308, -1.7e308, 1.7e308]]))
    got = xl.sparse_categorical_cross_entropy(array(np.array([1])), z, from_logits=True, label_smoothing=1.0)
    assert float(got) == pytest.approx(1.7e308 / 3 * 2, rel=1e-12)  # (log 2 + 3.4e308 + log 2) / 3


def test_tf_graph_smoothing_at_the_smallest_normal_times_log_zero_is_inf():
    """In a tf.function Grappler folded eps / K (eps = 1.2e-38) into a subnormal, flushed to 0: 0 x
    inf = NaN from the fourth call on (the hot path), where eager gave inf."""
    args = tf.constant([1]), tf.constant(np.array([[1.0, 0.0]], np.float16))
    got = [float(xtf.sparse_categorical_cross_entropy(*args, label_smoothing=1.1754943508222875e-38))
           for _ in range(5)]
    assert got == [np.inf] * 5


def test_f33_tf_mixed_dtypes_keep_a_16_bit_subnormal():
    """bfloat16 p = 9.2e-41 with float64 q: TF's cast to float64 flushed it, -0.0 where q = 0 (inf)."""
    import ml_dtypes
    p, q = np.array([1, 9.18355e-41], ml_dtypes.bfloat16), np.array([1.0, 0.0])
    for fn in ("cross_entropy", "kl_divergence"):
        assert float(getattr(xtf, fn)(tf.constant(p), tf.constant(q))) == np.inf, fn
    tiny_q = np.array([1, 9.18355e-41], ml_dtypes.bfloat16)  # a subnormal q is finite: -0.5 log 9.2e-41
    got = xtf.cross_entropy(tf.constant(np.array([0.5, 0.5])), tf.constant(tiny_q))
    assert float(got) == pytest.approx(-0.5 * np.log(9.18355e-41), rel=1e-3)


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_f29_f30_calibration_and_temperature_take_bfloat16(backend):
    """The host copy of a bfloat16 tensor: torch's .numpy() raised a raw TypeError (ECE, MCE,
    fit_temperature); TF's bfloat16 array was refused by the NumPy search ('must have a
    floating-point dtype (..., bfloat16, ...); got bfloat16'). Both are read as float32."""
    xl, array = BACKENDS[backend]
    probs = np.array([[0.75, 0.25], [0.4, 0.6]], np.float32)
    as_bf16 = (lambda a: torch.tensor(a).bfloat16()) if backend == "torch" else (
        lambda a: tf.cast(tf.constant(a), tf.bfloat16))
    labels = array(np.array([0, 0]))
    for fn in ("expected_calibration_error", "maximum_calibration_error"):
        expected = float(getattr(xl, fn)(labels, array(probs)))
        assert float(getattr(xl, fn)(labels, as_bf16(probs))) == pytest.approx(expected, rel=1e-2), fn
    t = xl.fit_temperature(as_bf16(probs), labels)
    assert float(t) == pytest.approx(float(xl.fit_temperature(array(probs), labels)), rel=1e-2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_f32_width_bins_are_exactly_right_closed(backend):
    """0.33333333333333337 > 1/3 belongs to (1/3, 2/3], but its product with 3 rounds to 1.0:
    the ceil put it in (0, 1/3]. fl(1/3) < 1/3 stays in the first bin, 0.5 = 2/4 in (1/4, 1/2]."""
    xl, array = BACKENDS[backend]
    rows = np.array([[1 / 3, 2 / 9, 2 / 9, 2 / 9], [2 / 9, 0.33333333333333337, 2 / 9, 2 / 9]])
    labels = array(np.array([0, 0]))
    # row 0 right at 1/3 (bin 1: gap 2/3), row 1 wrong just above it (bin 2: gap 1/3)
    assert float(xl.expected_calibration_error(labels, array(rows), n_bins=3)) == pytest.approx(0.5)
    assert float(xl.maximum_calibration_error(labels, array(rows), n_bins=3)) == pytest.approx(2 / 3)
    halves = array(np.array([[0.5, 0.5], [0.75, 0.25]]))  # 0.5 in bin 2 of 4, 0.75 in bin 3
    assert float(xl.maximum_calibration_error(labels, halves, n_bins=4)) == pytest.approx(0.5)
    from xentlib import metrics
    assert metrics.reliability_bins([0, 0], rows, n_bins=3)[2].tolist() == [1, 1, 0]



@pytest.mark.parametrize("backend, dtype", [("numpy", "float32"), ("torch", "float32"), ("tensorflow", "float32"),
                                            ("torch", "bfloat16"), ("tensorflow", "bfloat16")])
def test_f27_gaussian_nll_where_y_minus_mean_passes_the_max(backend, dtype):
    """y = 2e38, mean = -2e38: y - mean overflowed float32 (inf) where (y - mean)^2 / (2 var) with
    var = 3e38 is 2.67e38, finite; the difference is now halved first (exact, never overflows)."""
    xl, array = BACKENDS[backend]
    values = np.array([2e38, -2e38, 3e38], np.float32)
    if dtype == "bfloat16":
        import ml_dtypes
        values = values.astype(ml_dtypes.bfloat16).astype(np.float32)  # the bfloat16 values, exactly
    y, mean, var = values.astype(np.float64)
    expected = 0.5 * ((y - mean) ** 2 / var + np.log(var))
    args = [array(np.array([v])) for v in values]
    if dtype == "bfloat16":
        args = [a.bfloat16() if backend == "torch" else tf.cast(a, tf.bfloat16) for a in args]
    for _ in range(4):  # TF: eager, then the compiled graph
        assert float(xl.gaussian_nll(*args, full=False)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_f34_torch_func_vmap_of_a_row_whose_logit_spread_passes_the_max(dtype):
    """Eager redoes such a row on the host (float32: in float64; float64: every term halved);
    under torch.func.vmap no value can be read back, and the row stayed inf where the loss is
    finite (3e38 - (-3e38) passes float32's max, half of it does not)."""
    big = float(torch.finfo(dtype).max) * 0.9
    z = torch.tensor([[big, -big], [1.0, 2.0]], dtype=dtype)
    soft = torch.tensor([[0.5, 0.5], [0.25, 0.75]], dtype=dtype)
    labels = torch.tensor([0, 1])
    cases = {
        "categorical": (lambda z, t: xt.categorical_cross_entropy(t[None], z[None], from_logits=True), soft),
        "sparse smoothed": (lambda z, y: xt.sparse_categorical_cross_entropy(
            y[None], z[None], from_logits=True, label_smoothing=0.1), labels),
    }
    for name, (fn, other) in cases.items():
        eager = torch.stack([fn(z[i], other[i]) for i in range(len(z))])
        assert bool(torch.isfinite(eager).all()), name
        torch.testing.assert_close(torch.func.vmap(fn)(z, other), eager, msg=name)
        grads = torch.func.vmap(torch.func.grad(fn))(z, other)
        torch.testing.assert_close(grads, torch.stack([torch.func.grad(fn)(z[i], other[i]) for i in range(len(z))]),
                                   msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_f35_float64_logit_spread_beyond_the_max_with_a_zero_class_weight(backend):
    """Smoothing's class sum w . log q multiplied the weight 0 by -log q = inf (a float64 logit
    spread beyond the max): NaN in torch and TF, where the halved redo (taken for inf rows
    only) gives the loss (found while fixing F34)."""
    xl, array = BACKENDS[backend]
    z = array(np.array([[7.353526654643326e304, 1.1094068996839134e308, -1.340832593099368e308]]))
    for _ in range(4):  # TF: eager, then the compiled graph
        got = xl.sparse_categorical_cross_entropy(array(np.array([1])), z, from_logits=True, label_smoothing=0.1,
                                                  class_weight=array(np.array([0.5, 2.0, 0.0])), reduction="sum")
        # 0.9 * 2 * 0 + 0.1 / 3 * (0.5 * (z_1 - z_0) + 2 * 0 + 0 * ...), z_1 the max
        assert float(got) == pytest.approx(0.1 / 3 * 0.5 * (1.1094068996839134e308 - 7.353526654643326e304),
                                           rel=1e-12)
    extreme = array(np.array([[-1.79769313e308, 1.79769313e308]]))  # fuzz F35: TF NaN even unsmoothed
    for weight, eps in (([0.0, 0.0], 0.0), ([0.0, 0.0], 0.1), ([0.0, 1.0], 0.1)):
        got = xl.sparse_categorical_cross_entropy(array(np.array([0])), extreme, from_logits=True, label_smoothing=eps,
                                                  class_weight=array(np.array(weight)), reduction="sum")
        assert float(got) == 0.0, (weight, eps)


@pytest.mark.parametrize("backend", BACKENDS)
def test_f1_f6d_weights_beyond_the_compute_dtype_are_a_named_error(backend):
    """1e300 (float64) with float32 predictions was inf once cast to float32, then inf x 0 = NaN
    (F1: sparse 'sum', F6d: binary from logits with y = 0). Such a weight is refused, naming the
    argument and the fix; sparse 'mean' rescales the weights, so there they are taken."""
    xl, array = BACKENDS[backend]
    z = array(np.array([[0.0, 0.0]], np.float32))
    huge = array(np.array([1e300, 1e300]))
    for reduction in ("sum", "none"):
        with pytest.raises(ValueError, match="^class_weight must be .* at most 3.40282e\\+38"):
            xl.sparse_categorical_cross_entropy(array(np.array([0])), z, from_logits=True, class_weight=huge,
                                                reduction=reduction)
    got = xl.sparse_categorical_cross_entropy(array(np.array([0])), z, from_logits=True, class_weight=huge)
    assert float(got) == pytest.approx(np.log(2), rel=1e-6)
    zero = array(np.array([0.0], np.float32))
    with pytest.raises(ValueError, match="^pos_weight must be .* at most 3.40282e\\+38"):
        xl.binary_cross_entropy(zero, zero, from_logits=True, pos_weight=array(np.array(1e300)))
    got = xl.binary_cross_entropy(array(np.array([0.0])), array(np.array([0.0])), from_logits=True,
                                  pos_weight=array(np.array(1e300)))  # float64: within range
    assert float(got) == pytest.approx(np.log(2), rel=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_f6b_a_positive_weight_never_becomes_zero_in_the_compute_dtype(backend):
    """A float64 weight below float32's smallest positive number was 0 once cast (times -log 0:
    0 or NaN, where the loss is inf); it is now at least that number (TF: the smallest normal)."""
    xl, array = BACKENDS[backend]
    zero = array(np.array([0.0], np.float32))
    for _ in range(4):  # TF: eager, then the compiled graph
        got = xl.binary_cross_entropy(zero, zero, label_smoothing=0.1, pos_weight=array(np.array(5e-324)))
        assert float(got) == np.inf
        got = xl.sparse_categorical_cross_entropy(array(np.array([0])), array(np.array([[0.0, 1.0]], np.float32)),
                                                  class_weight=array(np.array([1e-46, 1.0])), reduction="sum")
        assert float(got) == np.inf


@pytest.mark.parametrize("backend", BACKENDS)
def test_f1c_a_weighted_mean_of_subnormal_class_weights(backend):
    """TF scaled the weights by a power of two read through its kernels, which flush a subnormal
    weight to 0: the scale was 1, the weights stayed subnormal (0), and the mean 0; it reads
    their bits now. A weighted mean does not depend on the weights' scale: log 2 here."""
    xl, array = BACKENDS[backend]
    for dtype, tiny in ((np.float64, 5e-324), (np.float32, 1e-45)):
        z = array(np.zeros((1, 2), dtype))
        for _ in range(4):  # TF: eager, then the compiled graph
            got = xl.sparse_categorical_cross_entropy(array(np.array([0])), z, from_logits=True,
                                                      class_weight=array(np.array([tiny, tiny], dtype)))
            assert float(got) == pytest.approx(np.log(2), rel=1e-6), dtype
    # a zero weight beside a subnormal one (the fuzz, bfloat16 logits): scaled by 2^1073, it was 0 x inf = NaN
    got = xl.sparse_categorical_cross_entropy(array(np.array(0)), array(np.zeros(2, np.float32)), from_logits=True,
                                              label_smoothing=0.1, class_weight=array(np.array([5e-324, 0.0])))
    assert float(got) == pytest.approx(0.9 * np.log(2) + 0.05 * np.log(2), rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_f8b_f25_gaussian_nll_of_a_subnormal_variance_where_y_differs_from_mean(backend):
    """TF's sqrt flushed a subnormal variance to 0: (y - mean) / 0 = inf where the NLL is finite;
    the root is now taken from the variance's bits."""
    xl, array = BACKENDS[backend]
    for dtype, y, var in ((np.float32, 1e-30, 1e-45), (np.float64, 1e-160, 5e-324)):
        v = float(np.array(var, dtype))
        expected = 0.5 * ((y / np.sqrt(v)) ** 2 + np.log(v))  # y^2 alone is subnormal (rounded) in float64
        args = [array(np.array([a], dtype)) for a in (y, 0.0, var)]
        for _ in range(4):  # TF: eager, then the compiled graph
            assert float(xl.gaussian_nll(*args, full=False)) == pytest.approx(expected, rel=1e-5), dtype


@pytest.mark.parametrize("backend", BACKENDS)
def test_f31_mean_of_weights_spanning_the_float64_range_smoothed(backend):
    """The mean's scale brought the label's weight 5e-324 up to where the other, 1e-3, was near
    float64's max: smoothing's class sum w_1 (-log 5e-324) then overflowed (inf, the mean is
    6.1e271). The scaled weights now keep 2^32 below the max."""
    xl, array = BACKENDS[backend]
    for _ in range(4):  # TF: eager, then the compiled graph
        got = xl.sparse_categorical_cross_entropy(array(np.array([0])), array(np.array([[1.0, 5e-324]])),
                                                  label_smoothing=8.09443256190598e-52,
                                                  class_weight=array(np.array([5e-324, 1e-3])))
        assert float(got) == pytest.approx(8.09443256190598e-52 / 2 * 1e-3 * -np.log(5e-324) / 5e-324, rel=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_f36_binary_from_logits_with_pos_weight_where_the_weighted_form_overflows(backend):
    """(1 - t) z + (1 + (w - 1) t) softplus(-z) overflowed (2 x 2.11e38) before its negative first
    term was added: inf where w t softplus(-z) + (1 - t) softplus(z), two terms >= 0, is 3.17e38."""
    xl, array = BACKENDS[backend]
    y, z = array(np.zeros(2, np.float32)), array(np.array([-2.11347e38, 0.0], np.float32))
    for _ in range(4):  # TF: eager, then the compiled graph
        got = xl.binary_cross_entropy(y, z, from_logits=True, label_smoothing=1.0, pos_weight=array(np.array(3.0)),
                                      reduction="none")
        np.testing.assert_allclose(np.asarray(got), [1.5 * 2.11347e38, 2 * np.log(2)], rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_f37_binary_smoothed_complement_of_a_target_one(backend):
    """y = q = 1 with eps = 1e-8 (float32): t = 1 - eps/2 rounds to 1, and 1 - t was 0, so the
    term (eps/2) (-log(1 - q)) = inf was lost (0 in every backend). The complement is now
    smoothed itself: (1 - y)(1 - eps) + eps/2."""
    xl, array = BACKENDS[backend]
    one = array(np.array([1.0], np.float32))
    for eps in (5.96e-08, 1e-8, 1e-12):
        for _ in range(4):  # TF: eager, then the compiled graph
            assert float(xl.binary_cross_entropy(one, one, label_smoothing=eps)) == np.inf, eps


@pytest.mark.parametrize("backend", BACKENDS)
def test_categorical_smoothing_whose_share_is_subnormal_meets_a_zero_probability(backend):
    """y = q = [1, 0] with eps = 1.93e-38 (at least float32's smallest normal) and K = 2: the
    smoothed target of class 1, eps/2 = 9.7e-39, is subnormal; TF flushed it to 0 (-0.0 where
    the answer is inf, found by the fuzz at CI scale). Also from bfloat16 inputs."""
    xl, array = BACKENDS[backend]
    dtypes = (np.float32,) if backend == "numpy" else (np.float32, "bfloat16")
    for dtype in dtypes:
        one_zero = array(np.array([[1.0, 0.0]], np.float32))
        if dtype == "bfloat16":
            one_zero = one_zero.bfloat16() if backend == "torch" else tf.cast(one_zero, tf.bfloat16)
        for _ in range(4):  # TF: eager, then the compiled graph
            got = xl.categorical_cross_entropy(one_zero, one_zero, label_smoothing=1.9318110775549532e-38)
            assert float(got) == np.inf, (dtype, got)


# ---- gradients of the losses from probabilities at q = 0 and q = 1 --------------------------

_BOUNDARY_Y = np.array([1.0, 0.0, 1.0, 0.0, 0.25, 0.25, 0.25, 1.0, 0.0])
_BOUNDARY_Q = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.3, 0.3, 0.7])
_BOUNDARY_ROWS_Y = np.array([[1.0, 0, 0], [0, 1, 0], [0.5, 0.5, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5]])
_BOUNDARY_ROWS_Q = np.array([[1.0, 0, 0], [0.3, 0.7, 0], [0.2, 0.3, 0.5], [1, 0, 0], [0.2, 0.3, 0.5]])


def _autograd(backend, fn, y, q, dtype, kwargs, masked=False):
    """The summed loss's gradients to y_true and y_pred in ``backend`` (16-bit: float32 results);
    ``masked``: of the sum of the finite items only (a caller's where-mask of the infinite ones)."""
    if backend == "torch":
        yt = torch.tensor(y, dtype=getattr(torch, dtype), requires_grad=True)
        qt = torch.tensor(q, dtype=getattr(torch, dtype), requires_grad=True)
        out = getattr(xt, fn)(yt, qt, reduction="none" if masked else "sum", **kwargs)
        out = torch.where(torch.isfinite(out), out, 0.0).sum() if masked else out
        gy, gq = torch.autograd.grad(out, (yt, qt))
        return gy.double().numpy(), gq.double().numpy()
    yt, qt = tf.Variable(tf.cast(y, dtype)), tf.Variable(tf.cast(q, dtype))
    with tf.GradientTape() as tape:
        out = getattr(xtf, fn)(yt, qt, reduction="none" if masked else "sum", **kwargs)
        out = tf.reduce_sum(tf.where(tf.math.is_finite(out), out, tf.zeros_like(out))) if masked else out
    return tuple(tf.cast(g, tf.float64).numpy() for g in tape.gradient(out, [yt, qt]))


def _one_sided_differences(fn, x, other, wrt, kwargs, h=1e-7):
    """d/dx of the float64 NumPy reference's per-item losses, one step inside [0, 1] at 0 and 1
    (central elsewhere); ``wrt`` 0: x is y_true, 1: y_pred. Checks off: a perturbed row need not
    sum to 1."""
    def items(a):
        args = (a, other) if wrt == 0 else (other, a)
        with xentlib.value_checks(False):
            return np.asarray(getattr(xn, fn)(*args, reduction="none", **kwargs), np.float64)
    grad = np.empty_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] = min(x[i] + h, 1.0)
        down[i] = max(x[i] - h, 0.0)
        row = i[:-1] if x.ndim > 1 else i
        with np.errstate(invalid="ignore"):  # inf - inf at an infinite item: not compared
            grad[i] = (items(up)[row] - items(down)[row]) / (up[i] - down[i])
    return grad


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
@pytest.mark.parametrize("fn", ["binary_focal_cross_entropy", "categorical_focal_cross_entropy",
                                "binary_cross_entropy", "categorical_cross_entropy"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_gradients_from_probabilities_at_zero_and_one(backend, fn, dtype):
    """D1: sigmoid(20) is exactly 1 in float32, and one confident correct prediction made the
    focal losses' gradient NaN (log q, log1p(-q) and the power evaluated at the boundary, and
    a where-mask of their product that still passed 0 x inf back), for every gamma, also 0.
    The gradients to y_true and y_pred are never NaN where the loss is finite or inf (nor where
    a caller masks the infinite items: 0 at those), finite where the item is finite, and equal a
    float64 one-sided difference of the reference where q is at the boundary (y_true's: where
    q is inside (0, 1), as a 0 log 0 term passes 0)."""
    binary = fn.startswith("binary")
    y, q = (_BOUNDARY_Y, _BOUNDARY_Q) if binary else (_BOUNDARY_ROWS_Y, _BOUNDARY_ROWS_Q)
    gammas = [0.0, 0.5, 1.0, 2.0] if "focal" in fn else [None]
    tol = {"float64": 1e-5, "float32": 1e-3, "float16": 3e-2, "bfloat16": 3e-2}[dtype]
    for gamma in gammas:
        for extra in ({}, {"label_smoothing": 0.1}, {"alpha": 0.25} if "focal" in fn else {}):
            kwargs = dict(extra, **({} if gamma is None else {"gamma": gamma}))
            items = np.asarray(getattr(xn, fn)(y, q, reduction="none", **kwargs))
            finite = np.isfinite(items) if binary else np.isfinite(items)[:, None] & np.ones(q.shape, bool)
            gy, gq = _autograd(backend, fn, y, q, dtype, kwargs)
            what = (fn, dtype, kwargs)
            assert not np.isnan(gy).any() and not np.isnan(gq).any(), (what, gy, gq)
            masked_gy, masked_gq = _autograd(backend, fn, y, q, dtype, kwargs, masked=True)
            assert np.isfinite(masked_gy).all() and np.isfinite(masked_gq).all(), (what, masked_gy, masked_gq)
            np.testing.assert_array_equal(masked_gq[finite], gq[finite])
            assert np.isfinite(gq[finite]).all() and np.isfinite(gy[finite]).all(), (what, gy, gq)
            ref_q = _one_sided_differences(fn, q, y, 1, kwargs)
            # atol: the one-sided difference of (1 - q)^0.5 (-log q) at q = 1 is h^0.5 = 3e-4, not 0
            np.testing.assert_allclose(gq[finite], ref_q[finite], rtol=tol, atol=max(3 * tol, 1e-3), err_msg=str(what))
            inside = finite & (q > 0) & (q < 1)
            if binary:  # a row's targets cannot move alone (they sum to 1): y_true's gradient of binary only
                ref_y = _one_sided_differences(fn, y, q, 0, kwargs)
                np.testing.assert_allclose(gy[inside], ref_y[inside], rtol=tol, atol=max(3 * tol, 1e-3),
                                           err_msg=str(what))


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_focal_gradient_of_one_confident_correct_prediction_from_logits_made_probabilities(backend):
    """D1 as met in training: sigmoid(20) = 1 in float32; the batch gradient was NaN."""
    z = np.array([20.0, -1.0, 0.5], np.float32)
    p = (1 / (1 + np.exp(-z.astype(np.float64)))).astype(np.float32)
    assert p[0] == 1.0
    for gamma in (0.0, 2.0):
        _, gq = _autograd(backend, "binary_focal_cross_entropy", np.array([1.0, 0.0, 1.0]), p, "float32",
                          {"gamma": gamma})
        assert np.isfinite(gq).all(), (gamma, gq)


# ---- label smoothing below the smallest normal: one rule ------------------------------------

def _as(backend, a, dtype):
    """``a`` as an array of ``backend`` in ``dtype`` (16-bit through float32)."""
    a = np.asarray(a)
    if backend == "numpy":
        return a.astype(dtype)
    if backend == "torch":
        return torch.tensor(a.astype(np.float64 if dtype == "float64" else np.float32)).to(getattr(torch, dtype))
    return tf.cast(tf.constant(a.astype(np.float64 if dtype == "float64" else np.float32)), dtype)


_SMOOTHED_TO_INF = [  # (function, y_true, y_pred, keywords): a positive share meets q = 0 (or 1 - q = 0)
    ("categorical_cross_entropy", [[1.0, 0.0]], [[1.0, 0.0]], {}),
    ("categorical_focal_cross_entropy", [[1.0, 0.0]], [[1.0, 0.0]], {"gamma": 0.0}),
    ("categorical_focal_cross_entropy", [[1.0, 0.0]], [[1.0, 0.0]], {"gamma": 2.0}),
    ("binary_cross_entropy", [0.0, 1.0], [0.0, 1.0], {}),
    ("binary_focal_cross_entropy", [0.0], [0.0], {"gamma": 0.0}),
    ("binary_focal_cross_entropy", [0.0], [0.0], {"gamma": 2.0}),
    ("binary_focal_cross_entropy", [1.0], [1.0], {"gamma": 2.0}),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_d2_d3_d4_label_smoothing_below_the_smallest_normal_is_never_dropped(backend, dtype):
    """One rule for every loss that smooths, in every backend: a positive epsilon is never
    dropped, and each share (eps/K; binary eps/2) is at least the compute dtype's smallest normal
    (float32's for 16-bit inputs). Before, the front door took an eps whose share was below it
    as 0 (finite where a positive target meets q = 0, which is inf), TF's categorical CE alone
    rounded eps/K up (F38), TF's categorical focal CE flushed eps/K (D2), and TF's binary focal
    CE a subnormal smoothed target against q = 0 (-0.0, D3); gamma = 2 also squared the share
    to 0 (its factor (1 - p_t)^2 underflowed: 0 x inf, where the answer is inf)."""
    if backend == "numpy" and dtype == "bfloat16":
        pytest.skip("NumPy has no bfloat16")
    xl = BACKENDS[backend][0]
    tiny = float(np.finfo(np.float64 if dtype == "float64" else np.float32).tiny)
    epsilons = [5e-324, 1e-320, tiny, 1.5 * tiny] if dtype == "float64" else [1e-300, 1e-45, 1e-40, tiny, 1.93e-38]
    for eps in epsilons:
        for fn, y, q, kwargs in _SMOOTHED_TO_INF:
            for _ in range(4):  # TF: eager, then the compiled graph
                got = getattr(xl, fn)(_as(backend, y, dtype), _as(backend, q, dtype), label_smoothing=eps,
                                      reduction="none", **kwargs)
                assert (np.asarray(got, np.float64) == np.inf).all(), (fn, dtype, eps, kwargs, got)
            labels = BACKENDS[backend][1](np.array([0]))
            got = xl.sparse_categorical_cross_entropy(labels, _as(backend, [[1.0, 0.0]], dtype), label_smoothing=eps)
            assert float(got) == np.inf, ("sparse", dtype, eps, got)
        smoothed = np.asarray(_float64(xl.smooth_labels(_as(backend, [[1.0, 0.0, 0.0]], dtype), eps)))
        if dtype != "float16":  # returned in float16: below its range
            assert smoothed[0, 1] >= tiny and smoothed[0, 1] == smoothed[0, 2], (dtype, eps, smoothed)
    # mixed dtypes: the share is formed in the narrower target dtype, so bounded by its normal
    got = xl.categorical_cross_entropy(_as(backend, [[1.0, 0.0]], "float32"), _as(backend, [[1.0, 0.0]], "float64"),
                                       label_smoothing=1e-300)
    assert float(got) == np.inf


def _float64(x):
    if isinstance(x, torch.Tensor):
        return x.to(torch.float64).numpy()
    return np.asarray(tf.cast(x, tf.float64) if tf.is_tensor(x) else x, np.float64)


def test_d4_tf_label_smoothing_with_an_unknown_class_count():
    """The rule where the front door cannot bound eps / K (a tf.function of [None, None]
    inputs): TF's smoothing bounds the share where it forms it."""
    spec = [tf.TensorSpec([None, None], tf.float32)] * 2
    one_zero = tf.constant([[1.0, 0.0]])
    for eps in (1e-40, 1.93e-38):
        for fn in ("categorical_cross_entropy", "categorical_focal_cross_entropy"):
            graph = tf.function(lambda y, q, fn=fn, eps=eps: getattr(xtf, fn)(y, q, label_smoothing=eps),
                                input_signature=spec)
            assert float(graph(one_zero, one_zero)) == np.inf, (fn, eps)
        smooth = tf.function(lambda y, eps=eps: xtf.smooth_labels(y, eps), input_signature=spec[:1])
        assert float(smooth(one_zero)[0, 1]) == np.finfo(np.float32).tiny
        sparse = tf.function(lambda y, q, eps=eps: xtf.sparse_categorical_cross_entropy(y, q, label_smoothing=eps),
                             input_signature=[tf.TensorSpec([None], tf.int64), spec[0]])
        assert float(sparse(tf.constant([0], tf.int64), one_zero)) == np.inf


# ---- error texts -------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_d9_the_dtype_error_lists_the_dtypes_the_backend_takes(backend):
    """NumPy refused bfloat16 with a message that listed bfloat16 among the accepted dtypes."""
    import ml_dtypes

    xl, array = BACKENDS[backend]
    if backend == "numpy":
        with pytest.raises(TypeError, match=r"^p must have a floating-point dtype \(float16, float32 or float64\); "
                                            r"got bfloat16\. Convert it first"):
            xl.entropy(np.array([0.5, 0.5], ml_dtypes.bfloat16))
        hidden = np.ones((2, 3), ml_dtypes.bfloat16)
        with pytest.raises(TypeError, match=r"^hidden must have a floating-point dtype \(float16, float32 or"):
            xl.linear_cross_entropy(hidden, np.ones((4, 3)), np.zeros(2, np.int64))
    else:
        with pytest.raises(TypeError, match=r"^p must have a floating-point dtype \(float16, bfloat16, float32 or "
                                            r"float64\); got int"):
            xl.entropy(array(np.array([1, 0])))


def test_d10_gradient_descent_names_the_argument_and_the_fix():
    """NaN or inf gradients and parameters: each message starts with the argument's name
    (before: 'grad has NaN ...', 'loss became nan ...', no argument of that name) and says the fix."""
    cases = [
        (lambda t: (float("nan"), t), [1.0], {}, r"^loss_and_grad returned a loss of nan at step 0: .*lower "
                                                 r"learning_rate \(now 0\.1\), e\.g\. to 0\.01"),
        (lambda t: (1.0, t * np.inf), [1.0], {}, r"^loss_and_grad returned a gradient with NaN or inf at step 0 "
                                                 r".*check its gradient, or lower learning_rate"),
        (lambda t: (1.0, np.full(2, 1e308)), [1.0, -1.0], {"learning_rate": 1e10},
         r"^params became NaN or inf at step 0 .*lower learning_rate \(now 1e\+10\)"),
        (lambda t: (1.0, np.zeros(3)), [1.0], {}, r"^loss_and_grad returned a gradient of shape \(3,\) at step 0, "
                                                  r"but params has shape \(1,\); return one derivative per"),
        (lambda t: (1.0, t), [np.nan], {}, r"^params must be finite .*start from finite values"),
    ]
    for fn, params, kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            xn.gradient_descent(fn, params, steps=2, **kwargs)


_UNKNOWN_SHAPES = [tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, None], tf.float32)]


@pytest.mark.parametrize("signature", [None, _UNKNOWN_SHAPES], ids=["static", "unknown-shapes"])
def test_d10_tf_graph_messages_read_like_the_eager_ones(signature):
    """In a tf.function an assertion printed each piece of the message in brackets:
    'found values in [] [-3] [, ] [5] []'; now the eager text with the values written in."""
    fn = tf.function(lambda y, z: xtf.sparse_categorical_cross_entropy(y, z, from_logits=True, ignore_index=-100),
                     input_signature=signature)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"assertion failed: \[labels must lie in \[0, 3\) or equal ignore_index=-100; "
                             r"found values in \[-3, 5\]\]"):
        fn(tf.constant([5, -3], tf.int64), tf.zeros((2, 3)))
    probabilities = tf.function(lambda y, q: xtf.categorical_cross_entropy(y, q))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"\[y_true must sum to 1 along axis 1 \(tolerance 0\.0001\); found a sum of 1\.2\. "
                             r"Normalise it"):
        probabilities(tf.constant([[0.5, 0.7]]), tf.constant([[0.5, 0.5]]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_d1_tf_gradient_at_a_subnormal_probability(dtype):
    """TF's CPU kernels flush a subnormal q: the gradient of log q there was 0 x inf = NaN (and,
    with the log masked, 0); now -y / q as torch gives it (inf beyond the dtype's max)."""
    np_dtype = np.dtype(dtype)
    tiny = np.finfo(np_dtype).tiny
    q = np.array([tiny / 10, tiny / 5, tiny / 1e6, 0.5], np_dtype)
    y = np.array([0.5, 1e-3, 1.0, 1.0], np_dtype)
    q_ld, y_ld = q.astype(np.longdouble), y.astype(np.longdouble)
    with np.errstate(over="ignore"):
        expected = (-y_ld / q_ld + (1 - y_ld) / (1 - q_ld)).astype(np_dtype)
    variable = tf.Variable(q)
    for fn in (xtf.binary_cross_entropy, xtf.binary_focal_cross_entropy):
        kwargs = {} if fn is xtf.binary_cross_entropy else {"gamma": 0.0}
        with tf.GradientTape() as tape:
            out = fn(tf.constant(y), variable, reduction="sum", **kwargs)
        got = tape.gradient(out, variable).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-6, err_msg=fn.__name__)


def test_d1_tf_log_of_a_subnormal_scalar_in_a_graph_is_not_nan():
    """A first form of the gradient above (carried by x - x) was NaN in a graph for a 0-d
    input: Grappler folded its two factors into one, inf for m < 2^21, and 0 x inf (found by
    test_binary_ce at 3,000 examples: bfloat16 y = 0, q = 9.2e-41). The gradient is now its own."""
    import ml_dtypes

    for dtype in (np.float32, ml_dtypes.bfloat16):
        y, q = tf.constant(np.array(0.0, dtype)), tf.constant(np.array(9.18354962e-41, dtype))
        got = [float(xtf.binary_cross_entropy(y, q)) for _ in range(5)]  # the last two from the graph
        assert got == [0.0] * 5, (dtype, got)


# Found by the gradient fuzz (F39): binary CE from logits with pos_weight, smoothed: the target
# gradient, finite (1.27e38 here), overflowed to inf in a product taken before the factor 1 - eps.
_F39 = [("float32", [-1.4721e38, -5.4673e33, -3.2280e38], [0.0, 0.0, 0.0], [2.8758, 3.7060, 3.3891], 0.1, "mean"),
        ("bfloat16", [-1.2096e38], [0.0], [3.0938], 0.1, "sum"),
        ("float32", [-2.2125e38, 9.3308e37], [0.4354, 1.0], [1.7149, 3.3488], 0.001, "mean")]


def _f39_expected(z, y, w, eps, reduction):
    z, y, w = (torch.tensor(a, dtype=torch.float64) for a in (z, y, w))
    y.requires_grad_()
    t, not_t = y * (1 - eps) + eps / 2, (1 - y) * (1 - eps) + eps / 2
    per = -(w * t) * torch.nn.functional.logsigmoid(z) - not_t * torch.nn.functional.logsigmoid(-z)
    return torch.autograd.grad(per.sum() if reduction == "sum" else per.mean(), y)[0].numpy()


@pytest.mark.parametrize("dtype, z, y, w, eps, reduction", _F39)
@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_f39_binary_target_gradient_with_pos_weight_near_the_max(backend, dtype, z, y, w, eps, reduction):
    expected = _f39_expected(z, y, w, eps, reduction)
    options = dict(from_logits=True, label_smoothing=eps, reduction=reduction)
    if backend == "torch":
        zt, yt, wt = (torch.tensor(a, dtype=getattr(torch, dtype)) for a in (z, y, w))
        yt.requires_grad_()
        got = torch.autograd.grad(xt.binary_cross_entropy(yt, zt, pos_weight=wt, **options), yt)[0]
        got = got.float().numpy()
    else:
        zt, wt = (tf.constant(np.float32(a), dtype=dtype) for a in (z, w))
        yt = tf.Variable(tf.constant(np.float32(y), dtype=dtype))
        with tf.GradientTape() as tape:
            loss = xtf.binary_cross_entropy(yt, zt, pos_weight=wt, **options)
        got = tf.cast(tape.gradient(loss, yt), tf.float32).numpy()
    np.testing.assert_allclose(got, expected, rtol=2e-2 if dtype == "bfloat16" else 1e-5)


@pytest.mark.parametrize("backend", ["numpy", "torch", "tensorflow"])
def test_linear_ce_takes_label_smoothing_as_every_loss_does(backend):
    """A positive eps whose share eps/V is below the smallest normal is raised to it (D4), also in
    linear_cross_entropy: the loss is then the sparse CE of its logits with the same eps. Here the
    smoothing term is the whole loss (the label's logit is 705 above the others): 4.7e-305 with
    the share taken, 5.3e-318 with eps = 1e-320 as given."""
    h, w = np.array([[1.0]]), np.array([[705.0], [0.0], [0.0], [0.0]])
    labels = np.array([0])
    xl = {"numpy": xn, "torch": xt, "tensorflow": xtf}[backend]
    convert = {"numpy": np.asarray, "torch": torch.tensor, "tensorflow": tf.constant}[backend]
    fused = xl.linear_cross_entropy(convert(h), convert(w), convert(labels), label_smoothing=1e-320)
    plain = xl.sparse_categorical_cross_entropy(convert(labels), convert(h @ w.T), from_logits=True,
                                                label_smoothing=1e-320)
    assert float(plain) == pytest.approx(2.2250738585072014e-308 * 3 * 705, rel=1e-6, abs=0)
    assert float(fused) == pytest.approx(float(plain), rel=1e-6, abs=0)


# Found by the gradient fuzz (torch): F40, a term made 0 (an ignored item, a class weight 0) at a
# probability 0 gave a NaN gradient; F51, a 'mean' over no item was a 0 without a graph (backward
# failed); F49, smoothing 1 gave d/dy_true = 0 x inf = NaN where -log q is inf.

def _torch_grad(loss, *inputs):
    return [g.tolist() for g in torch.autograd.grad(loss, inputs)]


def test_f40_torch_sparse_from_probabilities_no_nan_gradient_at_an_unused_zero():
    q = torch.tensor([[1.0, 0.0]], requires_grad=True)
    ignored = xt.sparse_categorical_cross_entropy(torch.tensor([-1]), q, ignore_index=-1, label_smoothing=0.1)
    assert float(ignored) == 0.0 and _torch_grad(ignored, q) == [[[0.0, 0.0]]]
    q = torch.tensor([[1.0, 0.0], [0.5, 0.5]], requires_grad=True)
    weighted = xt.sparse_categorical_cross_entropy(torch.tensor([1, 0]), q, class_weight=torch.tensor([1.0, 0.0]))
    assert float(weighted) == pytest.approx(np.log(2)) and _torch_grad(weighted, q) == [[[0.0, 0.0], [-2.0, 0.0]]]


@pytest.mark.parametrize("loss", ["binary_cross_entropy", "categorical_focal_cross_entropy",
                                  "binary_focal_cross_entropy"])
def test_f51_torch_mean_over_no_item_has_a_zero_gradient(loss):
    z = torch.zeros(0, 3, requires_grad=True)
    out = getattr(xt, loss)(torch.zeros(0, 3), torch.sigmoid(z))
    assert float(out.detach()) == 0.0 and torch.autograd.grad(out, z)[0].shape == (0, 3)


def test_f49_torch_full_smoothing_gives_the_targets_a_zero_gradient():
    y = torch.tensor([[1.0, 0.0]], requires_grad=True)
    z = torch.tensor([[-3e38, 3e38]], requires_grad=True)
    out = xt.categorical_cross_entropy(y, z, from_logits=True, label_smoothing=1.0)
    grad_y, grad_z = torch.autograd.grad(out, (y, z))
    assert grad_y.tolist() == [[0.0, 0.0]] and grad_z.tolist() == [[-0.5, 0.5]]


# Found by the review and the gradient fuzz: the focal losses from logits took autograd of their
# value. R1: log y in the focal factor gave d/dy_true = 0 x inf = NaN at a target 0 or 1; F50:
# gamma * ce times a vanishing sigmoid gave NaN near the dtype's max; R2/F42: autograd of
# log(1 - softmax) lost q log q / (1 - q) to cancellation once a logit passed about 30
# (z [-1e4, 1e4, .5], y [1, 0, 0], gamma .5: d/dz_1 -2.79 where it is 1). F53: TF cast a float
# alpha to float32 before float64 (4e-8 relative).

def _focal_grads(backend, fn, y, z, dtype="float32", **options):
    """(loss, d/dz, d/dy) of ``fn`` as float64 NumPy."""
    options = dict(from_logits=True, **options)
    if backend == "torch":
        yt = torch.tensor(y, dtype=getattr(torch, dtype), requires_grad=True)
        zt = torch.tensor(z, dtype=getattr(torch, dtype), requires_grad=True)
        loss = getattr(xt, fn)(yt, zt, **options)
        grads = torch.autograd.grad(loss, (zt, yt))
        return float(loss.detach()), *(g.double().numpy() for g in grads)
    yt, zt = (tf.Variable(tf.constant(np.asarray(a, np.float64), dtype=dtype)) for a in (y, z))
    with tf.GradientTape() as tape:
        loss = getattr(xtf, fn)(yt, zt, **options)
    return float(loss), *(tf.cast(g, tf.float64).numpy() for g in tape.gradient(loss, (zt, yt)))


def _focal_oracle(fn, y, z, gamma, reduction="mean"):
    """Loss and gradients in float64 autograd of the straightforward formula (away from its 0 x inf)."""
    y, z = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (y, z))
    if fn == "binary_focal_cross_entropy":
        p = torch.sigmoid(z)
        miss = y * (1 - p) + (1 - y) * p
        ce = -(y * torch.nn.functional.logsigmoid(z) + (1 - y) * torch.nn.functional.logsigmoid(-z))
        per = miss ** gamma * ce
    else:
        per = (y * (1 - torch.softmax(z, -1)) ** gamma * -torch.log_softmax(z, -1)).sum(-1)
    loss = per.mean() if reduction == "mean" else per.sum()
    return float(loss), *(g.numpy() for g in torch.autograd.grad(loss, (z, y)))


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_r1_binary_focal_from_logits_target_gradient_at_zero_and_one(backend, gamma):
    y, z = [0.0, 1.0, 1.0, 0.0], [-3.0, 0.5, 4.0, 0.0]
    loss, d_z, d_y = _focal_grads(backend, "binary_focal_cross_entropy", y, z, "float64", gamma=gamma)
    # the oracle's log-free form is exact at y in {0, 1}
    expected = _focal_oracle("binary_focal_cross_entropy", y, z, gamma)
    assert loss == pytest.approx(expected[0], rel=1e-12, abs=0)
    np.testing.assert_allclose(d_z, expected[1], rtol=1e-12, atol=0)
    np.testing.assert_allclose(d_y, expected[2], rtol=1e-12, atol=0)


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_r2_categorical_focal_from_logits_gradient_at_large_spreads(backend):
    fn = "categorical_focal_cross_entropy"
    _, d_z, _ = _focal_grads(backend, fn, [[1.0, 0.0, 0.0]], [[-1e4, 1e4, 0.5]], gamma=0.5)
    assert d_z.tolist() == [[-1.0, 1.0, 0.0]]
    _, d_z, _ = _focal_grads(backend, fn, [[1.0, 0.0]], [[0.0, 9984.0]], gamma=0.5)
    assert d_z.tolist() == [[-1.0, 1.0]]
    # equal logits near 1e4: the gradient of z = [0, 0], exact to float32's rounding
    _, d_z, _ = _focal_grads(backend, fn, [[1.0, 0.0]], [[1e4, 1e4]], gamma=0.5)
    expected = _focal_oracle(fn, [[1.0, 0.0]], [[0.0, 0.0]], 0.5)[1]
    np.testing.assert_allclose(d_z, expected, rtol=1e-6, atol=0)
    # logits 40 apart: q = 1 - 4e-18, the focal factor's slope q log q / (1 - q) is -1 (float64)
    y, z = [[0.7, 0.3]], [[40.0, 0.0]]
    _, d_z, d_y = _focal_grads(backend, fn, y, z, "float64", gamma=2.0)
    expected = _focal_oracle(fn, y, z, 2.0)
    np.testing.assert_allclose(d_z, expected[1], rtol=1e-12, atol=0)
    # d/dy_0 = (1 - q_0)^2 (-log q_0) / 1 = 7.7e-53 (the oracle's 1 - q rounds to 0)
    assert d_y[0, 0] == pytest.approx(np.exp(-40.0) ** 3, rel=1e-12, abs=0)
    assert d_y[0, 1] == pytest.approx(expected[2][0, 1], rel=1e-12, abs=0)


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_f50_binary_focal_from_logits_gradient_near_the_max(backend, dtype):
    loss, d_z, d_y = _focal_grads(backend, "binary_focal_cross_entropy", [0.0, 1.0], [1.69e38, -1.69e38], dtype,
                                  gamma=5.0, reduction="sum")
    assert np.isfinite(loss) and d_z.tolist() == [1.0, -1.0]
    # d/dy = -(gamma + 1) z there (the focal factor's slope -+1 times gamma ce, and -z): beyond the max
    assert d_y.tolist() == [-np.inf, np.inf]
    loss, d_z, d_y = _focal_grads(backend, "binary_focal_cross_entropy", [0.0, 1.0], [1e37, -1e37], dtype,
                                  gamma=5.0, reduction="sum")
    assert d_z.tolist() == [1.0, -1.0]
    np.testing.assert_allclose(d_y, [-6e37, 6e37], rtol=1e-2 if dtype == "bfloat16" else 1e-6)


def test_f53_tf_float_alpha_is_not_rounded_to_float32():
    y, z = np.array([[0.7, 0.3]]), np.array([[0.0, 1.0]])
    got = float(xtf.categorical_focal_cross_entropy(y, z, gamma=2.0, alpha=0.3, from_logits=True))
    expected = float(xn.categorical_focal_cross_entropy(y, z, gamma=2.0, alpha=0.3, from_logits=True))
    assert got == pytest.approx(expected, rel=1e-15, abs=0)


# Found while fixing those (gradient fuzz with the focal targets differentiable): F54, categorical
# focal CE at equal logits near 1e38 lost log 2 in the others' log-sum-exp (a factor 1 for
# (2/3)^gamma), in every backend; F55, a target 0 had gradient 0 where its term is finite
# (``times`` masked the weight's gradient, not only 0 x inf): binary focal CE, gamma 0, y 0, z 0
# gave d/dy -0.693 where it is 0; F56, TF's float64 path gave a subnormal float32 input gradient 0.

@pytest.mark.parametrize("backend", ["numpy", "torch", "tensorflow"])
def test_f54_categorical_focal_at_equal_logits_near_the_max(backend):
    xl = {"numpy": xn, "torch": xt, "tensorflow": xtf}[backend]
    convert = {"numpy": np.asarray, "torch": torch.tensor, "tensorflow": tf.constant}[backend]
    y, z = np.array([[1.0, 0.0, 0.0]], np.float32), np.full((1, 3), 1.69e38, np.float32)
    got = float(xl.categorical_focal_cross_entropy(convert(y), convert(z), gamma=0.5, from_logits=True))
    assert got == pytest.approx(np.log(3) * (2 / 3) ** 0.5, rel=1e-6, abs=0)


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_f55_a_target_zero_takes_the_gradient_of_its_finite_term(backend):
    loss, d_z, d_y = _focal_grads(backend, "binary_focal_cross_entropy", [0.0, 1.0], [0.0, 2.0], "float64",
                                  gamma=0.0, reduction="sum")
    np.testing.assert_allclose(d_y, [0.0, -2.0], rtol=1e-15, atol=0)  # d/dy = -z
    _, _, d_y = _focal_grads(backend, "categorical_focal_cross_entropy", [[1.0, 0.0]], [[1.0, 0.0]], "float64",
                             gamma=2.0)
    expected = _focal_oracle("categorical_focal_cross_entropy", [[1.0, 0.0]], [[1.0, 0.0]], 2.0)[2]
    np.testing.assert_allclose(d_y, expected, rtol=1e-12, atol=0)


def test_f56_tf_subnormal_target_keeps_its_gradient_on_the_float64_path():
    y = tf.Variable(np.array([1.0, 9.18e-41], np.float32))
    z = tf.constant(np.array([3.38e38, -3.38e38], np.float32))  # a spread past float32's max: float64 path
    with tf.GradientTape() as tape:
        loss = xtf.categorical_focal_cross_entropy(y, z, gamma=0.0, from_logits=True)
    assert np.isfinite(float(loss)) and tape.gradient(loss, y).numpy().tolist() == [0.0, np.inf]


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
@pytest.mark.parametrize("fn", ["binary_cross_entropy", "binary_focal_cross_entropy"])
def test_f46_sixteen_bit_target_gradient_is_summed_in_the_compute_dtype(backend, fn):
    """d/dy_true of a 16-bit target from probabilities: its two terms (y and its complement) were two
    casts of the target, each gradient rounded to 16 bits before the sum (bfloat16 y 0.375, q 0.25,
    focal alpha 0: -0.01172 where it is -0.01303)."""
    options = {"alpha": 0.0, "gamma": 0.0} if "focal" in fn else {"label_smoothing": 0.1, "pos_weight": 3.0}
    y, q = 0.375, 0.25
    expected = {}
    for dtype in ("bfloat16", "float64"):
        if backend == "torch":
            yt = torch.tensor(y, dtype=getattr(torch, dtype), requires_grad=True)
            pw = {"pos_weight": torch.tensor(3.0, dtype=getattr(torch, dtype))} if "pos_weight" in options else {}
            loss = getattr(xt, fn)(yt, torch.tensor(q, dtype=getattr(torch, dtype)), **{**options, **pw})
            expected[dtype] = float(torch.autograd.grad(loss, yt)[0])
        else:
            yt = tf.Variable(tf.constant(y, dtype))
            pw = {"pos_weight": tf.constant(3.0, dtype)} if "pos_weight" in options else {}
            with tf.GradientTape() as tape:
                loss = getattr(xtf, fn)(yt, tf.constant(q, dtype), **{**options, **pw})
            expected[dtype] = float(tf.cast(tape.gradient(loss, yt), tf.float64))
    # one rounding to bfloat16 of the float32 sum: within half a bfloat16 ulp (2^-8 relative)
    assert expected["bfloat16"] == pytest.approx(expected["float64"], rel=2 ** -8, abs=0)


def test_r4_torch_categorical_from_logits_with_differentiable_targets_near_the_max():
    """Differentiable targets took a float32 path without the float64 redo: a log q of -inf (spread
    4e38) gave inf where the loss is 2e38, and d/dy inf where 4e38 / 2 fits."""
    y = torch.tensor([[0.5, 0.5]], requires_grad=True)
    z = torch.tensor([[-2e38, 2e38]], requires_grad=True)
    loss = xt.categorical_cross_entropy(y, z, from_logits=True)
    d_y, d_z = torch.autograd.grad(loss, (y, z))
    assert loss.dtype == torch.float32 and float(loss) == pytest.approx(2e38, rel=1e-6, abs=0)
    assert d_y.dtype == torch.float32 and d_y.tolist()[0][1] == 0.0 and np.isinf(d_y.tolist()[0][0])
    assert d_z.tolist() == [[-0.5, 0.5]]
    y = torch.tensor([[0.5, 0.5]], requires_grad=True)
    z = torch.tensor([[-1.5e38, 1.5e38]], requires_grad=True)  # -log q_0 = 3e38: fits
    d_y, _ = torch.autograd.grad(xt.categorical_cross_entropy(y, z, from_logits=True), (y, z))
    assert d_y.tolist()[0][0] == pytest.approx(3e38, rel=1e-6, abs=0) and d_y.tolist()[0][1] == 0.0


def test_f48_torch_vmap_categorical_focal_at_a_spread_past_the_max():
    """Under torch.func nothing is read back, so float32 logits whose spread passes the max were
    not redone in float64: inf, where eager gives the finite loss."""
    big = float(np.finfo(np.float32).max)
    y = torch.tensor([[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]])
    z = torch.tensor([[[-big, big, -big]], [[0.0, 1.0, 2.0]]])

    def loss(y, z):
        return xt.categorical_focal_cross_entropy(y, z, gamma=2.0, alpha=0.25, from_logits=True)

    with xentlib.value_checks(False):
        batched = torch.func.vmap(loss)(y, z)
    eager = torch.stack([loss(y[i], z[i]) for i in range(2)])
    assert torch.isfinite(eager).all() and batched.tolist() == eager.tolist()


@pytest.mark.parametrize("dtype, q", [("bfloat16", 2.204e-39), ("float32", 2.204e-39), ("float64", 3e-310)])
def test_f52_tf_gradient_at_a_subnormal_probability_in_the_hot_graph(dtype, q):
    """From its fourth call a loss runs as one graph, where Grappler folded the two normal factors
    of 1/q (2^100 / m times 2^49 in float32) into one, inf: d/dq -inf where -t/q is finite."""
    probabilities = tf.constant(np.array([1.0, q, q]), dtype)
    grads = []
    for _ in range(5):
        with tf.GradientTape() as tape:
            tape.watch(probabilities)
            loss = xtf.sparse_categorical_cross_entropy(tf.constant(0), probabilities, label_smoothing=0.1,
                                                        reduction="sum")
        grads.append(float(tf.cast(tape.gradient(loss, probabilities), tf.float64)[1]))
    assert grads == [grads[0]] * 5 and np.isfinite(grads[0])
    assert grads[0] == pytest.approx(-0.1 / 3 / q, rel=1e-2)  # q as given: bfloat16 rounds it by 0.2%


def test_linear_ce_under_torch_func_is_as_exact_as_eager():
    """Under torch.func linear CE takes its autograd path, whose z - lse of logits near 520 lost
    3e-5 in float32 (the gradient with a z-loss: 1.35456 where it is 1.35486)."""
    h, w, y = torch.full((2, 2), 10.0), torch.full((3, 2), 26.0), torch.tensor([0, 0])

    def loss(h):
        return xt.linear_cross_entropy(h, w, y, label_smoothing=0.1, z_loss=1e-4)

    with xentlib.value_checks(False):
        got = torch.func.grad(loss)(h)
    exact = 2e-4 * (520 + np.log(3)) * 26 / 2
    np.testing.assert_allclose(got.numpy(), np.full((2, 2), exact), rtol=2e-6)


@pytest.mark.parametrize("dtype", ["bfloat16", "float32", "float64"])
def test_f40_tf_sparse_from_probabilities_no_nan_gradient_at_an_unused_zero(dtype):
    """TF, as torch before: a label of weight 0 at a probability 0 passed 0 x inf (NaN) back."""
    for labels, q, options, loss_value, grad in (
            ([1], [[1.0, 0.0]], {"class_weight": [0.0, 0.0]}, 0.0, [[0.0, 0.0]]),
            ([1, 0], [[1.0, 0.0], [0.5, 0.5]], {"class_weight": [1.0, 0.0]}, np.log(2), [[0.0, 0.0], [-2.0, 0.0]])):
        probabilities = tf.constant(np.array(q), dtype)
        with tf.GradientTape() as tape:
            tape.watch(probabilities)
            loss = xtf.sparse_categorical_cross_entropy(tf.constant(labels), probabilities, **options)
        assert float(loss) == pytest.approx(loss_value, rel=1e-2, abs=0)
        assert tf.cast(tape.gradient(loss, probabilities), tf.float64).numpy().tolist() == grad


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_f57_binary_focal_weight_zero_passes_no_nan_to_an_infinite_slope(backend):
    """alpha 1 at a target 0 weights the element 0, whose focal term then gets the upstream gradient
    0; its d/dy (-(gamma + 1) z, beyond bfloat16's max here) times 0 was NaN. d/dy is the weight's
    slope times the term: 1.69e38."""
    loss, d_z, d_y = _focal_grads(backend, "binary_focal_cross_entropy", [0.0], [1.6947656946257677e38], "bfloat16",
                                  gamma=2.0, alpha=1.0)
    assert loss == 0.0 and d_z.tolist() == [0.0] and d_y.tolist() == [pytest.approx(1.6947656946257677e38, rel=1e-2)]


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_f58_binary_focal_target_gradient_takes_its_weight_before_the_sum(backend):
    """d/dy of alpha_t F at bfloat16's max logit: F's own slope (-4.4e38) passes the max, alpha_t
    F' (-1.1e38) and the whole (5.5e37 per item of the mean) do not: the upstream gradient is
    multiplied in before the terms are summed."""
    _, _, d_y = _focal_grads(backend, "binary_focal_cross_entropy", [0.25, 0.0], [3.3895313892515355e38, 0.0],
                             "bfloat16", gamma=0.5, alpha=1.0)
    assert d_y[0] == pytest.approx(5.50391304e37, rel=2e-2) and d_y[1] == pytest.approx(0.245064536, rel=1e-2)
