"""xentlib.tensorflow against TensorFlow's and Keras' own losses.

Equal where the conventions agree (float64 to 1e-10, float32 to 1e-5 relative);
where they differ (Keras clips and renormalises probabilities, Keras' mean
with sample weights, binary smoothing towards 1/2) a test shows the difference
on purpose. Also: GradientTape gradients, tf.function, graph-mode checks, and
``model.compile(loss=...)`` with a tiny model.
"""
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest
import tensorflow as tf

import xentlib
from xentlib import numpy as xn
from xentlib import tensorflow as xl

DTYPES = [np.float64, np.float32]
RTOL = {np.float64: 1e-10, np.float32: 1e-5}
# Elementwise log-probabilities near 0 (z - LSE(z) with both terms ~10) lose all
# relative precision in float32; an absolute floor of ~1 ulp of |z| covers that.
ATOL = {np.float64: 1e-12, np.float32: 1e-6}
KERAS_EPS = 1e-7  # keras.config.epsilon(): Keras clips probabilities to [eps, 1 - eps]


def close(ours, theirs, dtype, atol=0.0):
    ours = ours.numpy() if tf.is_tensor(ours) else np.asarray(ours)
    theirs = theirs.numpy() if tf.is_tensor(theirs) else np.asarray(theirs)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    np.testing.assert_allclose(ours, theirs, rtol=RTOL[dtype], atol=atol)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def logits(rng, shape, dtype, scale=3.0):
    return (rng.normal(size=shape) * scale).astype(dtype)


def distribution(rng, shape, dtype, low=0.0):
    p = rng.random(shape) + low
    return (p / p.sum(-1, keepdims=True)).astype(dtype)


def one_hot(rng, shape, dtype):
    return np.eye(shape[-1], dtype=dtype)[rng.integers(0, shape[-1], size=shape[:-1])]


