"""Mathematical properties, checked with hypothesis in every backend.

Identities that must hold whatever the input: H(p,q) = H(p) + KL(p||q),
Gibbs' inequality, softmax shift invariance, analytic gradients = autograd,
and finite, correct values at extreme logits in float32, float16, bfloat16.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

EXAMPLES = settings(max_examples=60, deadline=None, derandomize=True)


@st.composite
def distributions(draw, k=None, zeros=True):
    """One or several distributions over k outcomes (rows sum to 1)."""
    k = k or draw(st.integers(2, 8))
    rows = draw(st.integers(1, 4))
    low = 0.0 if zeros else 1e-3
    w = draw(hnp.arrays(np.float64, (rows, k), elements=st.floats(low, 1.0)))
    w[:, 0] += 1e-3  # never an all-zero row
    return w / w.sum(axis=-1, keepdims=True)


@st.composite
def distribution_pairs(draw):
    k = draw(st.integers(2, 8))
    p = draw(distributions(k=k))
    q = draw(distributions(k=k, zeros=False).filter(lambda q: True))
    rows = min(len(p), len(q))
    return p[:rows], q[:rows]


logit_arrays = hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(2, 9)),
                          elements=st.floats(-30, 30))


@EXAMPLES
@given(pq=distribution_pairs())
def test_cross_entropy_is_entropy_plus_kl(backend, pq):
    p, q = pq
    h_pq = backend.call("cross_entropy", p, q)
    h_p = backend.call("entropy", p)
    kl = backend.call("kl_divergence", p, q)
    np.testing.assert_allclose(h_pq, h_p + kl, rtol=1e-9, atol=1e-12)


@EXAMPLES
@given(pq=distribution_pairs())
def test_gibbs_inequality_and_kl_nonnegative(backend, pq):
    p, q = pq
    assert (backend.call("cross_entropy", p, q) >= backend.call("entropy", p) - 1e-12).all()
    assert (backend.call("kl_divergence", p, q) >= -1e-12).all()
    np.testing.assert_allclose(backend.call("kl_divergence", p, p), 0.0, atol=1e-12)


def test_kl_is_asymmetric(backend):
    p, q = np.array([0.6, 0.2, 0.2]), np.array([0.5, 0.3, 0.2])
    forward, reverse = backend.call("kl_divergence", p, q), backend.call("kl_divergence", q, p)
    np.testing.assert_allclose([forward, reverse], [0.028299912, 0.030478754], rtol=1e-7)
    assert abs(forward - reverse) > 5e-4


def test_kl_is_infinite_where_q_misses_mass_of_p(backend):
    assert np.isinf(backend.call("kl_divergence", np.array([0.5, 0.5]), np.array([1.0, 0.0])))
    assert backend.call("kl_divergence", np.array([1.0, 0.0]), np.array([0.5, 0.5])) == pytest.approx(np.log(2))


@EXAMPLES
@given(z=logit_arrays, shift=st.floats(-1e3, 1e3))
def test_softmax_is_shift_invariant(backend, z, shift):
    np.testing.assert_allclose(backend.call("softmax", z + shift), backend.call("softmax", z), atol=1e-12)
    np.testing.assert_allclose(backend.call("log_softmax", z + shift), backend.call("log_softmax", z),
                               atol=1e-9)


@EXAMPLES
@given(table=hnp.arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 5)),
                        elements=st.floats(0, 1)).filter(lambda t: t.sum() > 1e-3))
def test_mutual_information_and_conditional_entropy_identities(backend, table):
    p_xy = table / table.sum()
    p_x, p_y = p_xy.sum(axis=1), p_xy.sum(axis=0)
    h_x, h_y = backend.call("entropy", p_x), backend.call("entropy", p_y)
    h_xy = backend.call("joint_entropy", p_xy)
    mi = backend.call("mutual_information", p_xy)
    np.testing.assert_allclose(mi, max(h_x + h_y - h_xy, 0.0), atol=1e-9)
    np.testing.assert_allclose(backend.call("conditional_entropy", p_xy), max(h_xy - h_x, 0.0), atol=1e-9)
    assert mi >= 0


@EXAMPLES
@given(z=logit_arrays, eps=st.floats(0, 1), data=st.data())
def test_smoothing_equals_cross_entropy_against_smoothed_targets(backend, z, eps, data):
    labels = np.array(data.draw(st.lists(st.integers(0, z.shape[1] - 1), min_size=len(z), max_size=len(z))))
    onehot = np.eye(z.shape[1])[labels]
    smoothed = backend.call("smooth_labels", onehot, epsilon=eps)
    direct = backend.call("categorical_cross_entropy", onehot, z, from_logits=True, label_smoothing=eps)
    via_targets = backend.call("categorical_cross_entropy", smoothed, z, from_logits=True)
    sparse = backend.call("sparse_categorical_cross_entropy", labels, z, from_logits=True, label_smoothing=eps)
    np.testing.assert_allclose([direct, sparse], [via_targets, via_targets], rtol=1e-10, atol=1e-12)


@EXAMPLES
@given(p=distributions(), eps=st.floats(1e-4, 1.0))
def test_seeds_additive_smoothing_is_standard_smoothing(backend, p, eps):
    """(P + e) / Z with Z = 1 + K e equals smooth_labels(P, K e / (1 + K e))."""
    k = p.shape[-1]
    additive = (p + eps) / (1 + k * eps)
    np.testing.assert_allclose(backend.call("smooth_labels", p, epsilon=k * eps / (1 + k * eps)), additive,
                               rtol=1e-12, atol=1e-15)


@EXAMPLES
@given(z=hnp.arrays(np.float64, st.integers(1, 12), elements=st.floats(-50, 50)), data=st.data())
def test_binary_cross_entropy_is_two_class_softmax_cross_entropy(backend, z, data):
    y = np.array(data.draw(st.lists(st.integers(0, 1), min_size=len(z), max_size=len(z))))
    two_class = np.stack([np.zeros_like(z), z], axis=-1)
    np.testing.assert_allclose(
        backend.call("binary_cross_entropy", y.astype(float), z, from_logits=True, reduction="none"),
        backend.call("sparse_categorical_cross_entropy", y, two_class, from_logits=True, reduction="none"),
        rtol=1e-10, atol=1e-12)


@EXAMPLES
@given(y=hnp.arrays(np.float64, st.integers(1, 10), elements=st.floats(-100, 100)), data=st.data(),
       variance=st.floats(0.1, 10))
def test_mse_is_gaussian_nll_up_to_constants(backend, y, data, variance):
    mu = data.draw(hnp.arrays(np.float64, y.shape, elements=st.floats(-100, 100)))
    nll = backend.call("gaussian_nll", y, mu, variance=variance)
    mse = backend.call("mean_squared_error", y, mu)
    np.testing.assert_allclose(mse, 2 * variance * (nll - 0.5 * np.log(2 * np.pi * variance)),
                               rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("vocab", [2, 7, 1000])
def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(backend, vocab):
    labels = np.arange(12) % vocab
    assert backend.call("perplexity", labels, np.zeros((12, vocab))) == pytest.approx(vocab, rel=1e-12)


# ---- gradients: analytic formulas = autograd ---------------------------------------

def _autograd(framework, loss_fn, z):
    """d loss_fn(z) / dz through the framework's autograd."""
    if framework.name == "torch":
        import torch
        zt = torch.tensor(z, requires_grad=True)
        loss_fn(zt).backward()
        return zt.grad.numpy()
    import tensorflow as tf
    zt = tf.Variable(z)
    with tf.GradientTape() as tape:
        loss = loss_fn(zt)
    return tape.gradient(loss, zt).numpy()


