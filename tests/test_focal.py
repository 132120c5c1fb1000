"""The focal losses against the definitions of torchvision, optax and Keras.

torchvision and optax are not installed beside this environment's torch and
JAX-free stack, so their formulas are restated here from their sources:

* torchvision ``torchvision/ops/focal_loss.py``, ``sigmoid_focal_loss(inputs,
  targets, alpha=0.25, gamma=2, reduction="none")``::

      p = sigmoid(inputs)
      ce = binary_cross_entropy_with_logits(inputs, targets, reduction="none")
      p_t = p * targets + (1 - p) * (1 - targets)
      loss = ce * ((1 - p_t) ** gamma)
      if alpha >= 0:
          loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss

* optax ``optax/losses/_classification.py``, ``sigmoid_focal_loss(logits, labels,
  alpha=None, gamma=2.0)``: the same formula, with ``alpha=None`` meaning no
  weighting (torchvision's ``alpha=-1``).

Keras (installed) is called directly: ``BinaryFocalCrossentropy`` and
``CategoricalFocalCrossentropy``. Where Keras differs (its defaults, its
clipping of probabilities at large logits), the difference is asserted.
"""
import numpy as np
import pytest

from xentlib import numpy as xnp


def torchvision_sigmoid_focal_loss(z, y, alpha=0.25, gamma=2.0):
    """torchvision's formula, in float64 NumPy (see the module docstring)."""
    p = 1 / (1 + np.exp(-z))
    ce = np.logaddexp(0, z) - y * z          # binary_cross_entropy_with_logits
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss


def optax_sigmoid_focal_loss(z, y, alpha=None, gamma=2.0):
    """optax's formula: torchvision's with ``alpha=None`` for no weighting."""
    return torchvision_sigmoid_focal_loss(z, y, -1 if alpha is None else alpha, gamma)


