"""Calibration metrics and temperature scaling: the definitions, in every backend."""
import numpy as np
import pytest
import scipy.optimize

from xentlib import metrics
from xentlib import numpy as xnp

RNG = np.random.default_rng(5)
PROBS = RNG.dirichlet(np.ones(4) * 0.5, size=300)
LABELS = RNG.integers(0, 4, 300)


def by_definition(labels, probs, n_bins, binning):
    """(ECE, MCE) with the bins written out one by one, as the docstring defines them."""
    confidence, correct = probs.max(-1), probs.argmax(-1) == labels
    n = len(labels)
    if binning == "width":
        members = [(confidence > b / n_bins) & (confidence <= (b + 1) / n_bins)
                   for b in range(n_bins)]
        members[0] |= confidence == 0
    else:
        rank = np.empty(n, int)
        rank[np.argsort(confidence, kind="stable")] = np.arange(n)
        members = [rank * n_bins // n == b for b in range(n_bins)]
    gaps = [(m.sum(), abs(correct[m].mean() - confidence[m].mean())) for m in members if m.any()]
    return sum(c * g for c, g in gaps) / n, max(g for _, g in gaps)


@pytest.mark.parametrize("binning", ["width", "mass"])
@pytest.mark.parametrize("n_bins", [1, 7, 15])
def test_ece_and_mce_follow_their_definition(backend, binning, n_bins):
    ece, mce = by_definition(LABELS, PROBS, n_bins, binning)
    kw = dict(n_bins=n_bins, binning=binning)
    np.testing.assert_allclose(backend.call("expected_calibration_error", LABELS, PROBS, **kw),
                               ece, rtol=1e-12)
    np.testing.assert_allclose(backend.call("maximum_calibration_error", LABELS, PROBS, **kw),
                               mce, rtol=1e-12)


def test_equal_width_ece_equals_the_chapter_4_metric():
    for n_bins in (5, 10):
        np.testing.assert_allclose(xnp.expected_calibration_error(LABELS, PROBS, n_bins=n_bins),
                                   metrics.expected_calibration_error(LABELS, PROBS, n_bins),
                                   rtol=1e-12)


def test_mass_bins_hold_equal_counts_and_mce_bounds_ece():
    ece = xnp.expected_calibration_error(LABELS, PROBS, n_bins=6, binning="mass")
    assert ece <= xnp.maximum_calibration_error(LABELS, PROBS, n_bins=6, binning="mass")
    # 300 items in 6 bins: ranks 0-49 in bin 0, ..., so each bin is one sixth of the data
    rank = np.empty(300, int)
    rank[np.argsort(PROBS.max(-1), kind="stable")] = np.arange(300)
    assert np.bincount(rank * 6 // 300).tolist() == [50] * 6


def test_calibrated_predictions_have_a_small_ece_and_confident_mistakes_a_large_one():
    probs = RNG.dirichlet(np.ones(3), size=20_000)
    drawn = np.array([RNG.choice(3, p=p) for p in probs])   # labels drawn from the predictions
    assert xnp.expected_calibration_error(drawn, probs, binning="mass") < 0.02
    wrong = np.tile([0.99, 0.01], (10, 1))
    assert xnp.expected_calibration_error(np.ones(10, int), wrong) == pytest.approx(0.99)


def test_axis_and_batch_shape(backend):
    probs = PROBS.reshape(3, 100, 4)
    got = backend.call("expected_calibration_error", LABELS.reshape(3, 100),
                       np.moveaxis(probs, -1, 1).copy(), axis=1, binning="mass")
    np.testing.assert_allclose(got, xnp.expected_calibration_error(LABELS, PROBS, binning="mass"),
                               rtol=1e-12)


def test_brier_score(backend):
    expected = ((PROBS - np.eye(4)[LABELS]) ** 2).sum(-1).mean()
    np.testing.assert_allclose(backend.call("brier_score", LABELS, PROBS), expected, rtol=1e-12)
    # two classes: twice scikit-learn's binary brier_score_loss
    from sklearn.metrics import brier_score_loss
    p = RNG.random(50)
    y = (RNG.random(50) < p).astype(int)
    np.testing.assert_allclose(backend.call("brier_score", y, np.stack([1 - p, p], -1)),
                               2 * brier_score_loss(y, p), rtol=1e-12)


def test_brier_score_gradient_in_torch():
    import torch

    from xentlib import torch as xt
    p = torch.tensor(PROBS[:5], requires_grad=True)
    xt.brier_score(torch.tensor(LABELS[:5]), p, reduction="sum").backward()
    np.testing.assert_allclose(p.grad.numpy(), 2 * (PROBS[:5] - np.eye(4)[LABELS[:5]]),
                               rtol=1e-12)


def nll_at(logits, labels, t):
    z = logits / t
    return np.mean(np.logaddexp.reduce(z, axis=-1) - z[np.arange(len(labels)), labels])


def test_fit_temperature_minimises_the_nll(backend):
    logits = RNG.normal(0, 3, (400, 5))
    true_t = 2.5      # labels drawn from softmax(logits / 2.5): the fitted T should be near it
    p = np.exp(logits / true_t)
    labels = np.array([RNG.choice(5, p=row / row.sum()) for row in p])
    t = float(backend.call("fit_temperature", logits, labels))
    best = scipy.optimize.minimize_scalar(lambda s: nll_at(logits, labels, np.exp(s)),
                                          bounds=(-3, 3), method="bounded",
                                          options={"xatol": 1e-12})
    np.testing.assert_allclose(t, np.exp(best.x), rtol=1e-6)
    assert abs(t - true_t) < 0.4


def test_fit_temperature_goes_to_zero_when_every_prediction_is_right():
    logits, labels = np.array([[3.0, 0.0], [0.0, 3.0]]), np.array([0, 1])
    t = float(xnp.fit_temperature(logits, labels))
    assert t < 0.1 and nll_at(logits, labels, t) < 1e-12   # flat in float64 from there on


@pytest.mark.parametrize("fn, kwargs, match", [
    ("expected_calibration_error", {"n_bins": 0}, "^n_bins must be"),
    ("maximum_calibration_error", {"binning": "quantile"}, "^binning must be 'width'"),
])
def test_bad_options_name_the_argument(backend, fn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(backend.xl, fn)(backend.asarray(LABELS), backend.asarray(PROBS), **kwargs)


def test_labels_and_probs_are_checked(backend):
    with pytest.raises(ValueError, match=r"^labels must lie in \[0, 4\)"):
        backend.xl.expected_calibration_error(backend.asarray(LABELS + 1), backend.asarray(PROBS))
    with pytest.raises(ValueError, match="^probs must sum to 1"):
        backend.xl.brier_score(backend.asarray(LABELS), backend.asarray(PROBS * 0.5))
