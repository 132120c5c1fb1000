"""Fuzzed values: every backend against a float64 (long double) oracle and the frameworks'
built-ins (see tests/fuzzing.py)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import special

from fuzzing import (
    BACKENDS,
    EVERY,
    F32,
    FLOATS,
    LD,
    REDUCTION,
    SIXTEEN,
    SMOOTHING,
    WEIGHT,
    as_loss,
    assert_refused,
    backends_for,
    call,
    close,
    close_to_builtin,
    each_backend,
    fresh_tf_hot_paths,  # noqa: F401 (an autouse fixture)
    fuzz,
    log_softmax_ld,
    logits_batches,
    probability_vectors,
    reduce_items,
    refused,
    smoothing_taken,
    times,
)

# ---- known failures --------------------------------------------------------------------
# Each is a finding of this suite not yet fixed (F<n> in the findings list, reproduced by a strict
# xfail in tests/test_known_failures.py): the backends named are skipped in exactly that input
# region, so that the property stays green and keeps looking everywhere else.

def weights_out_of_range(weight, dtype_name, reduction):
    """The backends whose class weights follow the documented floor, not the oracle's exact ones
    (F21: weights spanning more than float32's range with logits of 32 bits or fewer, which are
    computed in float32: scaled by a power of two, the smallest is raised to the floor there;
    w [1e300, 1e-30] gives a ratio of 1e83, not 1e330)."""
    if weight is None:
        return ()
    w = weight[weight != 0]
    if dtype_name != "float64" and w.size and w.max() / w.min() > 1 / F32.tiny:
        return EVERY
    return ()


# ---- building blocks ---------------------------------------------------------------------

def _lse(z):
    if not z.shape[-1]:
        return np.full(z.shape[:-1], -np.inf)
    z = z.astype(LD)
    m = z.max(axis=-1, keepdims=True)
    return (np.log(np.exp(z - m).sum(axis=-1, keepdims=True)) + m)[..., 0]


BLOCKS = {
    "logsumexp": _lse,
    "softmax": lambda z: np.exp(log_softmax_ld(z)) if z.shape[-1] else z,
    "log_softmax": lambda z: log_softmax_ld(z) if z.shape[-1] else z,
    "sigmoid": lambda z: special.expit(z),
    "log_sigmoid": lambda z: -np.logaddexp(0, -z),
}


@fuzz
@given(logits_batches(any_leading_shape=True, min_classes=1), st.data())
def test_building_blocks_match_the_oracle(batch, data):
    """logsumexp, softmax, log_softmax along any axis; sigmoid and log_sigmoid on any shape (0-d too)."""
    dtype_name, z = batch
    z64 = z.astype(np.float64)
    scale = max(float(np.abs(z64).max(initial=0.0)), 1.0)
    axis = data.draw(st.integers(-z.ndim, z.ndim - 1))
    for name, fn in BLOCKS.items():
        elementwise = name in ("sigmoid", "log_sigmoid")
        x = z[..., 0] if elementwise else z  # the elementwise ones also see 0-d arrays
        expected = fn(x.astype(np.float64))
        kwargs = {} if elementwise else {"axis": axis}
        moved = x if elementwise else np.moveaxis(x, -1, axis)
        for backend in backends_for(dtype_name):
            got = call(backend, name, moved, **kwargs)
            if name in ("softmax", "log_softmax"):
                got = np.moveaxis(got, axis, -1)
            assert got.dtype == (np.float32 if x.dtype.name == "bfloat16" else x.dtype), (backend, name, got.dtype)
            close(got, expected, dtype_name=dtype_name, scale=scale if name.startswith("log") else 1.0,
                  rounds_to=dtype_name, what=f"{backend.name} {name} {dtype_name}")


# ---- sparse categorical CE --------------------------------------------------------------

@fuzz
@given(logits_batches(any_leading_shape=True, max_classes=5), st.data())
def test_sparse_ce_from_logits(batch, data):
    """Any leading shape (0-d, empty), the class axis anywhere, every option and reduction,
    16-bit to float64, class weights from 0 and subnormal to 1e300; torch's F.cross_entropy and
    tf.nn's softmax CE where they are finite."""
    dtype_name, z = batch
    k = z.shape[-1]
    ignore_index = data.draw(st.sampled_from([None, -1]))
    low = 0 if ignore_index is None else -1
    labels = data.draw(hnp.arrays(np.int64, z.shape[:-1], elements=st.integers(low, k - 1)))
    drawn = data.draw(SMOOTHING)
    smoothing = smoothing_taken(drawn, dtype_name, shares=k)  # the oracle's
    weight = data.draw(st.none() | hnp.arrays(np.float64, (k,), elements=WEIGHT))
    reduction = data.draw(REDUCTION)
    axis = data.draw(st.integers(-z.ndim, z.ndim - 1))

    log_q = log_softmax_ld(z)  # exact: the items are rounded to the loss dtype, not their terms
    kept = labels != ignore_index
    safe = np.where(kept, labels, 0)
    nll_y = -np.take_along_axis(log_q, safe[..., None], axis=-1)[..., 0]
    if weight is None:
        uniform = -log_q.sum(axis=-1) / k
        item = times(1 - smoothing, nll_y) + times(smoothing, uniform)
        items = np.where(kept, as_loss(item, dtype_name), 0)
        w_y = kept.astype(LD)
    else:
        w = weight.astype(LD)
        w_y = np.where(kept, w[safe], 0)
        uniform = times(w, -log_q).sum(axis=-1) / k
        items = np.where(kept, times((1 - smoothing) * w_y, nll_y) + times(smoothing, uniform), 0)
    expected = reduce_items(items, reduction, denominator=w_y.sum())
    # Unweighted items beyond the loss dtype's max are inf there (the documented rule), but a
    # backend that computes such an item wide may give the exact mean: either is right.
    exact = (reduce_items(np.where(kept, item, 0), reduction, denominator=kept.sum())
             if weight is None and reduction != "none" else None)
    # The error of one item is a few ulps of its largest logit (times its weight); a sum adds
    # them up; a (weighted) mean of non-negative items is within a few ulps of it relative to itself.
    w_max = 1.0 if weight is None else float(weight.max(initial=1.0))
    scale = float(np.abs(z.astype(np.float64)).max(initial=1.0))
    if reduction != "mean":
        scale = min(scale * max(w_max, 1.0) * max(1, int(kept.sum())), 1e308)
    elif weight is not None and w_y.sum() > 0:
        # the smoothing term's error is a few ulps of the logits times the other classes' weights,
        # divided by the labels' weights: bfloat16 [0, 30], label 0, ε 0.1, w [1e-30, 1e-3] is
        # 4.7e12, from ε/2 w_1 (-log q_1) = 4.7e-18 over 1e-30, where float32's -log q_1 is 0
        scale = min(scale * w_max * int(kept.sum()) / float(w_y.sum()), 1e308)
    y_pred = np.moveaxis(z, -1, axis)
    if reduction != "mean" and refused(weight, dtype_name):  # ('mean' rescales the weights first)
        return assert_refused("class_weight", "sparse_categorical_cross_entropy", labels, y_pred,
                              dtype_name=dtype_name, from_logits=True, label_smoothing=drawn,
                              ignore_index=ignore_index, class_weight=weight, axis=axis, reduction=reduction)
    known = weights_out_of_range(weight, dtype_name, reduction)
    what = f"sparse CE {dtype_name} (ε={smoothing}, w={weight}, ignore={ignore_index}, {reduction}, axis={axis})"
    results = {}
    for name, got in each_backend("sparse_categorical_cross_entropy", labels, y_pred, from_logits=True,
                                  label_smoothing=drawn, ignore_index=ignore_index,
                                  class_weight=weight, axis=axis, reduction=reduction, skip=known):
        results[name] = got
        close(got, expected, dtype_name=dtype_name, scale=scale, what=f"{name} {what}", or_else=exact)
        assert np.all(got >= 0), f"{name} {what}: {got} < 0"

    if dtype_name in SIXTEEN or known:
        return  # the built-ins compute 16-bit losses in 16 bits: not exact
    import tensorflow as tf
    import torch
    import torch.nn.functional as F
    flat_z = z.reshape(-1, k)
    torch_weight = None
    if weight is None or np.array_equal(weight.astype(z.dtype).astype(np.float64), weight):
        torch_weight = None if weight is None else torch.from_numpy(weight.astype(z.dtype))
        builtin = F.cross_entropy(torch.from_numpy(flat_z.copy()), torch.from_numpy(labels.reshape(-1).copy()),
                                  weight=torch_weight, ignore_index=-100 if ignore_index is None else ignore_index,
                                  label_smoothing=smoothing, reduction=reduction).numpy()
        close_to_builtin(results["torch"], builtin.reshape(np.shape(results["torch"])), dtype_name=dtype_name,
                         scale=scale, what=f"torch vs F.cross_entropy: {what}")
    if weight is None:
        target = (1 - smoothing) * np.eye(k, dtype=z.dtype)[safe.reshape(-1)] + np.asarray(smoothing / k, z.dtype)
        per_item = tf.nn.softmax_cross_entropy_with_logits(target, flat_z).numpy().astype(np.float64)
        per_item = np.where(kept.reshape(-1), per_item, 0.0)
        builtin = np.asarray(reduce_items(per_item, reduction, denominator=kept.sum()), np.float64)
        close_to_builtin(results["tensorflow"], builtin.reshape(np.shape(results["tensorflow"])),
                         dtype_name=dtype_name, scale=scale, what=f"tensorflow vs tf.nn softmax CE: {what}")