@EXAMPLES
@given(z=logit_arrays, data=st.data())
def test_softmax_cross_entropy_gradient_equals_autograd(framework, z, data):
    y = data.draw(distributions(k=z.shape[1]).filter(lambda p: True))
    y = np.resize(y, z.shape)
    y = y / y.sum(axis=-1, keepdims=True)
    xl = framework.xl
    auto = _autograd(framework, lambda zt: xl.categorical_cross_entropy(
        framework.asarray(y), zt, from_logits=True, reduction="sum"), z)
    np.testing.assert_allclose(auto, framework.call("softmax_cross_entropy_grad", y, z), atol=1e-10)


@EXAMPLES
@given(z=hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 5)), elements=st.floats(-40, 40)),
       data=st.data())
def test_sigmoid_cross_entropy_gradient_equals_autograd(framework, z, data):
    y = data.draw(hnp.arrays(np.float64, z.shape, elements=st.floats(0, 1)))
    xl = framework.xl
    auto = _autograd(framework, lambda zt: xl.binary_cross_entropy(
        framework.asarray(y), zt, from_logits=True, reduction="sum"), z)
    np.testing.assert_allclose(auto, framework.call("sigmoid_cross_entropy_grad", y, z), atol=1e-10)


def test_gradients_are_finite_at_zero_probability_targets(framework):
    """0 * log q contributes neither NaN to the loss nor to its gradient."""
    xl = framework.xl
    y = np.array([[1.0, 0.0, 0.0]])
    q = np.array([[0.5, 0.5, 0.0]])
    for loss_fn in (lambda qt: xl.categorical_cross_entropy(framework.asarray(y), qt),
                    lambda qt: xl.cross_entropy(framework.asarray(y), qt),
                    lambda qt: xl.kl_divergence(framework.asarray(y), qt)):
        grad = _autograd(framework, loss_fn, q)
        assert np.isfinite(grad).all(), grad
    np.testing.assert_allclose(framework.call("categorical_cross_entropy", y, q), np.log(2))


