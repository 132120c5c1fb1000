"""Mathematical properties at chosen points, in every backend: KL's asymmetry and its inf where
q misses mass of p, the perplexity of a uniform model, finite gradients at zero-probability
targets, and finite, correct values and gradients at extreme logits in float32, float16, bfloat16.

The identities once checked here with hypothesis at 60 examples each (H(p, q) = H(p) + KL(p || q),
Gibbs' inequality and KL(p || p) = 0, softmax shift invariance, I(X; Y) = H(X) + H(Y) - H(X, Y) and
H(Y | X) = H(X, Y) - H(X), label smoothing = CE against smoothed targets (sparse and categorical),
additive smoothing = smooth_labels(P, K e / (1 + K e)), binary CE = two-class softmax CE, MSE =
Gaussian NLL up to constants, the closed-form softmax and sigmoid CE gradients = autograd) are
implied by the fuzz properties, which check each side against a float64 oracle within a few ulps
(these tests allowed 1e-9) at the ci profile's count, on wider inputs: test_information_measures,
test_building_blocks_match_the_oracle, test_joint_measures, test_sparse_ce_from_logits,
test_categorical_ce, test_binary_ce, test_mse_and_gaussian_nll,
test_perplexity_gradients_smoothing_and_brier (smooth_labels and the closed-form gradients) and
test_loss_gradients_match_the_float64_oracle (autograd of binary and categorical CE). Run at
10,000 examples (``make fuzz-deep``; the ci profile runs 1,000) they would have cost about 18 CPU
minutes (measured at 1,000 on one core: 108 s, two thirds of it TensorFlow's eager dispatch), for
nothing the fuzz suite does not check.
"""
import numpy as np
import pytest


def test_kl_is_asymmetric(backend):
    p, q = np.array([0.6, 0.2, 0.2]), np.array([0.5, 0.3, 0.2])
    forward, reverse = backend.call("kl_divergence", p, q), backend.call("kl_divergence", q, p)
    np.testing.assert_allclose([forward, reverse], [0.028299912, 0.030478754], rtol=1e-7)
    assert abs(forward - reverse) > 5e-4


def test_kl_is_infinite_where_q_misses_mass_of_p(backend):
    assert np.isinf(backend.call("kl_divergence", np.array([0.5, 0.5]), np.array([1.0, 0.0])))
    assert backend.call("kl_divergence", np.array([1.0, 0.0]), np.array([0.5, 0.5])) == pytest.approx(np.log(2))


@pytest.mark.parametrize("vocab", [2, 7, 1000])
def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(backend, vocab):
    labels = np.arange(12) % vocab
    assert backend.call("perplexity", labels, np.zeros((12, vocab))) == pytest.approx(vocab, rel=1e-12)


# ---- gradients at zero-probability targets ----------------------------------------

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
