"""Custom (analytic) gradients of the losses from logits, torch and TensorFlow (issue 5).

The fast paths compute the softmax once and return the gradient in closed form. Checked
here: float64 gradcheck over every option combination (class_weight, ignore_index, label
smoothing, reductions, axis), 'none' under a non-uniform upstream gradient (gradcheck
tests the whole Jacobian), exact zero gradient for ignored items and for an empty mean,
and TensorFlow gradients (eager and tf.function) against central differences of the
NumPy reference.
"""
import itertools
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

import xentlib  # noqa: E402  (after importorskip: torch and tensorflow are optional)
from xentlib import numpy as xn  # noqa: E402  (after importorskip: torch and tensorflow are optional)
from xentlib import tensorflow as xtf  # noqa: E402  (after importorskip: torch and tensorflow are optional)
from xentlib import torch as xt  # noqa: E402  (after importorskip: torch and tensorflow are optional)

REDUCTIONS = ("mean", "sum", "none")
EPS = (0.0, 0.2)


def _labels():
    return np.array([[0, 3, -1], [4, -1, 2]])  # (2, 3) items, -1 ignored


@pytest.mark.parametrize("eps,weighted,ignore,reduction,axis",
                         itertools.product(EPS, (False, True), (None, -1), REDUCTIONS, (-1, 1)))
def test_torch_sparse_gradcheck(eps, weighted, ignore, reduction, axis):
    gen = torch.Generator().manual_seed(1)
    labels = torch.as_tensor(_labels())
    if ignore is None:
        labels = labels.clamp(min=0)
    shape = (2, 3, 5) if axis == -1 else (2, 5, 3)
    z = torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_()
    weight = torch.tensor([0.5, 0.0, 2.0, 1.0, 1.5], dtype=torch.float64) if weighted else None

    def f(z):
        return xt.sparse_categorical_cross_entropy(
            labels, z, from_logits=True, label_smoothing=eps, ignore_index=ignore,
            class_weight=weight, axis=axis, reduction=reduction)

    assert torch.autograd.gradcheck(f, (z,))
    ref = xn.sparse_categorical_cross_entropy(
        labels.numpy(), z.detach().numpy(), from_logits=True, label_smoothing=eps,
        ignore_index=ignore, class_weight=None if weight is None else weight.numpy(),
        axis=axis, reduction=reduction)
    np.testing.assert_allclose(f(z).detach().numpy(), ref, rtol=1e-10, atol=1e-12)
    if ignore is not None:  # ignored items get exactly zero gradient, whatever the upstream
        up = torch.randn(2, 3, generator=gen, dtype=torch.float64) if reduction == "none" else 1.0
        (grad,) = torch.autograd.grad((f(z) * up).sum(), z)
        grad = torch.movedim(grad, axis, -1)
        assert torch.count_nonzero(grad[labels == -1]) == 0


def test_torch_sparse_all_ignored_is_zero():
    z = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    loss = xt.sparse_categorical_cross_entropy([-1, -1, -1], z, from_logits=True, ignore_index=-1,
                                               label_smoothing=0.1)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.count_nonzero(z.grad) == 0


@pytest.mark.parametrize("eps,reduction,axis", itertools.product(EPS, REDUCTIONS, (-1, 1)))
def test_torch_categorical_gradcheck(eps, reduction, axis):
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64).requires_grad_()
    t = torch.softmax(torch.randn(2, 4, 3, generator=gen, dtype=torch.float64), dim=axis)

    def f(z):
        return xt.categorical_cross_entropy(t, z, from_logits=True, label_smoothing=eps, axis=axis,
                                            reduction=reduction)

    assert torch.autograd.gradcheck(f, (z,))


@pytest.mark.parametrize("eps,pos_weight,reduction",
                         itertools.product(EPS, (None, 2.0, (0.5, 1.0, 3.0)), REDUCTIONS))
def test_torch_binary_gradcheck(eps, pos_weight, reduction):
    gen = torch.Generator().manual_seed(3)
    z = (3 * torch.randn(4, 3, generator=gen, dtype=torch.float64)).requires_grad_()
    y = (torch.rand(4, 3, generator=gen) < 0.5).double()
    w = None if pos_weight is None else torch.tensor(pos_weight, dtype=torch.float64)

    def f(z):
        return xt.binary_cross_entropy(y, z, from_logits=True, label_smoothing=eps, pos_weight=w,
                                       reduction=reduction)

    assert torch.autograd.gradcheck(f, (z,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_torch_low_precision_gradients(dtype):
    z = torch.randn(3, 5).to(dtype).requires_grad_()
    loss = xt.sparse_categorical_cross_entropy([0, 1, 4], z, from_logits=True, label_smoothing=0.1)
    loss.backward()
    z32 = z.detach().float().requires_grad_()
    torch.nn.functional.cross_entropy(z32, torch.tensor([0, 1, 4]), label_smoothing=0.1).backward()
    assert loss.dtype == torch.float32 and z.grad.dtype == dtype
    torch.testing.assert_close(z.grad.float(), z32.grad, rtol=1e-2, atol=1e-3)


def test_torch_checks_off_same_gradient():
    z = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 5, 2, 2])
    (g_on,) = torch.autograd.grad(xt.sparse_categorical_cross_entropy(y, z, from_logits=True), z)
    with xentlib.value_checks(False):
        (g_off,) = torch.autograd.grad(xt.sparse_categorical_cross_entropy(y, z, from_logits=True), z)
    assert torch.equal(g_on, g_off)