# ---- tf.nn and tf.math ---------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [-1, 1])
def test_softmax_cross_entropy_with_logits(rng, dtype, axis):
    z = logits(rng, (4, 6, 5), dtype)
    y = np.moveaxis(distribution(rng, (4, 5, 6), dtype), -1, axis) if axis == 1 else \
        distribution(rng, (4, 6, 5), dtype)
    theirs = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=z, axis=axis)
    ours = xl.categorical_cross_entropy(y, z, from_logits=True, axis=axis, reduction="none")
    close(ours, theirs, dtype)
    close(xl.categorical_cross_entropy(y, z, from_logits=True, axis=axis),
          tf.reduce_mean(theirs), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_softmax_cross_entropy_with_logits(rng, dtype):
    z = logits(rng, (3, 7, 11), dtype)  # (batch, time, vocab): the token-level loss
    labels = rng.integers(0, 11, size=(3, 7))
    theirs = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=z)
    close(xl.sparse_categorical_cross_entropy(labels, z, from_logits=True, reduction="none"),
          theirs, dtype)
    close(xl.sparse_categorical_cross_entropy(labels, z, from_logits=True, reduction="sum"),
          tf.reduce_sum(theirs), dtype)
    close(xl.perplexity(labels, z), tf.exp(tf.reduce_mean(theirs)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_cross_entropy_with_logits(rng, dtype):
    z = logits(rng, (5, 4), dtype, scale=10.0)
    y = rng.random((5, 4)).astype(dtype)  # soft multi-label targets
    theirs = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z)
    close(xl.binary_cross_entropy(y, z, from_logits=True, reduction="none"), theirs, dtype)
    close(xl.binary_cross_entropy(y, z, from_logits=True), tf.reduce_mean(theirs), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_class", [False, True])
def test_weighted_cross_entropy_with_logits(rng, dtype, per_class):
    z = logits(rng, (6, 3), dtype)
    y = (rng.random((6, 3)) < 0.4).astype(dtype)
    w = (rng.random(3) * 4).astype(dtype) if per_class else dtype(2.5)
    theirs = tf.nn.weighted_cross_entropy_with_logits(labels=y, logits=z, pos_weight=w)
    ours = xl.binary_cross_entropy(y, z, from_logits=True, pos_weight=w, reduction="none")
    # The built-in computes (1 - y) z + (1 + (w - 1) y) softplus(-z), which cancels at y = 0,
    # z << 0 (z + softplus(-z) = softplus(z)); in float32 it is off by ~1 ulp of |z| there.
    close(ours, theirs, dtype, atol=ATOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_reduce_logsumexp_log_softmax_log_sigmoid(rng, dtype):
    z = logits(rng, (4, 9), dtype, scale=20.0)
    close(xl.logsumexp(z), tf.math.reduce_logsumexp(z, axis=-1), dtype)
    close(xl.logsumexp(z, axis=0, keepdims=True),
          tf.math.reduce_logsumexp(z, axis=0, keepdims=True), dtype)
    close(xl.log_softmax(z), tf.nn.log_softmax(z), dtype, atol=ATOL[dtype] * 20)
    close(xl.log_softmax(z, axis=0), tf.nn.log_softmax(z, axis=0), dtype, atol=ATOL[dtype] * 20)
    close(xl.softmax(z), tf.nn.softmax(z), dtype, atol=ATOL[dtype])
    close(xl.log_sigmoid(z), tf.math.log_sigmoid(z), dtype)
    close(xl.sigmoid(z), tf.math.sigmoid(z), dtype, atol=ATOL[dtype])


def test_extreme_logits_stay_finite_and_accurate_in_float32():
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], np.float32)
    close(xl.logsumexp(z), tf.math.reduce_logsumexp(z, axis=-1), np.float32)
    # Like tf.nn, log_softmax is (z - m) - log(sum): no rounding of LSE = -1e4 + log 3 to
    # float32's grid at 1e4 (spacing 1e-3), which z - LSE(z) would suffer.
    close(xl.log_softmax(z), tf.nn.log_softmax(z), np.float32)
    np.testing.assert_allclose(xl.log_softmax(z).numpy()[1], -np.log(3), rtol=1e-6)
    close(xl.log_sigmoid(z), tf.math.log_sigmoid(z), np.float32)
    labels = np.array([1, 2])
    close(xl.sparse_categorical_cross_entropy(labels, z, from_logits=True, reduction="none"),
          tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=z), np.float32)
    naive = -tf.math.log(tf.nn.softmax(z))  # the seeds' formula, evaluated literally
    assert np.isinf(naive.numpy()[0, 1])
    assert np.isfinite(xl.log_softmax(z).numpy()).all()


@pytest.mark.parametrize("dtype, big", [(tf.float16, 6e4), (tf.bfloat16, 1e30), (tf.float32, 1e4)])
def test_low_precision_losses_are_finite_and_float32(dtype, big):
    z = tf.constant([[big, -big, 0.0], [0.0, big, -big]], dtype)
    y = tf.constant([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]], dtype)
    reference = tf.nn.softmax_cross_entropy_with_logits(
        labels=tf.cast(y, tf.float64), logits=tf.cast(z, tf.float64))
    ours = xl.categorical_cross_entropy(y, z, from_logits=True, reduction="none")
    assert ours.dtype == tf.float32
    np.testing.assert_allclose(ours.numpy(), reference.numpy(), rtol=1e-6)
    sparse = xl.sparse_categorical_cross_entropy([1, 1], z, from_logits=True, reduction="none")
    np.testing.assert_allclose(sparse.numpy(), reference.numpy(), rtol=1e-6)
    bce = xl.binary_cross_entropy(y, z, from_logits=True)
    assert bce.dtype == tf.float32 and np.isfinite(bce.numpy())
    assert xl.log_sigmoid(z).dtype == dtype and xl.softmax(z).dtype == dtype
    assert np.isfinite(tf.cast(xl.logsumexp(z), tf.float32).numpy()).all()


def test_float64_stays_float64():
    z = tf.constant([[1.0, 2.0]], tf.float64)
    assert xl.softmax(z).dtype == tf.float64
    assert xl.sparse_categorical_cross_entropy([0], z, from_logits=True).dtype == tf.float64
    assert xl.entropy(xl.softmax(z)).dtype == tf.float64


