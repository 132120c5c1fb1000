"""xentlib.torch against PyTorch's own built-ins.

Where the conventions agree the values must agree: float64 to 1e-10, float32
to 1e-5 (relative). Where they differ (class axis 1, the -100 log clamp of
``F.binary_cross_entropy``, ``kl_div``'s ``'mean'``, the NaN of an all-ignored
``'mean'``, float16 overflow) the tests show the difference on purpose.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import xentlib
from xentlib import torch as xl

DTYPES = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6)}
dtypes = pytest.mark.parametrize("dtype", list(DTYPES), ids=["float64", "float32"])


def close(got, expected, dtype=None):
    """Same dtype (when given) and values within the tolerance of that dtype."""
    dtype = dtype or expected.dtype
    assert got.dtype == dtype, (got.dtype, dtype)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    torch.testing.assert_close(got, expected.to(dtype), equal_nan=False, **DTYPES[dtype])


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def logits(*shape, dtype=torch.float64, seed=0, scale=3.0):
    return (scale * torch.randn(*shape, generator=gen(seed), dtype=torch.float64)).to(dtype)


def probs(*shape, dtype=torch.float64, seed=1, zeros=False, axis=-1):
    p = torch.rand(*shape, generator=gen(seed), dtype=torch.float64) + 0.05
    if zeros:
        p = torch.where(torch.rand(*shape, generator=gen(seed + 1), dtype=torch.float64) < 0.3, 0.0, p)
        p.select(axis, 0).add_(0.1)
    return (p / p.sum(dim=axis, keepdim=True)).to(dtype)


def labels(num_classes, *shape, seed=2):
    return torch.randint(0, num_classes, shape, generator=gen(seed))


# ---- building blocks ---------------------------------------------------------------

HAND_MADE = [[1000.0, 1000.0, -1000.0], [0.0, -1e4, 1e4], [1e-3, 2e-3, 3e-3], [-50.0, 0.0, 50.0]]


@dtypes
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_building_blocks_equal_torch(dtype, axis):
    for z in (logits(4, 3, 6, dtype=dtype), torch.tensor(HAND_MADE, dtype=dtype).unsqueeze(1).expand(4, 2, 3)):
        close(xl.logsumexp(z, axis=axis), torch.logsumexp(z, dim=axis))
        close(xl.logsumexp(z, axis=axis, keepdims=True), torch.logsumexp(z, dim=axis, keepdim=True))
        close(xl.softmax(z, axis=axis), torch.softmax(z, dim=axis))
        close(xl.log_softmax(z, axis=axis), F.log_softmax(z, dim=axis))
    z = torch.cat([logits(50, dtype=dtype), torch.tensor(HAND_MADE, dtype=dtype).flatten()])
    close(xl.sigmoid(z), torch.sigmoid(z))
    close(xl.log_sigmoid(z), F.logsigmoid(z))


@pytest.mark.parametrize("dtype, big", [(torch.float16, 6e4), (torch.bfloat16, 1e4)], ids=["float16", "bfloat16"])
def test_16_bit_building_blocks_keep_their_dtype_and_equal_torch_in_float32(dtype, big):
    z = torch.tensor([[big, big - 500.0, -big], [1.0, 2.0, 3.0]]).to(dtype)
    z32 = z.float()
    for ours, theirs in [(xl.logsumexp(z), torch.logsumexp(z32, -1)), (xl.softmax(z), torch.softmax(z32, -1)),
                         (xl.sigmoid(z), torch.sigmoid(z32)), (xl.log_sigmoid(z), F.logsigmoid(z32))]:
        assert ours.dtype == dtype
        torch.testing.assert_close(ours, theirs.to(dtype), rtol=0, atol=0)  # one rounding, same as torch's
    assert torch.isfinite(xl.logsumexp(z)).all()
    assert xl.logsumexp(z)[0].item() == pytest.approx(big, rel=1e-2)


# ---- sparse categorical cross-entropy = F.cross_entropy / F.nll_loss -----------------------

SPARSE_OPTIONS = [
    dict(),
    dict(label_smoothing=0.1),
    dict(weight=True),
    dict(ignore_index=-100),
    dict(ignore_index=0),
    dict(weight=True, ignore_index=-100, label_smoothing=0.2),
]


def _sparse_case(options, dtype, shape=(6, 5), ignored=-100):
    z = logits(*shape, dtype=dtype)
    y = labels(shape[-1], *shape[:-1])
    if options.get("ignore_index") == -100:
        y[..., :2] = -100
    w = (torch.rand(shape[-1], generator=gen(3), dtype=torch.float64) + 0.5).to(dtype) if options.get("weight") \
        else None
    ours = dict(ignore_index=options.get("ignore_index"), class_weight=w,
                label_smoothing=options.get("label_smoothing", 0.0))
    theirs = dict(ignore_index=options.get("ignore_index", -100), weight=w,
                  label_smoothing=options.get("label_smoothing", 0.0))
    return z, y, ours, theirs


@dtypes
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", SPARSE_OPTIONS, ids=lambda o: "-".join(o) or "plain")
def test_sparse_ce_equals_F_cross_entropy(dtype, reduction, options):
    z, y, ours, theirs = _sparse_case(options, dtype)
    got = xl.sparse_categorical_cross_entropy(y, z, from_logits=True, reduction=reduction, **ours)
    close(got, F.cross_entropy(z, y, reduction=reduction, **theirs))


@dtypes
@pytest.mark.parametrize("options", SPARSE_OPTIONS, ids=lambda o: "-".join(o) or "plain")
def test_sparse_ce_on_N_C_T_logits_with_axis_1_equals_F_cross_entropy(dtype, options):
    z, y, ours, theirs = _sparse_case(options, dtype, shape=(3, 4, 7))  # (N, T, C) ...
    z_nct, y_nt = z.transpose(1, 2).contiguous(), y  # ... and PyTorch's (N, C, T)
    expected = F.cross_entropy(z_nct, y_nt, **theirs)
    close(xl.sparse_categorical_cross_entropy(y_nt, z_nct, from_logits=True, axis=1, **ours), expected)
    close(xl.sparse_categorical_cross_entropy(y, z, from_logits=True, **ours), expected)  # default axis=-1
    none = xl.sparse_categorical_cross_entropy(y_nt, z_nct, from_logits=True, axis=1, reduction="none", **ours)
    close(none, F.cross_entropy(z_nct, y_nt, reduction="none", **theirs))


@dtypes
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", [dict(), dict(weight=True), dict(ignore_index=-100),
                                     dict(weight=True, ignore_index=-100)], ids=lambda o: "-".join(o) or "plain")
def test_sparse_ce_on_probabilities_equals_F_nll_loss(dtype, reduction, options):
    _, y, ours, theirs = _sparse_case(options, dtype)
    q = probs(6, 5, dtype=dtype)
    theirs.pop("label_smoothing")
    got = xl.sparse_categorical_cross_entropy(y, q, reduction=reduction, **ours)
    close(got, F.nll_loss(q.log(), y, reduction=reduction, **theirs))


def test_single_unbatched_item_equals_F_cross_entropy():
    z, y = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64), torch.tensor(1)
    close(xl.sparse_categorical_cross_entropy(y, z, from_logits=True, label_smoothing=0.3),
          F.cross_entropy(z, y, label_smoothing=0.3))


@pytest.mark.parametrize("options", [dict(), dict(weight=True)], ids=["plain", "weight"])
def test_all_ignored_mean_is_zero_where_pytorch_gives_nan(options):
    """Documented convention: a mean over no kept item is 0 (as Keras), not 0/0."""
    z, _, ours, theirs = _sparse_case(dict(options, ignore_index=-100), torch.float64)
    z.requires_grad_(True)
    y = torch.full((6,), -100)
    assert torch.isnan(F.cross_entropy(z, y, **theirs))
    loss = xl.sparse_categorical_cross_entropy(y, z, from_logits=True, **ours)
    assert loss.item() == 0.0 and loss.dtype == torch.float64
    loss.backward()
    assert torch.equal(z.grad, torch.zeros_like(z))  # no NaN gradient either
    assert xl.sparse_categorical_cross_entropy(y, z, from_logits=True, reduction="sum", **ours).item() == 0.0
    assert F.cross_entropy(z, y, reduction="sum", **theirs).item() == 0.0


def test_16_bit_logits_at_6e4_finite_where_F_cross_entropy_overflows():
    z = torch.tensor([[-6e4, 6e4, 0.0]], dtype=torch.float16)
    assert torch.isinf(F.cross_entropy(z, torch.tensor([0])))  # a loss of 1.2e5 overflows float16
    ours = xl.sparse_categorical_cross_entropy(torch.tensor([0]), z, from_logits=True)
    assert ours.dtype == torch.float32 and ours.item() == 1.2e5
    close(ours, F.cross_entropy(z.float(), torch.tensor([0])))


# ---- categorical cross-entropy = F.cross_entropy with probability targets -----------------

@dtypes
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.15])
def test_categorical_ce_equals_F_cross_entropy_with_probability_targets(dtype, reduction, smoothing):
    z, p = logits(7, 5, dtype=dtype), probs(7, 5, dtype=dtype, zeros=True)
    got = xl.categorical_cross_entropy(p, z, from_logits=True, label_smoothing=smoothing, reduction=reduction)
    close(got, F.cross_entropy(z, p, label_smoothing=smoothing, reduction=reduction))
    onehot = F.one_hot(labels(5, 7), 5).to(dtype)
    got = xl.categorical_cross_entropy(onehot, z, from_logits=True, label_smoothing=smoothing, reduction=reduction)
    close(got, F.cross_entropy(z, onehot.argmax(-1), label_smoothing=smoothing, reduction=reduction))


@dtypes
def test_categorical_ce_on_N_C_T_with_axis_1(dtype):
    z, p = logits(2, 4, 6, dtype=dtype), probs(2, 4, 6, dtype=dtype, axis=1)
    close(xl.categorical_cross_entropy(p, z, from_logits=True, axis=1, label_smoothing=0.1),
          F.cross_entropy(z, p, label_smoothing=0.1))
    close(xl.categorical_cross_entropy(p, z, from_logits=True, axis=1, reduction="none"),
          F.cross_entropy(z, p, reduction="none"))


@dtypes
def test_categorical_ce_on_probabilities_equals_nll_of_log(dtype):
    q, y = probs(6, 4, dtype=dtype, seed=5), labels(4, 6)
    onehot = F.one_hot(y, 4).to(dtype)
    close(xl.categorical_cross_entropy(onehot, q), F.nll_loss(q.log(), y))


# ---- binary cross-entropy ------------------------------------------------------------

@dtypes
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_on_probabilities_equals_F_binary_cross_entropy(dtype, reduction):
    q = torch.rand(5, 3, generator=gen(4), dtype=torch.float64).clamp(0.01, 0.99).to(dtype)
    y = torch.rand(5, 3, generator=gen(5), dtype=torch.float64).to(dtype)  # soft targets too
    y[0] = torch.tensor([0.0, 1.0, 0.0], dtype=dtype)
    close(xl.binary_cross_entropy(y, q, reduction=reduction), F.binary_cross_entropy(q, y, reduction=reduction))


def test_bce_at_certain_wrong_predictions_is_inf_where_pytorch_clamps_at_100():
    """Shown on purpose: F.binary_cross_entropy clamps log at -100; ours is exact."""
    y = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    q = torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    theirs = F.binary_cross_entropy(q, y, reduction="none")
    ours = xl.binary_cross_entropy(y, q, reduction="none")
    assert theirs.tolist() == [100.0, 100.0, 0.0, 0.0]
    assert ours.tolist() == [math.inf, math.inf, 0.0, 0.0]


@dtypes
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("pos_weight", [None, 3.0, "per-class"])
def test_bce_with_logits_equals_F_binary_cross_entropy_with_logits(dtype, reduction, pos_weight):
    z, y = logits(5, 3, dtype=dtype, scale=2.0), (torch.rand(5, 3, generator=gen(6)) < 0.4).to(dtype)
    if pos_weight == "per-class":
        pos_weight = torch.tensor([0.5, 2.0, 3.0], dtype=dtype)
    theirs_w = torch.tensor(pos_weight, dtype=dtype) if isinstance(pos_weight, float) else pos_weight
    got = xl.binary_cross_entropy(y, z, from_logits=True, pos_weight=pos_weight, reduction=reduction)
    close(got, F.binary_cross_entropy_with_logits(z, y, pos_weight=theirs_w, reduction=reduction))


def test_bce_with_logits_is_more_precise_than_pytorch_for_tiny_losses():
    """PyTorch's (1-y) z + log(1+e^-|z|) + max(-z, 0) cancels for y=0, z << 0; log-sigmoid does not."""
    z, y = torch.tensor([-30.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64)
    exact = math.log1p(math.exp(-30.0))
    assert xl.binary_cross_entropy(y, z, from_logits=True).item() == pytest.approx(exact, rel=1e-15)
    theirs = F.binary_cross_entropy_with_logits(z, y).item()
    assert abs(theirs - exact) / exact > 1e-3


def test_bce_label_smoothing_is_keras_style_not_in_pytorch():
    z, y = logits(4, 3), (torch.rand(4, 3, generator=gen(7)) < 0.5).double()
    smoothed = y * 0.8 + 0.1  # eps = 0.2 moves targets towards 1/2
    close(xl.binary_cross_entropy(y, z, from_logits=True, label_smoothing=0.2),
          F.binary_cross_entropy_with_logits(z, smoothed))


# ---- KL divergence, MSE, Gaussian NLL, perplexity ------------------------------------------

@dtypes
@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")
def test_kl_divergence_equals_kl_div_batchmean_and_shows_mean(dtype):
    p, q = probs(6, 5, dtype=dtype, zeros=True), probs(6, 5, dtype=dtype, seed=9)
    ours = xl.kl_divergence(p, q)  # one value per row
    close(ours, F.kl_div(q.log(), p, reduction="none").sum(-1))
    close(ours.mean(), F.kl_div(q.log(), p, reduction="batchmean"))
    # 'mean' divides by the number of elements (6 * 5), not the batch size: not a KL divergence.
    close(ours.mean() / 5, F.kl_div(q.log(), p, reduction="mean"))
    assert F.kl_div(q.log(), p, reduction="mean").item() < ours.mean().item() / 4


def test_kl_divergence_is_zero_where_kl_div_gives_nan_at_p_equal_q_equal_0():
    p = torch.tensor([0.0, 1.0], dtype=torch.float64)
    assert torch.isnan(F.kl_div(p.log(), p, reduction="sum"))  # 0 * (log 0 - log 0)
    assert xl.kl_divergence(p, p).item() == 0.0


@dtypes
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_equals_F_mse_loss(dtype, reduction):
    a, b = logits(4, 3, dtype=dtype), logits(4, 3, dtype=dtype, seed=8)
    close(xl.mean_squared_error(a, b, reduction=reduction), F.mse_loss(b, a, reduction=reduction))


@dtypes
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("full", [True, False])
def test_gaussian_nll_equals_F_gaussian_nll_loss(dtype, reduction, full):
    y, mu = logits(4, 3, dtype=dtype), logits(4, 3, dtype=dtype, seed=8)
    var = (torch.rand(4, 3, generator=gen(9), dtype=torch.float64) + 0.5).to(dtype)
    close(xl.gaussian_nll(y, mu, var, full=full, reduction=reduction),
          F.gaussian_nll_loss(mu, y, var, full=full, reduction=reduction))
    close(xl.gaussian_nll(y, mu, 2.5, full=full, reduction=reduction),  # scalar variance
          F.gaussian_nll_loss(mu, y, torch.full_like(y, 2.5), full=full, reduction=reduction))


@dtypes
def test_perplexity_is_exp_of_F_cross_entropy(dtype):
    z, y = logits(3, 6, 11, dtype=dtype), labels(11, 3, 6)
    y[:, -2:] = -100
    close(xl.perplexity(y, z, ignore_index=-100), torch.exp(F.cross_entropy(z.transpose(1, 2), y)))
    close(xl.perplexity(y.T, z.transpose(0, 1).transpose(1, 2), ignore_index=-100, axis=1),
          torch.exp(F.cross_entropy(z.transpose(1, 2), y)))


# ---- analytic gradients = autograd of the built-ins -------------------------------------

@dtypes
def test_softmax_cross_entropy_grad_equals_autograd_of_F_cross_entropy(dtype):
    z, p = logits(6, 5, dtype=dtype).requires_grad_(True), probs(6, 5, dtype=dtype, zeros=True)
    F.cross_entropy(z, p, reduction="sum").backward()
    close(xl.softmax_cross_entropy_grad(p, z.detach()), z.grad)
    z2 = z.detach().clone().requires_grad_(True)
    xl.categorical_cross_entropy(p, z2, from_logits=True, reduction="sum").backward()
    close(z2.grad, z.grad)


@dtypes
def test_sigmoid_cross_entropy_grad_equals_autograd_of_F_bce_with_logits(dtype):
    z, y = logits(6, 5, dtype=dtype).requires_grad_(True), torch.rand(6, 5, generator=gen(3)).to(dtype)
    F.binary_cross_entropy_with_logits(z, y, reduction="sum").backward()
    close(xl.sigmoid_cross_entropy_grad(y, z.detach()), z.grad)
    z2 = z.detach().clone().requires_grad_(True)
    xl.binary_cross_entropy(y, z2, from_logits=True, reduction="sum").backward()
    close(z2.grad, z.grad)


# ---- autograd at extreme logits and at zero-probability targets -------------------------

EXTREMES = [(torch.float32, 1e4), (torch.float16, 6e4), (torch.bfloat16, 1e4)]


def _logit_losses(y, onehot):
    """Every function of logits, as z -> scalar loss, with its built-in in float32 (or None)."""
    w = torch.tensor([0.5, 2.0, 1.0])
    return {
        "sparse": (lambda z: xl.sparse_categorical_cross_entropy(y, z, from_logits=True),
                   lambda z: F.cross_entropy(z, y)),
        "sparse-all-options": (lambda z: xl.sparse_categorical_cross_entropy(
            y, z, from_logits=True, label_smoothing=0.1, class_weight=w, ignore_index=1),
            lambda z: F.cross_entropy(z, y, weight=w, ignore_index=1, label_smoothing=0.1)),
        "categorical": (lambda z: xl.categorical_cross_entropy(onehot, z, from_logits=True, label_smoothing=0.1),
                        lambda z: F.cross_entropy(z, onehot, label_smoothing=0.1)),
        "binary": (lambda z: xl.binary_cross_entropy(onehot, z, from_logits=True, pos_weight=w),
                   lambda z: F.binary_cross_entropy_with_logits(z, onehot, pos_weight=w)),
        "binary-smoothed": (lambda z: xl.binary_cross_entropy(onehot, z, from_logits=True, label_smoothing=0.2),
                            lambda z: F.binary_cross_entropy_with_logits(z, onehot * 0.8 + 0.1)),
        "perplexity": (lambda z: xl.perplexity(y, z / z.abs().max()), None),
        # Building blocks return the input dtype: sum in float32 (1.2e5 overflows float16), and pick
        # log-probabilities that float16 can hold (log_softmax = -1.2e5 is -inf there, as in torch).
        "logsumexp": (lambda z: xl.logsumexp(z).float().sum(), lambda z: torch.logsumexp(z, -1).sum()),
        "softmax": (lambda z: (xl.softmax(z).float() * onehot).sum(),
                    lambda z: (torch.softmax(z, -1) * onehot).sum()),
        "log_softmax": (lambda z: xl.log_softmax(z).float().gather(-1, y[:, None]).sum(),
                        lambda z: F.log_softmax(z, -1).gather(-1, y[:, None]).sum()),
        "sigmoid": (lambda z: xl.sigmoid(z).float().sum(), lambda z: torch.sigmoid(z).sum()),
        "log_sigmoid": (lambda z: xl.log_sigmoid(z).float().sum(), lambda z: F.logsigmoid(z).sum()),
    }


@pytest.mark.parametrize("dtype, big", EXTREMES, ids=["float32-1e4", "float16-6e4", "bfloat16-1e4"])
@pytest.mark.parametrize("name", list(_logit_losses(torch.zeros(2, dtype=torch.long), torch.zeros(2, 3))))
def test_autograd_finite_and_equal_to_builtin_at_extreme_logits(dtype, big, name):
    y = torch.tensor([0, 2])
    onehot = F.one_hot(y, 3).float()
    ours, theirs = _logit_losses(y, onehot)[name]
    z = torch.tensor([[big, -big, 0.0], [-big, big, big]]).to(dtype).requires_grad_(True)
    loss = ours(z)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad.float()).all(), (loss, z.grad)
    assert z.grad.dtype == dtype
    if theirs is not None:
        z32 = z.detach().float().requires_grad_(True)
        expected = theirs(z32)
        expected.backward()
        tol = dict(rtol=1e-2, atol=1e-2) if dtype != torch.float32 else dict(rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(loss.float(), expected.detach(), **tol)
        torch.testing.assert_close(z.grad.float(), z32.grad.to(dtype).float(), **tol)


def _grad(fn, x):
    x = x.clone().requires_grad_(True)
    fn(x).backward()
    return x.grad


def test_gradients_at_zero_probability_targets_are_finite_and_correct():
    """Terms 0 * log q pass gradient 0 (no NaN), also where q = 0; the rest is -y/q."""
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]], dtype=torch.float64)
    q = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.25, 0.75]], dtype=torch.float64)
    expected = torch.where(y == 0, 0.0, -y / torch.where(y == 0, 1.0, q))
    close(_grad(lambda t: xl.cross_entropy(y, t).sum(), q), expected)
    close(_grad(lambda t: xl.kl_divergence(y, t).sum(), q), expected)
    close(_grad(lambda t: xl.categorical_cross_entropy(y, t, reduction="sum"), q), expected)
    # The same y and q through torch's xlogy / kl_div give NaN.
    assert torch.isnan(_grad(lambda t: -torch.xlogy(y, t).sum(), q)).any()
    assert torch.isnan(_grad(lambda t: F.kl_div(t.log(), y, reduction="sum"), q)).any()


