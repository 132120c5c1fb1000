"""Fuzzed graph and compile variants of every public loss, each against the eager result (see
tests/fuzzing.py): ``tf.function`` with an ``input_signature`` of unknown shapes (batch and class
dimensions ``None``), TF XLA (``jit_compile=True``), ``torch.compile`` and ``torch.func``'s
``grad`` and ``vmap``.

A property draws a loss with its options from ``LOSSES`` (every public loss, from logits and
from probabilities, each option of it in one entry or another) and its inputs: logits from the
smallest subnormal to the dtype's maximum, probabilities with exact zeros and subnormals. The
traced or compiled function of an entry is built once and reused (``functools.cache``), and the
shapes and dtypes are drawn from small sets, so that tracing is bounded: at most
``len(LOSSES)`` x 2 dtypes unknown-shape traces, x ``len(SHAPES)`` XLA and ``torch.compile``
compiles (float32 only), whatever the number of examples.

Cost at ``FUZZ_CI_EXAMPLES=10000`` (``CI=true``), measured on one core (niced, TF and torch on one
thread): test_every_loss_in_tf_graphs_equals_eager 85 s, test_every_loss_in_torch_compile_and_func_equals_eager
95 s, their traces and compiles included (at 2,000 examples: 37 s and 35 s); 3.1 CPU minutes for the
file.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import xentlib
from fuzzing import (  # noqa: F401 (fresh_tf_hot_paths: an autouse fixture)
    BACKENDS,
    FLOATS,
    close,
    fresh_tf_hot_paths,
    fuzz,
    probability_vectors,
    scaled,
    scales,
)

SHAPES = ((2, 3), (3, 2))  # (N, K): the compiled variants' shapes (XLA and torch.compile: one compile each)
DIM = 2  # linear CE's hidden size


@st.composite
def _logits(draw, shape, dtype_name):
    unit = draw(hnp.arrays(np.float64, shape, elements=st.floats(-1, 1)))
    return np.asarray(scaled(unit, draw(scales(dtype_name)), dtype_name))


def _binary_targets(draw, shape, dtype_name):
    values = st.sampled_from([0.0, 1.0, 0.25]) | st.floats(0, 1)
    return draw(hnp.arrays(np.float64, shape, elements=values)).astype(FLOATS[dtype_name])


def _unit_interval(draw, shape, dtype_name):
    values = st.sampled_from([0.0, 1.0, 0.5]) | st.floats(0, 1)
    return draw(hnp.arrays(np.float64, shape, elements=values)).astype(FLOATS[dtype_name])


def _labels(draw, n, k, ignore=False):
    return draw(hnp.arrays(np.int64, (n,), elements=st.integers(-1 if ignore else 0, k - 1)))


def _weights(draw, k, dtype_name):
    return draw(hnp.arrays(np.float64, (k,), elements=st.sampled_from([0.0, 0.5, 1.0, 3.0]))).astype(
        FLOATS[dtype_name])


def _moderate(draw, shape, dtype_name):
    return draw(hnp.arrays(np.float64, shape, elements=st.floats(-100, 100))).astype(FLOATS[dtype_name])


# name -> (inputs(draw, n, k, dtype name), the loss of (xl, *inputs)); the first input's last axis is K
LOSSES = {
    "categorical CE, logits": (
        lambda d, n, k, t: (d(probability_vectors((n, k), t)), d(_logits((n, k), t))),
        lambda xl, y, z: xl.categorical_cross_entropy(y, z, from_logits=True, label_smoothing=0.1)),
    "categorical CE, probabilities": (
        lambda d, n, k, t: (d(probability_vectors((n, k), t)), d(probability_vectors((n, k), t))),
        lambda xl, y, q: xl.categorical_cross_entropy(y, q, reduction="sum")),
    "sparse CE, logits": (
        lambda d, n, k, t: (_labels(d, n, k, ignore=True), d(_logits((n, k), t)), _weights(d, k, t)),
        lambda xl, y, z, w: xl.sparse_categorical_cross_entropy(y, z, from_logits=True, label_smoothing=0.1,
                                                                ignore_index=-1, class_weight=w)),
    "sparse CE, probabilities": (
        lambda d, n, k, t: (_labels(d, n, k), d(probability_vectors((n, k), t))),
        lambda xl, y, q: xl.sparse_categorical_cross_entropy(y, q, label_smoothing=0.2, reduction="none")),
    "binary CE, logits": (
        lambda d, n, k, t: (_binary_targets(d, (n, k), t), d(_logits((n, k), t)), _weights(d, k, t)),
        lambda xl, y, z, w: xl.binary_cross_entropy(y, z, from_logits=True, label_smoothing=0.2, pos_weight=w)),
    "binary CE, probabilities": (
        lambda d, n, k, t: (_binary_targets(d, (n, k), t), _unit_interval(d, (n, k), t)),
        lambda xl, y, q: xl.binary_cross_entropy(y, q, reduction="sum")),
    "binary focal, logits": (
        lambda d, n, k, t: (_binary_targets(d, (n, k), t), d(_logits((n, k), t))),
        lambda xl, y, z: xl.binary_focal_cross_entropy(y, z, gamma=2.0, alpha=0.25, from_logits=True)),
    "binary focal, probabilities": (
        lambda d, n, k, t: (_binary_targets(d, (n, k), t), _unit_interval(d, (n, k), t)),
        lambda xl, y, q: xl.binary_focal_cross_entropy(y, q, gamma=0.5, label_smoothing=0.1, reduction="none")),
    "categorical focal, logits": (
        lambda d, n, k, t: (d(probability_vectors((n, k), t)), d(_logits((n, k), t)), _weights(d, k, t)),
        lambda xl, y, z, a: xl.categorical_focal_cross_entropy(y, z, gamma=2.0, alpha=a, from_logits=True)),
    "categorical focal, probabilities": (
        lambda d, n, k, t: (d(probability_vectors((n, k), t)), d(probability_vectors((n, k), t))),
        lambda xl, y, q: xl.categorical_focal_cross_entropy(y, q, gamma=1.0, label_smoothing=0.1, reduction="sum")),
    "mean squared error": (
        lambda d, n, k, t: (d(_logits((n, k), t)), d(_logits((n, k), t))),
        lambda xl, y, m: xl.mean_squared_error(y, m)),
    "gaussian NLL": (
        lambda d, n, k, t: (_moderate(d, (n, k), t), _moderate(d, (n, k), t),
                            (_unit_interval(d, (n, k), t) + np.asarray(0.01, FLOATS[t])).astype(FLOATS[t])),
        lambda xl, y, m, v: xl.gaussian_nll(y, m, v, reduction="none")),
    "perplexity": (
        lambda d, n, k, t: (_labels(d, n, k), _moderate(d, (n, k), t)),
        lambda xl, y, z: xl.perplexity(y, z)),
    "Brier score": (
        lambda d, n, k, t: (_labels(d, n, k), d(probability_vectors((n, k), t))),
        lambda xl, y, q: xl.brier_score(y, q, reduction="sum")),
    "linear CE": (
        lambda d, n, k, t: (_moderate(d, (n, DIM), t), _moderate(d, (k, DIM), t), _labels(d, n, k)),
        lambda xl, h, w, y: xl.linear_cross_entropy(h, w, y, label_smoothing=0.1, z_loss=1e-4)),
}
GROWING = ("linear CE", "mean squared error", "gaussian NLL")
# the input the losses are differentiated with respect to (torch.func.grad): the prediction
PREDICTION = {name: 1 if not name.startswith("linear") else 0 for name in LOSSES}


@st.composite
def loss_problems(draw, dtypes=("float32", "float64")):
    name = draw(st.sampled_from(sorted(LOSSES)))
    dtype_name = draw(st.sampled_from(dtypes))
    n, k = draw(st.sampled_from(SHAPES))
    return name, dtype_name, LOSSES[name][0](draw, n, k, dtype_name)


def _scale(inputs):
    return max([1.0] + [float(np.abs(a.astype(np.float64)).max(initial=0.0)) for a in inputs
                        if a.dtype.kind == "f"])


# ---- TensorFlow: unknown shapes, XLA ----------------------------------------------------------

# F44 (known failure, not yet fixed): TF XLA fails to compile a loss now and then (a check's message,
# AsString, has no XLA kernel: the XLA context not seen when it was built), after some sequence of eager,
# None-shape and XLA calls not reduced yet (seen with brier_score and categorical CE from probabilities);
# such a compile is skipped, and not retried
F44_FAILED = set()


def subnormals(inputs):
    """Whether a float input holds a subnormal (F45: XLA's CPU code flushes them, eager does not)."""
    return any(a.dtype.kind == "f" and bool(((a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)).any())
               for a in inputs)


@functools.cache
def tf_graph(name, signature, jit_compile):
    """``LOSSES[name]`` as one tf.function: ``signature`` ((dtype name, shape), ...), its unknown
    dimensions None, or for XLA without one (a compile per shape)."""
    import tensorflow as tf
    xl, loss = BACKENDS[2].xl, LOSSES[name][1]
    specs = [tf.TensorSpec(shape, getattr(tf, dtype)) for dtype, shape in signature]
    if jit_compile:
        return tf.function(lambda *a: loss(xl, *a), jit_compile=True)
    return tf.function(lambda *a: loss(xl, *a), input_signature=specs)


@fuzz
@given(loss_problems())
def test_every_loss_in_tf_graphs_equals_eager(problem):
    """Every public loss (``LOSSES``) as a tf.function with unknown batch and class dimensions
    (float32, float64) and under XLA (float32), equal to its eager value."""
    import tensorflow as tf
    name, dtype_name, inputs = problem
    xl, loss = BACKENDS[2].xl, LOSSES[name][1]
    tensors = [tf.constant(a) for a in inputs]
    eager = loss(xl, *tensors).numpy()
    signature = tuple((a.dtype.name, (None,) * a.ndim) for a in inputs)
    if name == "linear CE":  # documented: the weight's shape (V, d) static in a graph, the rows unknown
        signature = (signature[0][0], (None, DIM)), (signature[1][0], inputs[1].shape), signature[2]
    what = f"{name} {dtype_name} {[a.tolist() for a in inputs]}"
    graph = tf_graph(name, signature, False)(*tensors).numpy()
    close(graph, eager, dtype_name=dtype_name, scale=_scale(inputs), what=f"tf.function (None shapes) {what}")
    # F45 (TF, XLA): a subnormal input is flushed to 0, where eager reads it: categorical CE from
    # probabilities, y [1, 1.4e-45, 1.4e-45] against q [1, 0, 0], is -0.0 under XLA, inf eager
    key = (name, tuple(a.shape for a in inputs))
    if dtype_name == "float32" and key not in F44_FAILED and not subnormals(inputs):
        try:
            compiled = tf_graph(name, signature, True)(*tensors).numpy()
        except tf.errors.InvalidArgumentError as error:
            if "AsString" not in str(error):
                raise
            F44_FAILED.add(key)
            return
        close(compiled, eager, dtype_name=dtype_name, scale=_scale(inputs), what=f"XLA {what}")


# ---- torch: compile, func.grad, func.vmap -----------------------------------------------------

@functools.cache
def torch_compiled(name):
    xl, loss = BACKENDS[1].xl, LOSSES[name][1]
    return torch.compile(lambda *a: loss(xl, *a), dynamic=True)


@fuzz
@given(loss_problems(), st.data())
def test_every_loss_in_torch_compile_and_func_equals_eager(problem, data):
    """Every public loss (``LOSSES``) under torch.compile (float32), torch.func.grad with respect
    to its prediction (against autograd) and torch.func.vmap over two problems (against each
    eager), float32 and float64."""
    name, dtype_name, inputs = problem
    xl, loss = BACKENDS[1].xl, LOSSES[name][1]
    tensors = [torch.from_numpy(a.copy()) for a in inputs]
    at = PREDICTION[name]
    what = f"{name} {dtype_name} {[a.tolist() for a in inputs]}"
    scale = _scale(inputs)
    leaf = tensors[at].clone().requires_grad_()
    eager = loss(xl, *tensors[:at], leaf, *tensors[at + 1:])
    autograd = torch.autograd.grad(eager.sum(), leaf)[0].numpy()
    eager = eager.detach().numpy()
    if dtype_name == "float32":
        compiled = torch_compiled(name)(*tensors).detach().numpy()
        close(compiled, eager, dtype_name=dtype_name, scale=scale, what=f"torch.compile {what}")

    def summed(prediction, *others):
        return loss(xl, *others[:at], prediction, *others[at:]).sum()

    others = [*tensors[:at], *tensors[at + 1:]]
    second = [torch.from_numpy(a.copy()) for a in LOSSES[name][0](data.draw, *inputs[0].shape[:1],
                                                                   _classes(name, inputs), dtype_name)]
    with xentlib.value_checks(False):  # the value checks read data back: not under torch.func
        grad = torch.func.grad(summed)(tensors[at], *others)
        batched = torch.func.vmap(lambda *a: loss(xl, *a))(*[torch.stack([a, b]) for a, b in zip(tensors, second)])
    # the gradients of linear CE, MSE and the Gaussian NLL grow with their inputs (d/dh = dz W), the others'
    # are bounded: a few ulps of that size (linear CE, h 1, W 16: d/dh 0.05296 from terms of size 16)
    grad_scale = float(np.abs(autograd).max(initial=1.0)) * (scale if name in GROWING else 1.0)
    if np.isfinite(eager).all():  # (a loss beyond the dtype's max, e.g. a perplexity: no gradient)
        close(grad.numpy(), autograd, dtype_name=dtype_name, scale=grad_scale, what=f"torch.func.grad {what}")
    for i, problem_tensors in enumerate((tensors, second)):
        close(batched[i].numpy(), loss(xl, *problem_tensors).numpy(), dtype_name=dtype_name,
              scale=max(scale, _scale([t.numpy() for t in problem_tensors])), what=f"torch.func.vmap [{i}] {what}")


def _classes(name, inputs):
    """K of a problem's inputs (linear CE: the weight's rows)."""
    return inputs[1].shape[0] if name.startswith("linear") else inputs[1].shape[-1]