# ---- Keras losses: where the conventions agree --------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_keras_categorical_crossentropy(rng, dtype, from_logits, smoothing):
    y = one_hot(rng, (8, 5), dtype)
    # probabilities kept well inside Keras' clip range [1e-7, 1 - 1e-7]
    pred = logits(rng, (8, 5), dtype) if from_logits else distribution(rng, (8, 5), dtype, low=0.05)
    keras_loss = keras.losses.CategoricalCrossentropy(
        from_logits=from_logits, label_smoothing=smoothing, dtype=dtype.__name__)
    ours = xl.categorical_cross_entropy(y, pred, from_logits=from_logits, label_smoothing=smoothing)
    close(ours, keras_loss(y, pred), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("from_logits", [True, False])
def test_keras_sparse_categorical_crossentropy_ignore_class(rng, dtype, from_logits):
    pred = logits(rng, (4, 6, 5), dtype) if from_logits else distribution(rng, (4, 6, 5), dtype, 0.05)
    labels = rng.integers(0, 5, size=(4, 6))
    labels[rng.random((4, 6)) < 0.3] = -1  # padding
    assert (labels == -1).any()
    keras_loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=from_logits, ignore_class=-1, dtype=dtype.__name__)
    ours = xl.sparse_categorical_cross_entropy(labels, pred, from_logits=from_logits, ignore_index=-1)
    # Keras' mask divides by the number of kept items: the same mean as ours.
    close(ours, keras_loss(labels, pred), dtype)
    per_item = keras.losses.SparseCategoricalCrossentropy(
        from_logits=from_logits, ignore_class=-1, reduction="none", dtype=dtype.__name__)
    close(xl.sparse_categorical_cross_entropy(labels, pred, from_logits=from_logits, ignore_index=-1,
                                              reduction="none"),
          per_item(labels, pred), dtype)