def test_gradients_at_certain_binary_and_sparse_probabilities_are_finite():
    y = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    q = torch.tensor([1.0, 0.0, 0.5, 0.5], dtype=torch.float64)
    g = _grad(lambda t: xl.binary_cross_entropy(y, t, reduction="sum"), q)
    close(g, torch.tensor([-1.0, 1.0, -2.0, 2.0], dtype=torch.float64))  # -y/q + (1-y)/(1-q)
    q2 = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.5, 0.5]], dtype=torch.float64)  # zeros off the label
    g = _grad(lambda t: xl.sparse_categorical_cross_entropy(
        torch.tensor([1, -1]), t, ignore_index=-1, reduction="sum"), q2)
    close(g, torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64))


def test_zero_weight_class_with_zero_probability_adds_nothing_and_no_nan_gradient():
    q = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.8, 0.0]], dtype=torch.float64)
    w = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
    g = _grad(lambda t: xl.sparse_categorical_cross_entropy(
        torch.tensor([0, 1]), t, class_weight=w, label_smoothing=0.1, reduction="sum"), q)
    # d/dq of -[(1 - e) w_y log q_y + e/C sum_c w_c log q_c], with the weight-0 class contributing 0
    expected = -(0.9 * w[torch.tensor([0, 1])][:, None] * F.one_hot(torch.tensor([0, 1]), 3) + 0.1 / 3 * w) / q
    close(g, torch.where(w == 0, 0.0, expected))