# ---- TensorFlow: gradients against central differences of the NumPy reference -------------

def _numeric_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        g[i] = (f(xp) - f(xm)) / (2 * h)
    return g


def _tf_grad(loss_fn, *xs, use_function=False):
    xs = [tf.constant(x) for x in xs]

    def run(*args):
        with tf.GradientTape() as tape:
            tape.watch(args)
            loss = loss_fn(*args)
        return loss, tape.gradient(loss, args)

    if use_function:
        run = tf.function(run)
    loss, grads = run(*xs)
    return loss.numpy(), [g.numpy() for g in grads]


@pytest.mark.parametrize("eps,weighted,reduction,use_function",
                         itertools.product(EPS, (False, True), REDUCTIONS, (False, True)))
def test_tf_sparse_gradient(eps, weighted, reduction, use_function):
    rng = np.random.default_rng(4)
    labels = _labels()
    z = rng.normal(size=(2, 3, 5))
    up = rng.normal(size=(2, 3)) if reduction == "none" else 1.7
    kw = dict(from_logits=True, label_smoothing=eps, ignore_index=-1, reduction=reduction,
              class_weight=np.array([0.5, 0.0, 2.0, 1.0, 1.5]) if weighted else None)
    loss, (grad,) = _tf_grad(
        lambda z: tf.reduce_sum(xtf.sparse_categorical_cross_entropy(labels, z, **kw) * up), z,
        use_function=use_function)
    expected = _numeric_grad(lambda z: np.sum(xn.sparse_categorical_cross_entropy(labels, z, **kw) * up), z)
    np.testing.assert_allclose(loss, np.sum(xn.sparse_categorical_cross_entropy(labels, z, **kw) * up),
                               rtol=1e-10)
    np.testing.assert_allclose(grad, expected, atol=1e-7)
    assert np.count_nonzero(grad[labels == -1]) == 0


@pytest.mark.parametrize("eps,reduction,axis", itertools.product(EPS, REDUCTIONS, (-1, 1)))
def test_tf_categorical_gradient(eps, reduction, axis):
    rng = np.random.default_rng(5)
    z = rng.normal(size=(2, 4, 3))
    t = np.exp(rng.normal(size=(2, 4, 3)))
    t /= t.sum(axis=axis, keepdims=True)
    kw = dict(from_logits=True, label_smoothing=eps, reduction=reduction, axis=axis)
    up = rng.normal(size=np.shape(xn.categorical_cross_entropy(t, z, **kw)))
    _, (gt, gz) = _tf_grad(lambda t, z: tf.reduce_sum(xtf.categorical_cross_entropy(t, z, **kw) * up), t, z)
    np.testing.assert_allclose(
        gz, _numeric_grad(lambda z: np.sum(xn.categorical_cross_entropy(t, z, **kw) * up), z), atol=1e-7)
    with xentlib.value_checks(False):  # perturbed targets no longer sum to 1
        expected_t = _numeric_grad(lambda t: np.sum(xn.categorical_cross_entropy(t, z, **kw) * up), t)
    np.testing.assert_allclose(gt, expected_t, atol=1e-7)


@pytest.mark.parametrize("eps,pos_weight,reduction",
                         itertools.product(EPS, (None, 2.0, (0.5, 1.0, 3.0)), REDUCTIONS))
def test_tf_binary_gradient(eps, pos_weight, reduction):
    rng = np.random.default_rng(6)
    z = 3 * rng.normal(size=(4, 3))
    y = (rng.random((4, 3)) < 0.5).astype(float)
    w = None if pos_weight is None else np.array(pos_weight)
    kw = dict(from_logits=True, label_smoothing=eps, pos_weight=w, reduction=reduction)
    up = rng.normal(size=(4, 3)) if reduction == "none" else 0.6
    _, (gy, gz) = _tf_grad(lambda y, z: tf.reduce_sum(xtf.binary_cross_entropy(y, z, **kw) * up), y, z)
    np.testing.assert_allclose(
        gz, _numeric_grad(lambda z: np.sum(xn.binary_cross_entropy(y, z, **kw) * up), z), atol=1e-7)
    y_mid = np.clip(y, 0.1, 0.9)  # targets strictly inside [0, 1] for central differences
    _, (gy, _) = _tf_grad(lambda y, z: tf.reduce_sum(xtf.binary_cross_entropy(y, z, **kw) * up), y_mid, z)
    np.testing.assert_allclose(
        gy, _numeric_grad(lambda y: np.sum(xn.binary_cross_entropy(y, z, **kw) * up), y_mid), atol=1e-6)