def test_keras_sample_weight_mean_differs_from_class_weight_mean(rng):
    """Keras divides a weighted sum by the number of items; we (and PyTorch) by the weights' sum."""
    z = logits(rng, (10, 4), np.float64)
    labels = rng.integers(0, 4, size=10)
    labels[:3] = -1
    w = np.array([1.0, 2.0, 5.0, 0.5])
    kept = labels != -1
    sample_weight = np.where(kept, w[np.where(kept, labels, 0)], 0.0)
    keras_mean = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=-1, dtype="float64")(labels, z, sample_weight=sample_weight)
    ours = xl.sparse_categorical_cross_entropy(labels, z, from_logits=True, ignore_index=-1,
                                               class_weight=w)
    assert abs(float(ours) - float(keras_mean)) > 0.01
    # same weighted sum, different divisor: sum(w[y]) (ours) vs number of kept items (Keras)
    close(ours * sample_weight.sum() / kept.sum(), keras_mean, np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_keras_binary_crossentropy(rng, dtype, from_logits, smoothing):
    y = (rng.random((6, 3)) < 0.5).astype(dtype)
    pred = logits(rng, (6, 3), dtype) if from_logits else \
        (0.01 + 0.98 * rng.random((6, 3))).astype(dtype)
    keras_loss = keras.losses.BinaryCrossentropy(
        from_logits=from_logits, label_smoothing=smoothing, dtype=dtype.__name__)
    ours = xl.binary_cross_entropy(y, pred, from_logits=from_logits, label_smoothing=smoothing)
    close(ours, keras_loss(y, pred), dtype)


def test_binary_smoothing_moves_targets_towards_one_half(rng):
    """Keras' (and our) binary smoothing is y(1-e) + e/2, not the categorical e/K with K = 1."""
    y = (rng.random((6, 3)) < 0.5).astype(np.float64)
    z = logits(rng, (6, 3), np.float64)
    eps = 0.2
    smoothed = xl.binary_cross_entropy(y, z, from_logits=True, label_smoothing=eps)
    half = xl.binary_cross_entropy(y * (1 - eps) + eps / 2, z, from_logits=True)
    k_equals_one = xl.binary_cross_entropy(y * (1 - eps) + eps, z, from_logits=True)
    keras_value = keras.losses.BinaryCrossentropy(
        from_logits=True, label_smoothing=eps, dtype="float64")(y, z)
    close(smoothed, half, np.float64)
    close(smoothed, keras_value, np.float64)
    assert abs(float(smoothed) - float(k_equals_one)) > 1e-3


@pytest.mark.parametrize("dtype", DTYPES)
def test_keras_kl_divergence(rng, dtype):
    p = distribution(rng, (7, 4), dtype, low=0.05)
    q = distribution(rng, (7, 4), dtype, low=0.05)
    theirs = keras.losses.KLDivergence(dtype=dtype.__name__)(p, q)  # Keras: (y_true, y_pred)
    close(tf.reduce_mean(xl.kl_divergence(p, q)), theirs, dtype)
    per_row = keras.losses.KLDivergence(reduction="none", dtype=dtype.__name__)(p, q)
    close(xl.kl_divergence(p, q), per_row, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_keras_mean_squared_error(rng, dtype):
    y, pred = logits(rng, (5, 3), dtype), logits(rng, (5, 3), dtype)
    close(xl.mean_squared_error(y, pred), keras.losses.MeanSquaredError(dtype=dtype.__name__)(y, pred),
          dtype)
    # 'none' differs on purpose: Keras averages the last axis, we keep every element
    keras_rows = keras.losses.MeanSquaredError(reduction="none", dtype=dtype.__name__)(y, pred)
    ours = xl.mean_squared_error(y, pred, reduction="none")
    assert ours.shape == (5, 3) and keras_rows.shape == (5,)
    close(tf.reduce_mean(ours, axis=-1), keras_rows, dtype)


# ---- Keras losses: where the conventions differ, on purpose ----------------------------

def test_keras_clips_probabilities_ours_is_exact():
    y = np.array([[0.0, 1.0, 0.0]], np.float32)
    q = np.array([[0.5, 0.0, 0.5]], np.float32)  # the true class has probability 0
    keras_cce = keras.losses.CategoricalCrossentropy()(y, q)
    assert float(keras_cce) == pytest.approx(-math.log(KERAS_EPS), rel=1e-4)  # clipped: 16.118
    assert np.isposinf(xl.categorical_cross_entropy(y, q).numpy())  # exact: -log 0 = inf
    keras_bce = keras.losses.BinaryCrossentropy()([[1.0]], [[0.0]])
    assert float(keras_bce) == pytest.approx(-math.log(KERAS_EPS), rel=1e-4)
    assert np.isposinf(xl.binary_cross_entropy([[1.0]], [[0.0]]).numpy())
    # a perfect prediction costs exactly 0 here; Keras' upper clip 1 - 1e-7 leaves ~1.2e-7
    perfect = np.array([[0.0, 1.0]], np.float32)
    assert float(xl.binary_cross_entropy(perfect, perfect)) == 0.0
    assert float(keras.losses.BinaryCrossentropy()(perfect, perfect)) > 1e-8
    # KL: Keras clips p = 0 up to 1e-7 and so counts a term that is 0 by 0 log 0 = 0
    p = np.array([[0.0, 0.5, 0.5]])
    r = np.array([[0.8, 0.1, 0.1]])
    exact = 0.5 * math.log(0.5 / 0.1) * 2
    assert float(xl.kl_divergence(p, r)[0]) == pytest.approx(exact, rel=1e-12)
    keras_kl = float(keras.losses.KLDivergence(dtype="float64")(p, r))
    assert keras_kl != pytest.approx(exact, rel=1e-9)
    assert keras_kl == pytest.approx(exact + KERAS_EPS * math.log(KERAS_EPS / 0.8), rel=1e-9)


def test_keras_renormalises_rows_ours_raises():
    y = np.array([[1.0, 0.0]])
    bad = np.array([[0.2, 0.2]])  # sums to 0.4: not a distribution
    keras_value = keras.losses.CategoricalCrossentropy(dtype="float64")(y, bad)
    assert float(keras_value) == pytest.approx(math.log(2.0), rel=1e-12)  # silently -log(0.2/0.4)
    with pytest.raises(ValueError, match="y_pred must sum to 1"):
        xl.categorical_cross_entropy(y, bad)
    with xentlib.value_checks(False):  # unchecked, the formula is applied as written
        assert float(xl.categorical_cross_entropy(y, bad)) == pytest.approx(-math.log(0.2), rel=1e-12)


def test_keras_all_ignored_gives_zero_like_ours():
    z = np.zeros((3, 4))
    labels = np.full(3, -1)
    keras_value = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=-1, dtype="float64")(labels, z)
    ours = xl.sparse_categorical_cross_entropy(labels, z, from_logits=True, ignore_index=-1)
    assert float(keras_value) == 0.0 and float(ours) == 0.0
    with pytest.raises(ValueError, match="ignore_index"):  # but no perplexity of zero tokens
        xl.perplexity(labels, z, ignore_index=-1)


# ---- gradients -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_analytic_gradients_equal_gradient_tape(rng, dtype):
    z = tf.Variable(logits(rng, (6, 5), dtype))
    y = distribution(rng, (6, 5), dtype)
    yb = rng.random((6, 5)).astype(dtype)
    with tf.GradientTape(persistent=True) as tape:
        builtin = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=z))
        ours = xl.categorical_cross_entropy(y, z, from_logits=True, reduction="sum")
        builtin_b = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=yb, logits=z))
        ours_b = xl.binary_cross_entropy(yb, z, from_logits=True, reduction="sum")
        ours_mean = xl.categorical_cross_entropy(y, z, from_logits=True)
    analytic = xl.softmax_cross_entropy_grad(y, z)
    analytic_b = xl.sigmoid_cross_entropy_grad(yb, z)
    atol = ATOL[dtype]
    close(analytic, tape.gradient(builtin, z), dtype, atol)
    close(analytic, tape.gradient(ours, z), dtype, atol)
    close(analytic / 6, tape.gradient(ours_mean, z), dtype, atol)
    close(analytic_b, tape.gradient(builtin_b, z), dtype, atol)
    close(analytic_b, tape.gradient(ours_b, z), dtype, atol)