@fuzz
@given(logits_batches(max_classes=5, dtypes=("float16", "float32", "float64")), st.data())
def test_sparse_ce_from_probabilities(batch, data):
    """Probabilities with exact zeros and subnormals: inf where the label's probability is 0
    (unless its weight is 0), never NaN; 0 log 0 = 0 under smoothing."""
    dtype_name, z = batch
    n, k = z.shape
    q = data.draw(probability_vectors((n, k), dtype_name))
    labels = data.draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, k - 1)))
    drawn = data.draw(SMOOTHING)
    smoothing = smoothing_taken(drawn, dtype_name, shares=k)  # the oracle's
    weight = data.draw(st.none() | hnp.arrays(np.float64, (k,), elements=WEIGHT))
    reduction = data.draw(REDUCTION)
    with np.errstate(divide="ignore"):
        log_q = np.log(q.astype(np.float64)).astype(LD)
    w = np.ones(k, LD) if weight is None else weight.astype(LD)
    w_y = w[labels]
    nll_y = -log_q[np.arange(n), labels]
    uniform = times(w, -log_q).sum(axis=-1) / k
    items = times((1 - smoothing) * w_y, nll_y) + times(smoothing, uniform)
    if weight is None:
        items = as_loss(items, dtype_name)
    expected = reduce_items(items, reduction, denominator=w_y.sum())
    w_max = 1.0 if weight is None else float(weight.max(initial=1.0))
    scale = 1000.0 if reduction == "mean" else max(w_max, 1.0) * 1000 * max(n, 1)
    if reduction != "mean" and refused(weight, dtype_name):  # ('mean' rescales the weights first)
        return assert_refused("class_weight", "sparse_categorical_cross_entropy", labels, q, dtype_name=dtype_name,
                              label_smoothing=drawn, class_weight=weight, reduction=reduction)
    known = weights_out_of_range(weight, dtype_name, reduction)
    nonzero = [] if weight is None else weight[weight != 0]
    span = np.log2(nonzero.max()) - np.log2(nonzero.min()) if len(nonzero) else 0.0  # in powers of two
    if (q == 0).any() and span > (2000 if dtype_name == "float64" else 996):
        known = EVERY  # F21: weights spanning more than the compute dtype's range: the smallest is 0 there
    elif dtype_name == "float64" and smoothing > 0 and span > 1000:
        # F31: float64 weights whose ratio passes float64's max, smoothed: the others' weights over the
        # label's overflow (NumPy, torch: inf where the answer is finite); TF takes a subnormal as float64's
        # smallest normal (its convention), so its answer differs from the oracle's here
        known = EVERY
    for name, got in each_backend("sparse_categorical_cross_entropy", labels, q, label_smoothing=drawn,
                                  class_weight=weight, reduction=reduction, skip=known):
        close(got, expected, dtype_name=dtype_name, scale=min(scale, 1e308),
              what=f"{name} sparse CE from probabilities {dtype_name} (ε={smoothing}, w={weight}, {reduction})")