RNG = np.random.default_rng(12)
Z = RNG.normal(0, 4, (6, 5))
Y_HARD = (RNG.random((6, 5)) < 0.3).astype(float)
Y_SOFT = RNG.random((6, 5))


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
@pytest.mark.parametrize("alpha", [None, 0.25, 0.9])
@pytest.mark.parametrize("targets", ["hard", "soft"])
def test_binary_equals_torchvision_and_optax(backend, gamma, alpha, targets):
    y = Y_HARD if targets == "hard" else Y_SOFT
    ours = backend.call("binary_focal_cross_entropy", y, Z, gamma=gamma, alpha=alpha,
                        from_logits=True, reduction="none")
    tv = torchvision_sigmoid_focal_loss(Z, y, -1 if alpha is None else alpha, gamma)
    np.testing.assert_allclose(ours, tv, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(ours, optax_sigmoid_focal_loss(Z, y, alpha, gamma),
                               rtol=1e-10, atol=1e-14)


def test_default_alpha_differs_from_torchvision():
    # torchvision weights by alpha=0.25 unless told alpha=-1; ours (and optax) by nothing
    ours = xnp.binary_focal_cross_entropy(Y_HARD, Z, from_logits=True, reduction="none")
    np.testing.assert_allclose(ours, optax_sigmoid_focal_loss(Z, Y_HARD), rtol=1e-12)
    assert not np.allclose(ours, torchvision_sigmoid_focal_loss(Z, Y_HARD))


def test_gamma_zero_is_the_cross_entropy(backend):
    probs = 1 / (1 + np.exp(-Z))
    for fn, plain, y, x, kw in [
            ("binary_focal_cross_entropy", "binary_cross_entropy", Y_SOFT, Z, {"from_logits": True}),
            ("binary_focal_cross_entropy", "binary_cross_entropy", Y_HARD, probs, {}),
            ("categorical_focal_cross_entropy", "categorical_cross_entropy",
             Y_SOFT / Y_SOFT.sum(-1, keepdims=True), Z, {"from_logits": True})]:
        np.testing.assert_allclose(backend.call(fn, y, x, gamma=0.0, label_smoothing=0.1, **kw),
                                   backend.call(plain, y, x, label_smoothing=0.1, **kw),
                                   rtol=1e-10)


def test_logits_of_100_are_exact(backend):
    # binary: p_t = sigma(-100) for a positive at z = -100: the loss is 100 (times 1 - tiny)
    got = backend.call("binary_focal_cross_entropy", np.array([1.0, 0.0, 1.0]),
                       np.array([-100.0, 100.0, 100.0]), from_logits=True, reduction="none")
    np.testing.assert_allclose(got[:2], [100.0, 100.0], rtol=1e-15)
    assert 0 < got[2] < 1e-80
    # categorical: logits [100, -100], target class 1 costs 200 nats, times alpha
    got = backend.call("categorical_focal_cross_entropy", np.array([[0.0, 1.0]]),
                       np.array([[100.0, -100.0]]), alpha=0.25, from_logits=True)
    assert float(got) == 50.0
    # and the confident correct class contributes e^-200 * (e^-200)^2, not 0 * inf
    got = backend.call("categorical_focal_cross_entropy", np.array([[1.0, 0.0]]),
                       np.array([[100.0, -100.0]]), from_logits=True)
    assert 0 <= float(got) < 1e-200


def test_categorical_log_one_minus_p_has_no_cancellation():
    # p_0 = 1 / (1 + 1e-14): 1 - p_0 computed as a difference keeps about 2 digits; the
    # focal factor (1 - p_0)^2 is computed from the other classes' log-sum-exp instead
    z = np.array([[0.0, -np.log(1e14)]])
    y = np.array([[1.0, 0.0]])
    focal = xnp.categorical_focal_cross_entropy(y, z, gamma=2.0, from_logits=True)
    plain = xnp.categorical_cross_entropy(y, z, from_logits=True)
    np.testing.assert_allclose(float(focal / plain), (1e-14 / (1 + 1e-14)) ** 2, rtol=1e-12)


def test_categorical_against_its_definition_with_per_class_alpha(backend):
    y = np.eye(5)[RNG.integers(0, 5, 6)]
    alpha = np.array([0.5, 1.0, 2.0, 0.25, 1.5])
    p = np.exp(Z) / np.exp(Z).sum(-1, keepdims=True)
    expected = -(alpha * y * (1 - p) ** 3.0 * np.log(p)).sum(-1)
    got = backend.call("categorical_focal_cross_entropy", y, Z, gamma=3.0,
                       alpha=backend.asarray(alpha), from_logits=True, reduction="none")
    np.testing.assert_allclose(got, expected, rtol=1e-10)


# ---- Keras ----------------------------------------------------------------------------

keras = pytest.importorskip("keras")


@pytest.mark.parametrize("balancing", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_binary_equals_keras_at_moderate_logits(balancing, smoothing):
    z = np.clip(Z, -8, 8).astype(np.float32)
    theirs = keras.losses.BinaryFocalCrossentropy(
        apply_class_balancing=balancing, alpha=0.25, gamma=2.0, from_logits=True,
        label_smoothing=smoothing)(Y_HARD.astype(np.float32), z)
    ours = xnp.binary_focal_cross_entropy(Y_HARD, z.astype(np.float64), gamma=2.0,
                                          alpha=0.25 if balancing else None, from_logits=True,
                                          label_smoothing=smoothing)
    np.testing.assert_allclose(float(theirs), float(ours), rtol=1e-5)


def test_categorical_equals_keras_with_keras_alpha_and_differs_by_default():
    y = np.eye(5)[RNG.integers(0, 5, 6)].astype(np.float32)
    z = np.clip(Z, -6, 6).astype(np.float32)
    keras_default = float(keras.losses.CategoricalFocalCrossentropy(from_logits=True)(y, z))
    ours_alpha = float(xnp.categorical_focal_cross_entropy(y, z.astype(np.float64), alpha=0.25,
                                                           from_logits=True))
    ours_default = float(xnp.categorical_focal_cross_entropy(y, z.astype(np.float64),
                                                             from_logits=True))
    np.testing.assert_allclose(keras_default, ours_alpha, rtol=1e-5)
    # Keras applies alpha = 0.25 unless told otherwise; ours applies no alpha by default
    np.testing.assert_allclose(keras_default, 0.25 * ours_default, rtol=1e-5)



@pytest.mark.parametrize("smoothing", [0.1, 0.3])
def test_categorical_equals_keras_with_label_smoothing(smoothing):
    """Both smooth the targets to (1 - eps) y + eps / K before the focal weighting."""
    y = np.eye(5)[RNG.integers(0, 5, 6)].astype(np.float32)
    z = np.clip(Z, -6, 6).astype(np.float32)
    theirs = keras.losses.CategoricalFocalCrossentropy(alpha=0.25, from_logits=True,
                                                       label_smoothing=smoothing)(y, z)
    ours = xnp.categorical_focal_cross_entropy(y, z.astype(np.float64), alpha=0.25,
                                               from_logits=True, label_smoothing=smoothing)
    np.testing.assert_allclose(float(theirs), float(ours), rtol=1e-5)


def test_keras_binary_focal_clips_probabilities():
    """From probabilities Keras clips p to [1e-7, 1 - 1e-7]: a certain wrong answer costs about
    16 nats there; the exact loss is infinite."""
    y, p = np.array([[1.0, 0.0]], np.float32), np.array([[0.0, 1.0]], np.float32)
    theirs = float(keras.losses.BinaryFocalCrossentropy(gamma=2.0)(y, p))
    one_below = np.float32(1) - np.float32(1e-7)        # 1 - 1e-7 rounded to float32
    clipped = (-np.log(1e-7) - np.log1p(-float(one_below))) / 2
    np.testing.assert_allclose(theirs, clipped, rtol=1e-4)
    assert float(xnp.binary_focal_cross_entropy(y, p, gamma=2.0)) == np.inf

def test_keras_saturates_at_logits_of_100():
    y, z = np.array([[0.0, 1.0]], np.float32), np.array([[100.0, -100.0]], np.float32)
    theirs = float(keras.losses.CategoricalFocalCrossentropy(from_logits=True)(y, z))
    # Keras clips the probability at 1e-7: 0.25 * -log(1e-7) = 4.0295, not 0.25 * 200 = 50
    np.testing.assert_allclose(theirs, 0.25 * -np.log(1e-7), rtol=1e-4)
    assert round(theirs, 4) == 4.0295
    ours = float(xnp.categorical_focal_cross_entropy(y, z, alpha=0.25, from_logits=True))
    assert ours == 50.0


def test_keras_binary_focal_is_exact_from_logits_of_100():
    """Unlike its categorical loss, Keras' binary focal loss works from the logits themselves."""
    y, z = np.array([[1.0, 0.0]], np.float32), np.array([[-100.0, 100.0]], np.float32)
    theirs = float(keras.losses.BinaryFocalCrossentropy(from_logits=True, gamma=2.0)(y, z))
    ours = float(xnp.binary_focal_cross_entropy(y, z, gamma=2.0, from_logits=True))
    assert ours == 100.0
    np.testing.assert_allclose(theirs, ours, rtol=1e-6)


# ---- gradients and errors -------------------------------------------------------------

def test_gradients_are_finite_and_right_at_large_logits():
    import torch

    from xentlib import torch as xt
    z = torch.tensor([[100.0, -100.0, 3.0], [0.5, -2.0, 40.0]], dtype=torch.float64,
                     requires_grad=True)
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    for loss in (xt.categorical_focal_cross_entropy(y, z, from_logits=True),
                 xt.binary_focal_cross_entropy(y, z, alpha=0.25, from_logits=True)):
        (grad,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(grad).all()
    z_small = torch.tensor(Z[:3, :4], requires_grad=True)
    y_small = torch.tensor(np.eye(4)[[0, 3, 1]])
    assert torch.autograd.gradcheck(
        lambda t: xt.categorical_focal_cross_entropy(y_small, t, gamma=2.0, from_logits=True),
        (z_small,))
    assert torch.autograd.gradcheck(
        lambda t: xt.binary_focal_cross_entropy(y_small, t, alpha=0.3, from_logits=True),
        (z_small,))


def test_tensorflow_gradients_equal_torch():
    import tensorflow as tf
    import torch

    from xentlib import tensorflow as xtf
    from xentlib import torch as xt
    y = np.eye(5)[RNG.integers(0, 5, 6)]
    z_t = torch.tensor(Z, requires_grad=True)
    xt.categorical_focal_cross_entropy(torch.tensor(y), z_t, from_logits=True).backward()
    z_tf = tf.Variable(Z)
    with tf.GradientTape() as tape:
        loss = xtf.categorical_focal_cross_entropy(y, z_tf, from_logits=True)
    np.testing.assert_allclose(tape.gradient(loss, z_tf).numpy(), z_t.grad.numpy(), rtol=1e-10)


@pytest.mark.parametrize("fn, kwargs, error, match", [
    ("binary_focal_cross_entropy", {"gamma": -1.0}, ValueError, "^gamma must be non-negative"),
    ("binary_focal_cross_entropy", {"gamma": "2"}, TypeError, "^gamma must be a non-negative float"),
    ("binary_focal_cross_entropy", {"alpha": 1.5}, ValueError, r"^alpha must be in \[0, 1\]"),
    ("categorical_focal_cross_entropy", {"alpha": np.ones(3)}, ValueError,
     r"^alpha must be a scalar or have shape \(5,\)"),
    ("categorical_focal_cross_entropy", {"alpha": -0.5}, ValueError,
     "^alpha must be a non-negative float"),
])
def test_bad_options_name_the_argument(backend, fn, kwargs, error, match):
    y = Y_HARD if fn.startswith("binary") else np.eye(5)[RNG.integers(0, 5, 6)]
    kwargs = {k: backend.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    with pytest.raises(error, match=match):
        getattr(backend.xl, fn)(backend.asarray(y), backend.asarray(Z), from_logits=True, **kwargs)


@pytest.mark.parametrize("kind", ["binary", "categorical"])
def test_torch_target_gradients_whether_or_not_the_targets_need_them(kind):
    """From logits the backward skips the targets' gradient when they need none: the logits'
    gradient is then the same; the targets' agrees under autograd, ``torch.func.grad`` and
    finite differences (first and second derivatives)."""
    import torch

    from xentlib import torch as xt
    if kind == "binary":
        def loss(z, y):
            return xt.binary_focal_cross_entropy(y, z, alpha=0.3, from_logits=True)
        y = torch.tensor(Y_SOFT[:3, :4])
    else:
        def loss(z, y):
            return xt.categorical_focal_cross_entropy(y, z, gamma=2.0, from_logits=True)
        y = torch.tensor(Y_SOFT[:3, :4] / Y_SOFT[:3, :4].sum(axis=-1, keepdims=True))
    z = torch.tensor(Z[:3, :4]).requires_grad_()
    y_grad = y.clone().requires_grad_()
    g_z, g_y = torch.autograd.grad(loss(z, y_grad), (z, y_grad))
    assert torch.equal(torch.autograd.grad(loss(z, y), z)[0], g_z)
    f_z, f_y = torch.func.grad(loss, argnums=(0, 1))(z.detach(), y)
    torch.testing.assert_close((f_z, f_y), (g_z, g_y), rtol=1e-12, atol=0)
    assert torch.autograd.gradgradcheck(lambda t: loss(t, y_grad), (z,))
    if kind == "binary":  # (a perturbed categorical target is no distribution: refused)
        assert torch.autograd.gradgradcheck(loss, (z, y_grad))