def test_sparse_gradient_equals_builtin(rng):
    z = tf.Variable(logits(rng, (4, 3, 6), np.float64))
    labels = rng.integers(0, 6, size=(4, 3))
    with tf.GradientTape(persistent=True) as tape:
        builtin = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=z))
        ours = xl.sparse_categorical_cross_entropy(labels, z, from_logits=True, reduction="sum")
    close(tape.gradient(ours, z), tape.gradient(builtin, z), np.float64)


ZERO_PROBABILITY_CASES = {
    "categorical": lambda y, q: xl.categorical_cross_entropy(y, q),
    "sparse": lambda y, q: xl.sparse_categorical_cross_entropy([1, 1], q),
    "sparse_ignored": lambda y, q: xl.sparse_categorical_cross_entropy([1, -1], q, ignore_index=-1),
    "sparse_ignored_smoothed": lambda y, q: xl.sparse_categorical_cross_entropy(
        [1, -1], tf.stack([tf.fill([3], tf.constant(1 / 3)), q[1]]), ignore_index=-1,
        label_smoothing=0.1),
    "binary": lambda y, q: xl.binary_cross_entropy(y, q),
    "binary_smoothed_logits": lambda y, q: xl.binary_cross_entropy(y, q * 50, from_logits=True,
                                                                   label_smoothing=0.1),
    "cross_entropy": lambda y, q: tf.reduce_sum(xl.cross_entropy(y, q)),
    "kl_divergence": lambda y, q: tf.reduce_sum(xl.kl_divergence(y, q)),
    "entropy": lambda y, q: tf.reduce_sum(xl.entropy(q)),
    "joint_entropy": lambda y, q: xl.joint_entropy(q / 2),
    "conditional_entropy": lambda y, q: xl.conditional_entropy(q / 2),
    "mutual_information": lambda y, q: xl.mutual_information(q / 2),
}