# ---- categorical CE ---------------------------------------------------------------------

@fuzz
@given(logits_batches(any_leading_shape=True, max_classes=5), st.booleans(), st.data())
def test_categorical_ce(batch, from_logits, data):
    """Soft targets with zeros and subnormals, logits to the dtype's max or probabilities with
    zeros (inf where a target > 0 meets q = 0), smoothing, any axis; tf.nn, torch and Keras
    from logits where they are finite."""
    dtype_name, z = batch
    k = z.shape[-1]
    y = data.draw(probability_vectors(z.shape, dtype_name))
    drawn = data.draw(SMOOTHING)
    smoothing = smoothing_taken(drawn, dtype_name, shares=k)  # the oracle's
    reduction = data.draw(REDUCTION)
    axis = data.draw(st.integers(-z.ndim, z.ndim - 1))
    y_pred = z if from_logits else data.draw(probability_vectors(z.shape, dtype_name))
    target = (1 - smoothing) * y.astype(np.float64).astype(LD) + LD(smoothing) / k
    if from_logits:
        minus_log_q = -log_softmax_ld(z)
        scale = float(np.abs(z.astype(np.float64)).max(initial=1.0))
    else:
        with np.errstate(divide="ignore"):
            minus_log_q = -np.log(y_pred.astype(np.float64)).astype(LD)
        scale = 1000.0
    exact_items = times(target, minus_log_q).sum(axis=-1)
    items = as_loss(exact_items, dtype_name)
    expected = reduce_items(items, reduction)
    exact = reduce_items(exact_items, reduction) if reduction != "none" else None  # an item computed wide
    scale *= max(1, items.size) if reduction == "sum" else 1
    what = f"categorical CE {dtype_name} (from_logits={from_logits}, ε={smoothing}, {reduction}, axis={axis})"
    results = {}
    for name, got in each_backend("categorical_cross_entropy", np.moveaxis(y, -1, axis),
                                  np.moveaxis(y_pred, -1, axis), from_logits=from_logits,
                                  label_smoothing=drawn, axis=axis, reduction=reduction):
        results[name] = got
        close(got, expected, dtype_name=dtype_name, scale=scale, what=f"{name} {what}", or_else=exact)

    if dtype_name in SIXTEEN or not from_logits or not z.size:
        return  # built-ins: 16-bit computed in 16 bits; probabilities clipped (Keras) or clamped
    import keras
    import tensorflow as tf
    import torch
    import torch.nn.functional as F
    flat_y, flat_z = y.reshape(-1, k), z.reshape(-1, k)
    smoothed = ((1 - smoothing) * flat_y + np.asarray(smoothing / k, z.dtype)).astype(z.dtype)
    builtins = {
        "torch": F.cross_entropy(torch.from_numpy(flat_z.copy()), torch.from_numpy(flat_y.copy()),
                                 label_smoothing=smoothing, reduction="none").numpy(),
        "tensorflow": tf.nn.softmax_cross_entropy_with_logits(smoothed, flat_z).numpy(),
        "keras": keras.losses.categorical_crossentropy(flat_y, flat_z, from_logits=True,
                                                       label_smoothing=smoothing).numpy(),
    }
    for source, per_item in builtins.items():
        builtin = np.asarray(reduce_items(per_item.astype(np.float64), reduction), np.float64)
        got = results["numpy" if source == "keras" else source]
        close_to_builtin(got, builtin.reshape(np.shape(got)), dtype_name=dtype_name, scale=scale,
                         what=f"xentlib vs {source}: {what}")