# ---- extreme logits and low precision ------------------------------------------------

EXTREMES = [("float32", 1e4), ("float16", 6e4), ("bfloat16", 1e4)]


def _dtype(framework, name):
    if framework.name == "torch":
        import torch
        return getattr(torch, name)
    import tensorflow as tf
    return getattr(tf, name)


def _cast(framework, a, dtype_name):
    if framework.name == "numpy":  # no bfloat16 in NumPy: those cases are skipped
        return np.asarray(a, np.float32).astype(dtype_name)
    t = framework.asarray(np.asarray(a, np.float32))
    if framework.name == "torch":
        return t.to(_dtype(framework, dtype_name))
    import tensorflow as tf
    return tf.cast(t, _dtype(framework, dtype_name))


def _skip_numpy_bfloat16(backend, dtype_name):
    if backend.name == "numpy" and dtype_name == "bfloat16":
        pytest.skip("NumPy has no bfloat16")


@pytest.mark.parametrize("dtype_name, big", EXTREMES)
def test_losses_are_finite_and_exact_at_extreme_logits(backend, reference, dtype_name, big):
    _skip_numpy_bfloat16(backend, dtype_name)
    framework = backend
    xl = framework.xl
    z = np.array([[big, -big, 0.0], [-big, big, big]])
    labels = np.array([0, 2])
    expected = reference.xl.sparse_categorical_cross_entropy(labels, z, from_logits=True, reduction="none")
    got = framework.numpy(xl.sparse_categorical_cross_entropy(
        framework.asarray(labels), _cast(framework, z, dtype_name), from_logits=True, reduction="none"))
    assert got.dtype == np.float32  # 16-bit losses come back in float32
    np.testing.assert_allclose(got, expected, rtol=1e-2, atol=1e-6)

    y = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    got = framework.numpy(xl.categorical_cross_entropy(
        framework.asarray(y.astype(np.float32)), _cast(framework, z, dtype_name), from_logits=True,
        reduction="none"))
    np.testing.assert_allclose(got, expected, rtol=1e-2, atol=1e-6)

    zb = np.array([big, -big, big, -big])
    yb = np.array([1.0, 0.0, 0.0, 1.0])
    got = framework.numpy(xl.binary_cross_entropy(
        framework.asarray(yb.astype(np.float32)), _cast(framework, zb, dtype_name), from_logits=True,
        reduction="none"))
    np.testing.assert_allclose(got, [0.0, 0.0, big, big], rtol=1e-2, atol=1e-6)


@pytest.mark.parametrize("dtype_name, big", EXTREMES)
def test_building_blocks_do_not_overflow(backend, dtype_name, big):
    _skip_numpy_bfloat16(backend, dtype_name)
    framework = backend
    xl = framework.xl
    low = -5000.0 if dtype_name == "float16" else -big  # log_softmax(-6e4) = -1.2e5 is beyond float16's 65504
    z = _cast(framework, [[big, big - 1.0, low]], dtype_name)
    for name in ("logsumexp", "softmax", "log_softmax", "sigmoid", "log_sigmoid"):
        out = framework.numpy(getattr(xl, name)(z))
        assert np.isfinite(out).all(), (name, out)
    lse = framework.numpy(xl.logsumexp(z)).astype(np.float64)
    np.testing.assert_allclose(lse, big + np.log1p(np.exp(-1.0)), rtol=1e-2)
    np.testing.assert_allclose(framework.numpy(xl.softmax(z)).astype(np.float64).sum(), 1.0, rtol=1e-2)


@pytest.mark.parametrize("dtype_name, big", EXTREMES)
def test_gradients_finite_at_extreme_logits(framework, dtype_name, big):
    """Autograd through 16-bit (and float32) logits: exact, in the logits' dtype."""
    z = _cast(framework, [[big, -big, 0.0], [-big, big, big]], dtype_name)
    y = framework.asarray(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32))
    labels = framework.asarray(np.array([1, 2]))
    xl = framework.xl
    losses = [lambda zt: xl.categorical_cross_entropy(y, zt, from_logits=True, reduction="sum"),
              lambda zt: xl.sparse_categorical_cross_entropy(labels, zt, from_logits=True, reduction="sum")]
    for loss_fn in losses:
        if framework.name == "torch":
            zt = z.clone().requires_grad_(True)
            loss_fn(zt).backward()
            grad = zt.grad
        else:
            import tensorflow as tf
            zt = tf.Variable(z)
            with tf.GradientTape() as tape:
                loss = loss_fn(zt)
            grad = tape.gradient(loss, zt)
        assert grad.dtype == z.dtype
        # softmax(z) - y: rows [1, 0, 0] - [0, 1, 0] and [0, 1/2, 1/2] - [0, 0, 1]
        np.testing.assert_array_equal(framework.numpy(grad), [[1.0, -1.0, 0.0], [0.0, 0.5, -0.5]])