@pytest.mark.parametrize("case", sorted(ZERO_PROBABILITY_CASES))
def test_no_nan_gradients_at_zero_probabilities(case):
    y = tf.constant([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    q = tf.Variable([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])  # zeros exactly where y is 0
    with tf.GradientTape() as tape:
        loss = ZERO_PROBABILITY_CASES[case](y, q)
    grad = tape.gradient(loss, q)
    assert np.isfinite(loss.numpy()).all(), loss
    assert grad is not None and np.isfinite(grad.numpy()).all(), grad


def test_naive_xlogy_would_give_nan_gradient():
    """The guard above matters: y * log(q) at y = q = 0 has a NaN gradient."""
    y = tf.constant([0.0, 1.0])
    q = tf.Variable([0.0, 1.0])
    with tf.GradientTape() as tape:
        naive = -tf.reduce_sum(y * tf.math.log(q))
    assert np.isnan(tape.gradient(naive, q).numpy()).any()


# ---- tf.function and graph-mode checks -------------------------------------------------

GRAPH_CASES = {
    "categorical": (lambda y, z: xl.categorical_cross_entropy(y, z, from_logits=True,
                                                               label_smoothing=0.1), "float"),
    "categorical_prob": (lambda y, z: xl.categorical_cross_entropy(y, xl.softmax(z)), "float"),
    "sparse": (lambda labels, z: xl.sparse_categorical_cross_entropy(
        labels, z, from_logits=True, ignore_index=-1, class_weight=[1.0, 2.0, 0.5, 1.0],
        label_smoothing=0.1), "int"),
    "perplexity": (lambda labels, z: xl.perplexity(labels, z, ignore_index=-1), "int"),
    "binary": (lambda y, z: xl.binary_cross_entropy(y, z, from_logits=True,
                                                    pos_weight=[1.0, 2.0, 3.0, 4.0]), "float"),
    "binary_prob": (lambda y, z: xl.binary_cross_entropy(y, xl.sigmoid(z), reduction="none"), "float"),
    "kl": (lambda y, z: xl.kl_divergence(y, xl.softmax(z)), "float"),
    "entropy": (lambda y, z: xl.entropy(xl.softmax(z), base=2), "float"),
    "mse": (lambda y, z: xl.mean_squared_error(y, z), "float"),
    "gaussian_nll": (lambda y, z: xl.gaussian_nll(y, z, 0.5, reduction="sum"), "float"),
    "smooth_labels": (lambda y, z: xl.smooth_labels(y, 0.2), "float"),
    "grad": (lambda y, z: xl.softmax_cross_entropy_grad(y, z), "float"),
    "joint": (lambda y, z: xl.mutual_information(tf.reshape(xl.softmax(tf.reshape(z, [-1])), [-1, 4])),
              "float"),
}


@pytest.mark.parametrize("case", sorted(GRAPH_CASES))
def test_tf_function_equals_eager(rng, case):
    fn, kind = GRAPH_CASES[case]
    z = tf.constant(logits(rng, (5, 4), np.float32))
    if kind == "int":
        target = tf.constant([0, 3, -1, 2, 1])
        spec = tf.TensorSpec([None], tf.int32)
    else:
        target = tf.constant(one_hot(rng, (5, 4), np.float32))
        spec = tf.TensorSpec([None, 4], tf.float32)
    graph_fn = tf.function(fn, input_signature=[spec, tf.TensorSpec([None, 4], tf.float32)])
    eager = fn(target, z)
    graph = graph_fn(target, z)
    np.testing.assert_allclose(graph.numpy(), eager.numpy(), rtol=1e-6)
    assert graph_fn.experimental_get_tracing_count() == 1


def test_graph_mode_value_checks_raise_invalid_argument_with_the_message():
    @tf.function
    def loss(y, q):
        return xl.categorical_cross_entropy(y, q)

    y = tf.constant([[0.0, 1.0]])
    assert float(loss(y, tf.constant([[0.25, 0.75]]))) == pytest.approx(-math.log(0.75))
    with pytest.raises(tf.errors.InvalidArgumentError, match="y_pred must sum to 1 along axis 1") as err:
        loss(y, tf.constant([[0.25, 0.25]]))
    assert "0.5" in err.value.message  # the offending sum is reported

    @tf.function
    def sparse(labels, z):
        return xl.sparse_categorical_cross_entropy(labels, z, from_logits=True, ignore_index=-1)

    for _ in range(20):  # the check must run before the gather, which fails with an unnamed error
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels must lie in \[0, 3\)"):
            sparse(tf.constant([0, 7, -1]), tf.zeros([3, 3]))


def test_value_checks_off_skips_graph_assertions():
    with xentlib.value_checks(False):
        @tf.function
        def loss(y, q):
            return xl.categorical_cross_entropy(y, q)

        value = loss(tf.constant([[0.0, 1.0]]), tf.constant([[0.25, 0.25]]))
    assert float(value) == pytest.approx(-math.log(0.25))


def test_graph_mode_shape_and_option_errors_raise_at_trace_time():
    @tf.function
    def mismatched(y, q):
        return xl.binary_cross_entropy(y, q)

    with pytest.raises(ValueError, match="y_true has shape"):
        mismatched(tf.zeros([2, 3]), tf.zeros([2, 4]))

    @tf.function
    def bad_dtype(labels, z):
        return xl.sparse_categorical_cross_entropy(labels, z)

    with pytest.raises(TypeError, match="labels must hold integer class indices"):
        bad_dtype(tf.zeros([2]), tf.fill([2, 3], 1 / 3))


@pytest.mark.parametrize("call", [
    lambda m: m.entropy([0.5, 0.7]),
    lambda m: m.categorical_cross_entropy([[0.0, 1.0]], [[0.3, 0.7]], reduction="avg"),
    lambda m: m.sparse_categorical_cross_entropy([0, 4], [[0.5, 0.5]] * 2),
    lambda m: m.sparse_categorical_cross_entropy([0.0, 1.0], [[0.5, 0.5]] * 2),
    lambda m: m.binary_cross_entropy([1.0], [1.5]),
    lambda m: m.binary_cross_entropy([[1.0, 0.0]], [[0.3, 0.4]], pos_weight=[1.0, 2.0, 3.0]),
    lambda m: m.log_softmax([1.0, np.nan]),
    lambda m: m.kl_divergence([0.5, 0.5], [1.0]),
], ids=["sum", "reduction", "label_range", "label_dtype", "prob_range", "pos_weight", "nan", "shape"])
def test_eager_errors_match_numpy_word_for_word(call):
    with pytest.raises((ValueError, TypeError)) as reference:
        call(xn)
    with pytest.raises(type(reference.value)) as ours:
        call(xl)
    assert str(ours.value) == str(reference.value)


# ---- Keras: model.compile(loss=...) ----------------------------------------------------

def _fit(loss, x, y, units, activation=None, epochs=8):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(units, activation=activation)])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss)
    history = model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, shuffle=False)
    return model, history.history["loss"]