def test_entropy_family_gradients_finite_at_zero_probabilities():
    p = torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64)
    g = _grad(lambda t: xl.entropy(t).sum(), p)
    close(g, torch.tensor([[math.log(2) - 1, math.log(2) - 1, 0.0]], dtype=torch.float64))
    table = torch.tensor([[0.5, 0.0], [0.0, 0.5]], dtype=torch.float64)
    for fn in (xl.joint_entropy, xl.conditional_entropy, xl.mutual_information):
        assert torch.isfinite(_grad(lambda t, fn=fn: fn(t).sum(), table)).all(), fn.__name__
    close(_grad(lambda t: xl.joint_entropy(t), table),
          torch.tensor([[math.log(2) - 1, 0.0], [0.0, math.log(2) - 1]], dtype=torch.float64))


def test_gradient_with_respect_to_soft_targets_is_minus_log_softmax():
    """Distillation: the target side is differentiable too."""
    z, p = logits(3, 4), probs(3, 4, zeros=True)
    close(_grad(lambda t: xl.categorical_cross_entropy(t, z, from_logits=True, reduction="sum"), p),
          -F.log_softmax(z, -1))


# ---- inputs, dtypes and the value-check switch -------------------------------------------

def test_lists_and_numpy_arrays_are_accepted_like_tensors():
    as_list = xl.sparse_categorical_cross_entropy([0, 2], [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], from_logits=True)
    assert as_list.dtype == torch.float64  # lists of floats are float64, as in NumPy
    z = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], dtype=np.float32)
    as_numpy = xl.sparse_categorical_cross_entropy(np.array([0, 2]), z, from_logits=True)
    assert as_numpy.dtype == torch.float32
    close(as_list, F.cross_entropy(torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], dtype=torch.float64),
                                   torch.tensor([0, 2])))
    close(as_numpy, F.cross_entropy(torch.from_numpy(z), torch.tensor([0, 2])))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16_bit_losses_return_float32_equal_to_builtin_on_upcast_inputs(dtype):
    z, y = logits(5, 4).to(dtype), labels(4, 5)
    loss = xl.sparse_categorical_cross_entropy(y, z, from_logits=True, label_smoothing=0.1)
    assert loss.dtype == torch.float32
    close(loss, F.cross_entropy(z.float(), y, label_smoothing=0.1))
    q = torch.sigmoid(logits(5, 4, seed=3)).to(dtype)
    close(xl.binary_cross_entropy(q.round(), z, from_logits=True),
          F.binary_cross_entropy_with_logits(z.float(), q.round().float()))


def test_value_checks_can_be_switched_off():
    bad = torch.tensor([0.5, 0.7])
    with pytest.raises(ValueError, match="p must sum to 1"):
        xl.entropy(bad)
    with xentlib.value_checks(False):
        assert xl.entropy(bad).item() == pytest.approx(-(0.5 * math.log(0.5) + 0.7 * math.log(0.7)))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        xl.sparse_categorical_cross_entropy(torch.tensor([3]), torch.zeros(1, 3), from_logits=True)