# ---- named errors: 0-d and empty class axes ------------------------------------------------

CLASS_AXIS = {  # function -> (the argument with the class axis, the call given that array)
    "logsumexp": ("x", lambda a, lab: ((a,), {})),
    "softmax": ("x", lambda a, lab: ((a,), {})),
    "log_softmax": ("x", lambda a, lab: ((a,), {})),
    "entropy": ("p", lambda a, lab: ((a,), {})),
    "cross_entropy": ("p", lambda a, lab: ((a, a), {})),
    "kl_divergence": ("p", lambda a, lab: ((a, a), {})),
    "smooth_labels": ("y", lambda a, lab: ((a,), {"epsilon": 0.1})),
    "categorical_cross_entropy": ("y_pred", lambda a, lab: ((a, a), {"from_logits": True})),
    "sparse_categorical_cross_entropy": ("y_pred", lambda a, lab: ((lab, a), {"from_logits": True})),
    "perplexity": ("logits", lambda a, lab: ((lab, a), {})),
    "categorical_focal_cross_entropy": ("y_pred", lambda a, lab: ((a, a), {"from_logits": True})),
    "brier_score": ("probs", lambda a, lab: ((lab, a), {})),
    "softmax_cross_entropy_grad": ("logits", lambda a, lab: ((a, a), {})),
}