@pytest.fixture(scope="module")
def data():
    r = np.random.default_rng(0)
    x = r.normal(size=(96, 4)).astype(np.float32)
    labels = np.argmax(x[:, :3] + 0.3 * r.normal(size=(96, 3)), axis=1)
    return x, labels


def test_keras_fit_categorical_plain_function_and_adapter(data):
    x, labels = data
    y = np.eye(3, dtype=np.float32)[labels]
    model, losses = _fit(xl.categorical_cross_entropy, x, y, 3, "softmax")
    assert losses[-1] < 0.8 * losses[0]
    evaluated = model.evaluate(x, y, batch_size=len(x), verbose=0)
    ours = xl.categorical_cross_entropy(y, model(x))
    assert evaluated == pytest.approx(float(ours), rel=1e-5)
    adapted = xl.keras_loss("categorical_cross_entropy", from_logits=True, label_smoothing=0.1)
    model, losses = _fit(adapted, x, y, 3)
    evaluated = model.evaluate(x, y, batch_size=len(x), verbose=0)
    ours = xl.categorical_cross_entropy(y, model(x), from_logits=True, label_smoothing=0.1)
    assert evaluated == pytest.approx(float(ours), rel=1e-5)
    assert losses[-1] < 0.8 * losses[0]


def test_keras_fit_sparse_with_ignore_index(data):
    x, labels = data
    labels = labels.copy()
    labels[::4] = -1  # a quarter of the items are padding
    with pytest.raises(TypeError, match="labels must hold integer class indices"):
        _fit(xl.sparse_categorical_cross_entropy, x, labels, 3, epochs=1)  # why keras_loss exists
    loss = xl.keras_loss(xl.sparse_categorical_cross_entropy, from_logits=True, ignore_index=-1)
    model, losses = _fit(loss, x, labels[:, None], 3)  # (N, 1) labels, as often stored
    assert losses[-1] < 0.8 * losses[0]
    evaluated = model.evaluate(x, labels, batch_size=len(x), verbose=0)
    ours = xl.sparse_categorical_cross_entropy(labels, model(x), from_logits=True, ignore_index=-1)
    assert evaluated == pytest.approx(float(ours), rel=1e-5)
    keras_ref = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    assert evaluated == pytest.approx(float(keras_ref(labels, model(x))), rel=1e-5)


