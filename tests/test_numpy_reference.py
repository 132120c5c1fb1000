"""The NumPy reference against SciPy and scikit-learn, conventions included.

Where a library's convention differs from ours (SciPy normalises its inputs,
scikit-learn clips probabilities), the test shows the difference on purpose.
"""
import numpy as np
import pytest
import scipy.special as sp
import scipy.stats as st
from sklearn.metrics import log_loss, mutual_info_score

from conftest import random_distribution
from xentlib import numpy as xl

RNG = np.random.default_rng(20261122)


def test_entropy_cross_entropy_kl_match_scipy_stats():
    p, q = random_distribution(RNG, (6, 5), zeros=True), random_distribution(RNG, (6, 5))
    np.testing.assert_allclose(xl.entropy(p), st.entropy(p, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(xl.entropy(p, base=2), st.entropy(p, base=2, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(xl.kl_divergence(p, q), st.entropy(p, q, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(xl.cross_entropy(p, q), -sp.xlogy(p, q).sum(-1), rtol=1e-12)
    np.testing.assert_allclose(xl.kl_divergence(p, q, base=10), sp.rel_entr(p, q).sum(-1) / np.log(10),
                               rtol=1e-12)


def test_scipy_normalises_silently_where_we_raise():
    unnormalised = np.array([0.3, 0.3, 0.6])
    assert st.entropy(unnormalised) == pytest.approx(xl.entropy(unnormalised / 1.2))
    with pytest.raises(ValueError, match="p must sum to 1"):
        xl.entropy(unnormalised)


def test_scipy_entropy_defaults_to_axis_0_ours_to_the_last_axis():
    p = random_distribution(RNG, (3, 4))  # rows are distributions
    np.testing.assert_allclose(xl.entropy(p), st.entropy(p, axis=1), rtol=1e-12)
    assert st.entropy(p).shape == (4,)  # SciPy: columns, each renormalised


def test_building_blocks_match_scipy_special():
    z = RNG.normal(0, 20, (5, 7))
    np.testing.assert_allclose(xl.logsumexp(z), sp.logsumexp(z, axis=-1), rtol=1e-13)
    np.testing.assert_allclose(xl.softmax(z), sp.softmax(z, axis=-1), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(xl.log_softmax(z), sp.log_softmax(z, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(xl.sigmoid(z), sp.expit(z), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(xl.log_sigmoid(z), sp.log_expit(z), rtol=1e-12)


def test_naive_formulas_fail_where_the_stable_ones_do_not():
    z = np.array([1000.0, 0.0])
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        assert np.isinf(np.log(np.exp(z).sum()))
        assert np.isnan(np.exp(z) / np.exp(z).sum()).any()
        assert np.isneginf(np.log(np.exp(-z) / np.exp(-z).sum())).any()
    assert xl.logsumexp(z) == 1000.0
    np.testing.assert_array_equal(xl.softmax(z), [1.0, 0.0])
    np.testing.assert_array_equal(xl.log_softmax(-z), [-1000.0, 0.0])


def test_log_loss_matches_sklearn_away_from_the_clip():
    labels = RNG.integers(0, 4, 50)
    q = random_distribution(RNG, (50, 4))
    ours = xl.sparse_categorical_cross_entropy(labels, q)
    np.testing.assert_allclose(ours, log_loss(labels, q, labels=range(4)), rtol=1e-12)
    np.testing.assert_allclose(xl.categorical_cross_entropy(np.eye(4)[labels], q), ours, rtol=1e-12)
    binary, pb = (RNG.random(40) < 0.5).astype(float), RNG.uniform(0.01, 0.99, 40)
    np.testing.assert_allclose(xl.binary_cross_entropy(binary, pb), log_loss(binary, pb), rtol=1e-12)


def test_sklearn_weighted_log_loss_divides_by_the_weight_sum_like_our_class_weights():
    labels = np.array([0, 1, 1, 2])
    q = random_distribution(RNG, (4, 3))
    w = np.array([0.5, 2.0, 1.0])
    np.testing.assert_allclose(xl.sparse_categorical_cross_entropy(labels, q, class_weight=w),
                               log_loss(labels, q, sample_weight=w[labels]), rtol=1e-12)


def test_sklearn_clips_probabilities_where_we_are_exact():
    y, q = np.array([1.0, 0.0]), np.array([0.0, 0.0])  # the positive example gets probability 0
    assert np.isinf(xl.binary_cross_entropy(y, q))
    clipped = log_loss(y, q, labels=[0, 1])
    eps = np.finfo(np.float64).eps
    assert clipped == pytest.approx(-np.log(eps) / 2)  # finite: the clip hides a certain mistake


def test_mutual_information_matches_sklearn_contingency():
    counts = RNG.integers(0, 20, (4, 5)).astype(float)
    counts[1, 2] = 0
    ours = xl.mutual_information(counts / counts.sum())
    np.testing.assert_allclose(ours, mutual_info_score(None, None, contingency=counts), rtol=1e-10)


def test_information_identities_on_a_hand_made_table():
    table = np.array([[1 / 8, 1 / 16, 1 / 32, 1 / 32],
                      [1 / 16, 1 / 8, 1 / 32, 1 / 32],
                      [1 / 16, 1 / 16, 1 / 16, 1 / 16],
                      [1 / 4, 0, 0, 0]])  # Cover & Thomas, Example 2.2.1: rows y, columns x
    p_xy = table.T  # ours: X along axis -2
    assert xl.joint_entropy(p_xy, base=2) == pytest.approx(27 / 8)
    assert xl.conditional_entropy(p_xy, base=2) == pytest.approx(13 / 8)  # H(Y|X)
    assert xl.conditional_entropy(p_xy.T, base=2) == pytest.approx(11 / 8)  # H(X|Y)
    assert xl.mutual_information(p_xy, base=2) == pytest.approx(3 / 8)


def test_seed_example_in_nats_and_bits():
    p, q = [0.6, 0.2, 0.2], [0.5, 0.3, 0.2]
    nats, bits = xl.cross_entropy(p, q), xl.cross_entropy(p, q, base=2)
    assert bits == pytest.approx(nats / np.log(2), rel=1e-14)
    assert nats == pytest.approx(-(0.6 * np.log(0.5) + 0.2 * np.log(0.3) + 0.2 * np.log(0.2)), rel=1e-14)


def test_perplexity_is_exp_of_mean_nll_over_kept_tokens():
    logits = RNG.normal(size=(2, 5, 9))
    labels = RNG.integers(0, 9, (2, 5))
    labels[1, 3:] = -1
    kept = labels != -1
    nll = -np.take_along_axis(sp.log_softmax(logits, -1), np.where(kept, labels, 0)[..., None], -1)[..., 0]
    expected = np.exp(nll[kept].mean())
    assert xl.perplexity(labels, logits, ignore_index=-1) == pytest.approx(expected, rel=1e-12)


def test_gradient_descent_minimises_a_softmax_regression():
    x = RNG.normal(size=(60, 3))
    labels = (x @ RNG.normal(size=(3, 3))).argmax(1)  # linearly separable classes
    onehot = np.eye(3)[labels]

    def loss_and_grad(w):
        z = x @ w
        return (xl.categorical_cross_entropy(onehot, z, from_logits=True),
                x.T @ xl.softmax_cross_entropy_grad(onehot, z) / len(x))

    w, losses = xl.gradient_descent(loss_and_grad, np.zeros((3, 3)), learning_rate=0.5, steps=200)
    assert losses[0] == pytest.approx(np.log(3))
    assert (np.diff(losses) <= 1e-12).all()  # monotone for a small enough step on a convex loss
    assert losses[-1] < 0.5 * losses[0]
    assert ((x @ w).argmax(1) == labels).mean() > 0.85


def test_gradient_descent_stops_loudly_on_divergence():
    with pytest.raises(ValueError, match="lower learning_rate"):
        xl.gradient_descent(lambda t: (np.exp(t).sum(), np.exp(t) * -1e308), [1.0], learning_rate=1.0, steps=5)


def test_float16_losses_come_back_in_float32_and_do_not_overflow():
    z = np.array([[6e4, -6e4]], dtype=np.float16)
    loss = xl.sparse_categorical_cross_entropy(np.array([1]), z, from_logits=True)
    assert loss.dtype == np.float32 and loss == pytest.approx(1.2e5, rel=1e-3)
    assert xl.log_softmax(z).dtype == np.float16