@fuzz
@given(st.sampled_from(sorted(CLASS_AXIS)), st.sampled_from(["float16", "float32", "float64"]),
       st.sampled_from(["0-d", "no classes"]), hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3))
def test_class_axis_functions_name_a_0d_or_classless_argument(fn, dtype_name, form, leading):
    """A 0-d array, or one with no classes (length 0 along the class axis), where a function
    needs a class axis: the same named ValueError from every backend (first argument named
    first), or, for the building blocks on no classes, the same empty/-inf result everywhere."""
    arg, make = CLASS_AXIS[fn]
    shape = () if form == "0-d" else (*leading, 0)
    a = np.ones(shape, FLOATS[dtype_name]) / 2
    lab = np.zeros(shape[:-1] if shape else (), np.int64)
    args, kwargs = make(a, lab)
    outcomes = []
    for backend in BACKENDS:
        try:
            outcomes.append(("value", call(backend, fn, *args, **kwargs)))
        except (ValueError, TypeError) as error:
            outcomes.append(("error", str(error)))
    kinds = {kind for kind, _ in outcomes}
    assert len(kinds) == 1, f"{fn}({form} {shape}): {outcomes}"
    if kinds == {"error"}:
        names = {fn_arg for fn_arg in ("x", "p", "q", "y", "y_true", "y_pred", "labels", "logits", "probs")}
        for _, message in outcomes:
            first = message.split(" ", 1)[0]
            assert first in names, f"{fn}({form} {shape}): message does not name an argument: {message}"
    else:
        assert form == "no classes" and fn in ("logsumexp", "softmax", "log_softmax", "softmax_cross_entropy_grad"), (
            fn, form, outcomes)
        expected = np.full(shape[:-1], -np.inf) if fn == "logsumexp" else np.empty(shape)
        for _, value in outcomes:
            np.testing.assert_array_equal(value, expected)


@pytest.mark.parametrize("backend", BACKENDS, ids=str)
def test_bfloat16_is_refused_by_numpy_only(backend):
    """NumPy has no bfloat16: the NumPy backend refuses it by name; the frameworks take it."""
    z = np.zeros((2, 3), FLOATS["bfloat16"])
    if backend.name == "numpy":
        with pytest.raises(TypeError, match="^x must have a floating-point dtype"):
            call(backend, "log_softmax", z)
    else:
        assert call(backend, "log_softmax", z).shape == (2, 3)