def test_keras_fit_binary(data):
    x, labels = data
    y = (labels == 0).astype(np.float32)  # shape (N,) against predictions (N, 1)
    loss = xl.keras_loss("binary_cross_entropy", from_logits=True, label_smoothing=0.1)
    model, losses = _fit(loss, x, y, 1)
    assert losses[-1] < 0.8 * losses[0]
    evaluated = model.evaluate(x, y, batch_size=len(x), verbose=0)
    ours = xl.binary_cross_entropy(y[:, None], model(x), from_logits=True, label_smoothing=0.1)
    keras_ref = keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1)
    assert evaluated == pytest.approx(float(ours), rel=1e-5)
    assert evaluated == pytest.approx(float(keras_ref(y[:, None], model(x))), rel=1e-5)
    _, plain = _fit(xl.binary_cross_entropy, x, y[:, None], 1, "sigmoid", epochs=2)
    assert np.isfinite(plain).all()


def test_keras_adapter_takes_sample_weight_and_refuses_unknown_names():
    loss = xl.keras_loss("sparse_categorical_cross_entropy", from_logits=True)
    z = np.array([[2.0, 0.5], [0.0, 0.0]], np.float32)
    weighted = loss(np.array([0.0, 1.0]), z, sample_weight=np.array([1.0, 0.0]))
    keras_ref = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert float(weighted) == pytest.approx(
        float(keras_ref(np.array([0, 1]), z, sample_weight=np.array([1.0, 0.0]))), rel=1e-6)
    with pytest.raises(ValueError, match="fn must name a loss"):
        xl.keras_loss("softmax_cross_entropy")


def test_graph_mode_checks_unknown_batch_sizes_when_run():
    spec = tf.TensorSpec([None, 3], tf.float32)

    @tf.function(input_signature=[spec, spec])
    def loss(y, z):
        return xl.binary_cross_entropy(y, z, from_logits=True)

    assert np.isfinite(loss(tf.zeros([2, 3]), tf.zeros([2, 3])).numpy())
    with pytest.raises(tf.errors.InvalidArgumentError, match="y_true and y_pred must have the same shape"):
        loss(tf.zeros([1, 3]), tf.zeros([4, 3]))  # would silently broadcast otherwise


def test_zero_weight_class_with_zero_probability_adds_nothing():
    q = tf.Variable([[0.5, 0.5, 0.0], [0.2, 0.8, 0.0]], dtype=tf.float64)
    with tf.GradientTape() as tape:
        loss = xl.sparse_categorical_cross_entropy([0, 1], q, class_weight=[1.0, 2.0, 0.0],
                                                   label_smoothing=0.1, reduction="sum")
    expected = xn.sparse_categorical_cross_entropy([0, 1], q.numpy(), class_weight=[1.0, 2.0, 0.0],
                                                   label_smoothing=0.1, reduction="sum")
    close(loss, expected, np.float64)
    assert np.isfinite(tape.gradient(loss, q).numpy()).all()


def test_graph_mode_checks_unknown_label_shapes_when_run():
    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, 3], tf.float32)])
    def loss(labels, z):
        return xl.sparse_categorical_cross_entropy(labels, z, from_logits=True)

    assert np.isfinite(loss(tf.constant([0, 2]), tf.zeros([2, 3])).numpy())
    for _ in range(20):  # checked before the gather, which would fail with an unnamed error
        with pytest.raises(tf.errors.InvalidArgumentError, match="labels and y_pred without its class axis"):
            loss(tf.constant([0]), tf.zeros([4, 3]))
