"""Bad input gets a ValueError/TypeError naming the argument, in every backend.

Each row: function, positional inputs (NumPy, converted to the backend),
keyword options, the exception type and a regex the message must match; the
regex always starts with the offending argument's name.
"""
import numpy as np
import pytest

import xentlib

P = np.array([0.6, 0.2, 0.2])
Q = np.array([0.5, 0.3, 0.2])
Z = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
Y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
L = np.array([1, 0])
B = np.array([1.0, 0.0, 1.0])
PB = np.array([0.9, 0.2, 0.6])
JOINT = np.array([[0.25, 0.25], [0.25, 0.25]])

BAD = [
    # mismatched shapes
    ("cross_entropy", (P, Q[:2]), {}, ValueError, r"p has shape \(3,\) but q has shape \(2,\)"),
    ("kl_divergence", (P, np.tile(Q, (2, 1))), {}, ValueError, "p has shape"),
    ("categorical_cross_entropy", (Y, Z[:, :2]), {"from_logits": True}, ValueError, "y_true has shape"),
    ("binary_cross_entropy", (B, PB[:2]), {}, ValueError, "y_true has shape"),
    ("mean_squared_error", (B, PB[:2]), {}, ValueError, "y_true has shape"),
    ("gaussian_nll", (B, PB[:2]), {}, ValueError, "y_true has shape"),
    ("softmax_cross_entropy_grad", (Y, Z[:1]), {}, ValueError, "y_true has shape"),
    ("sigmoid_cross_entropy_grad", (B, PB[:2]), {}, ValueError, "y_true has shape"),
    ("sparse_categorical_cross_entropy", (np.array([1, 0, 2]), Z), {"from_logits": True}, ValueError,
     r"labels has shape \(3,\); expected \(2,\)"),
    # labels outside [0, C) that are not ignore_index
    ("sparse_categorical_cross_entropy", (np.array([3, 0]), Z), {"from_logits": True}, ValueError,
     r"labels must lie in \[0, 3\)"),
    ("sparse_categorical_cross_entropy", (np.array([-1, 0]), Z), {"from_logits": True, "ignore_index": -100},
     ValueError, r"labels must lie in \[0, 3\) or equal ignore_index=-100"),
    ("perplexity", (np.array([5, 0]), Z), {}, ValueError, "labels must lie in"),
    # probabilities outside [0, 1]
    ("binary_cross_entropy", (B, np.array([0.9, 1.5, 0.2])), {}, ValueError, "y_pred must hold probabilities"),
    ("binary_cross_entropy", (np.array([1.0, -0.5, 0.0]), PB), {}, ValueError, "y_true must hold probabilities"),
    ("sigmoid_cross_entropy_grad", (np.array([2.0, 0.0, 1.0]), PB), {}, ValueError, "y_true must hold"),
    ("entropy", (np.array([1.2, -0.2]),), {}, ValueError, "p must hold probabilities"),
    # distributions that do not sum to 1
    ("entropy", (np.array([0.5, 0.6]),), {}, ValueError, "p must sum to 1"),
    ("cross_entropy", (P, np.array([0.5, 0.5, 0.5])), {}, ValueError, "q must sum to 1"),
    ("categorical_cross_entropy", (Y, np.array([[0.2, 0.2, 0.2], [0.5, 0.5, 0.0]])), {}, ValueError,
     "y_pred must sum to 1"),
    ("categorical_cross_entropy", (np.array([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]]), Z), {"from_logits": True},
     ValueError, "y_true must"),
    ("smooth_labels", (np.array([0.0, 0.5, 0.0]),), {"epsilon": 0.1}, ValueError, "y must sum to 1"),
    ("joint_entropy", (JOINT * 2,), {}, ValueError, "p_xy must"),
    ("mutual_information", (np.array([0.5, 0.5]),), {}, ValueError, "p_xy must have at least 2 dimensions"),
    ("softmax_cross_entropy_grad", (Y * 2, Z), {}, ValueError, "y_true must"),
    # unknown reduction, bad smoothing, bad options
    ("categorical_cross_entropy", (Y, Z), {"from_logits": True, "reduction": "avg"}, ValueError, "reduction must"),
    ("sparse_categorical_cross_entropy", (L, Z), {"from_logits": True, "reduction": None}, ValueError,
     "reduction must"),
    ("binary_cross_entropy", (B, PB), {"reduction": "batchmean"}, ValueError, "reduction must"),
    ("mean_squared_error", (B, PB), {"reduction": "MEAN"}, ValueError, "reduction must"),
    ("categorical_cross_entropy", (Y, Z), {"from_logits": True, "label_smoothing": 1.5}, ValueError,
     r"label_smoothing must be in \[0, 1\]"),
    ("sparse_categorical_cross_entropy", (L, Z), {"from_logits": True, "label_smoothing": -0.1}, ValueError,
     "label_smoothing must be in"),
    ("binary_cross_entropy", (B, PB), {"label_smoothing": float("nan")}, ValueError, "label_smoothing must be in"),
    ("smooth_labels", (Y,), {"epsilon": 2.0}, ValueError, "epsilon must be in"),
    ("categorical_cross_entropy", (Y, Z), {"from_logits": "yes"}, TypeError, "from_logits must be True or False"),
    ("entropy", (P,), {"base": 1}, ValueError, "base must be positive, finite and not 1"),
    ("entropy", (P,), {"base": "bits"}, TypeError, "base must be"),
    ("entropy", (P,), {"axis": 3}, ValueError, "axis=3 is out of range"),
    ("sparse_categorical_cross_entropy", (L, Z), {"from_logits": True, "ignore_index": 1.5}, TypeError,
     "ignore_index must be an int"),
    ("sparse_categorical_cross_entropy", (L, Z), {"from_logits": True, "class_weight": np.ones(2)}, ValueError,
     r"class_weight must have shape \(3,\)"),
    ("sparse_categorical_cross_entropy", (L, Z), {"from_logits": True, "class_weight": np.array([1.0, -1, 1])},
     ValueError, "class_weight must be non-negative"),
    ("binary_cross_entropy", (B, PB), {"pos_weight": np.array([-1.0])}, ValueError, "pos_weight must"),
    ("binary_cross_entropy", (B, PB), {"pos_weight": np.ones(2)}, ValueError, "pos_weight must be a scalar"),
    ("gaussian_nll", (B, PB), {"variance": 0.0}, ValueError, "variance must be positive"),
    ("gaussian_nll", (B, PB), {"variance": np.ones(2)}, ValueError, "variance must be a scalar or broadcastable"),
    # NaN inputs
    ("entropy", (np.array([np.nan, 1.0]),), {}, ValueError, "p contains NaN"),
    ("cross_entropy", (P, np.array([np.nan, 0.5, 0.5])), {}, ValueError, "q contains NaN"),
    ("categorical_cross_entropy", (Y, np.array([[np.nan, 0.0, 1.0], [0.0, 0.0, 0.0]])), {"from_logits": True},
     ValueError, "y_pred must be finite"),
    ("sparse_categorical_cross_entropy", (L, np.array([[np.inf, 0.0, 1.0], [0.0, 0.0, 0.0]])),
     {"from_logits": True}, ValueError, "y_pred must be finite"),
    ("binary_cross_entropy", (B, np.array([0.0, np.nan, 1.0])), {"from_logits": True}, ValueError,
     "y_pred must be finite"),
    ("binary_cross_entropy", (np.array([np.nan, 0.0, 1.0]), PB), {}, ValueError, "y_true contains NaN"),
    ("mean_squared_error", (np.array([np.nan, 0.0, 1.0]), PB), {}, ValueError, "y_true contains NaN"),
    ("mean_squared_error", (B, np.array([np.inf, 0.0, 1.0])), {}, ValueError, r"y_pred contains \+-inf"),
    ("gaussian_nll", (np.array([-np.inf, 0.0, 1.0]), PB), {}, ValueError, r"y_true contains \+-inf"),
    ("gaussian_nll", (B, np.array([np.nan, 0.0, 1.0])), {}, ValueError, "mean contains NaN"),
    ("logsumexp", (np.array([np.nan, 0.0]),), {}, ValueError, "x contains NaN"),
    ("softmax", (np.array([np.nan, 0.0]),), {}, ValueError, "x contains NaN"),
    ("softmax_cross_entropy_grad", (Y, Z * np.nan), {}, ValueError, "logits must be finite"),
    ("perplexity", (L, Z * np.nan), {}, ValueError, "logits must be finite"),
    ("perplexity", (L, Z.astype(np.int64)), {}, TypeError, "logits must have a floating-point dtype"),
    # integer dtypes where floats are needed, floats where labels are needed
    ("entropy", (np.array([1, 0]),), {}, TypeError, "p must have a floating-point dtype"),
    ("categorical_cross_entropy", (Y.astype(np.int64), Z), {"from_logits": True}, TypeError,
     "y_true must have a floating-point dtype"),
    ("binary_cross_entropy", (B, np.array([1, 0, 1])), {}, TypeError, "y_pred must have a floating-point dtype"),
    ("logsumexp", (np.array([1, 2]),), {}, TypeError, "x must have a floating-point dtype"),
    ("sparse_categorical_cross_entropy", (L.astype(np.float64), Z), {"from_logits": True}, TypeError,
     "labels must hold integer class indices"),
    ("perplexity", (L.astype(np.float32), Z), {}, TypeError, "labels must hold integer class indices"),
]


def _ids():
    seen = {}
    for fn, *_ in BAD:
        seen[fn] = seen.get(fn, 0) + 1
        yield f"{fn}-{seen[fn]}"


@pytest.mark.parametrize("fn, arrays, kwargs, error, match", BAD, ids=list(_ids()))
def test_bad_input_raises_a_named_error(backend, fn, arrays, kwargs, error, match):
    kwargs = {k: backend.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    with pytest.raises(error, match=match):
        getattr(backend.xl, fn)(*(backend.asarray(a) for a in arrays), **kwargs)


def test_all_ignored_perplexity_is_an_error(backend):
    with pytest.raises(ValueError, match="labels: every item equals ignore_index"):
        backend.xl.perplexity(backend.asarray(np.array([-100, -100])), backend.asarray(Z), ignore_index=-100)


def test_value_checks_can_be_switched_off(backend):
    not_a_distribution = backend.asarray(np.array([0.5, 0.7]))
    with pytest.raises(ValueError):
        backend.xl.entropy(not_a_distribution)
    with xentlib.value_checks(False):
        value = backend.numpy(backend.xl.entropy(not_a_distribution))
    assert value == pytest.approx(-(0.5 * np.log(0.5) + 0.7 * np.log(0.7)))
    with pytest.raises(ValueError):  # back on after the block
        backend.xl.entropy(not_a_distribution)


def test_value_checks_switch_rejects_non_bool():
    with pytest.raises(TypeError, match="enabled must be True or False"):
        with xentlib.value_checks("off"):
            pass


# ---- every float argument of every function: integer dtype and NaN ---------------------

W3 = np.array([1.0, 2.0, 0.5])
PY = np.array([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]])

# A valid call of every common function: (name, positional (argument, array) pairs, array keyword
# arguments, other keyword options). Each float array is then, one at a time, made integer or NaN.
VALID = [
    *[(fn, [("x", Z)], {}, {}) for fn in ("logsumexp", "softmax", "log_softmax", "sigmoid", "log_sigmoid")],
    ("entropy", [("p", P)], {}, {}),
    ("cross_entropy", [("p", P), ("q", Q)], {}, {}),
    ("kl_divergence", [("p", P), ("q", Q)], {}, {}),
    *[(fn, [("p_xy", JOINT)], {}, {}) for fn in ("joint_entropy", "conditional_entropy", "mutual_information")],
    ("smooth_labels", [("y", Y)], {}, {"epsilon": 0.1}),
    ("categorical_cross_entropy", [("y_true", Y), ("y_pred", Z)], {}, {"from_logits": True}),
    ("categorical_cross_entropy", [("y_true", Y), ("y_pred", PY)], {}, {}),
    ("sparse_categorical_cross_entropy", [("labels", L), ("y_pred", Z)], {"class_weight": W3},
     {"from_logits": True, "label_smoothing": 0.1}),
    ("sparse_categorical_cross_entropy", [("labels", L), ("y_pred", PY)], {"class_weight": W3}, {}),
    ("binary_cross_entropy", [("y_true", B), ("y_pred", PB)], {"pos_weight": np.array(2.0)}, {}),
    ("binary_cross_entropy", [("y_true", B), ("y_pred", Z[0])], {"pos_weight": W3}, {"from_logits": True}),
    ("mean_squared_error", [("y_true", B), ("y_pred", PB)], {}, {}),
    ("gaussian_nll", [("y_true", B), ("mean", PB)], {"variance": np.array([1.0, 2.0, 0.5])}, {}),
    ("perplexity", [("labels", L), ("logits", Z)], {}, {}),
    ("softmax_cross_entropy_grad", [("y_true", Y), ("logits", Z)], {}, {}),
    ("sigmoid_cross_entropy_grad", [("y_true", B), ("logits", PB)], {}, {}),
    ("binary_focal_cross_entropy", [("y_true", B), ("y_pred", PB)], {}, {"alpha": 0.25}),
    ("binary_focal_cross_entropy", [("y_true", B), ("y_pred", Z[0])], {}, {"from_logits": True}),
    ("categorical_focal_cross_entropy", [("y_true", Y), ("y_pred", Z)], {"alpha": W3},
     {"from_logits": True}),
    ("categorical_focal_cross_entropy", [("y_true", Y), ("y_pred", PY)], {}, {}),
    ("expected_calibration_error", [("labels", L), ("probs", PY)], {}, {}),
    ("maximum_calibration_error", [("labels", L), ("probs", PY)], {}, {"binning": "mass"}),
    ("brier_score", [("labels", L), ("probs", PY)], {}, {}),
    ("fit_temperature", [("logits", Z), ("labels", L)], {}, {}),
]


def test_the_valid_calls_cover_every_common_function(backend):
    common = set(backend.xl.__all__) - {"gradient_descent", "keras_loss", "vocab_parallel_cross_entropy",
                                        "linear_cross_entropy", "LinearCrossEntropyHead"}
    assert {row[0] for row in VALID} == common


def _call(backend, fn, positional, array_kwargs, options, replace=None):
    replace = replace or {}
    arrays = [backend.asarray(replace.get(name, a)) for name, a in positional]
    kwargs = {name: backend.asarray(replace.get(name, a)) for name, a in array_kwargs.items()}
    return getattr(backend.xl, fn)(*arrays, **kwargs, **options)


def _float_arguments(positional, array_kwargs):
    return [(n, a) for n, a in [*positional, *array_kwargs.items()] if a.dtype.kind == "f"]


@pytest.mark.parametrize("fn, positional, array_kwargs, options", VALID, ids=[row[0] for row in VALID])
def test_every_float_argument_rejects_integers_and_nan(backend, fn, positional, array_kwargs, options):
    _call(backend, fn, positional, array_kwargs, options)  # the unmodified call is valid
    for name, a in _float_arguments(positional, array_kwargs):
        with pytest.raises(TypeError, match=rf"^{name} must have a floating-point dtype"):
            _call(backend, fn, positional, array_kwargs, options, {name: np.rint(a).astype(np.int64)})
        with_nan = a.astype(np.float64)
        with_nan.flat[0] = np.nan
        with pytest.raises(ValueError, match=rf"^{name} "):
            _call(backend, fn, positional, array_kwargs, options, {name: with_nan})
    for name, a in positional:
        if a.dtype.kind == "i":
            with pytest.raises(TypeError, match=rf"^{name} must hold integer class indices"):
                _call(backend, fn, positional, array_kwargs, options, {name: a.astype(np.float64)})


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
@pytest.mark.parametrize("x", [[[np.inf, 0.0, 1.0]], [[-np.inf, -np.inf, -np.inf], [0.0, 1.0, 2.0]]],
                         ids=["plus-inf", "all-minus-inf"])
def test_softmax_rejects_what_would_be_nan(backend, fn, x):
    with pytest.raises(ValueError, match=r"^x contains \+inf, or a slice along axis 1 that is all -inf"):
        getattr(backend.xl, fn)(backend.asarray(np.array(x)))


def test_minus_inf_logits_mask_classes(backend):
    z = np.array([[-np.inf, 0.0, 0.0]])
    np.testing.assert_array_equal(backend.call("softmax", z), [[0.0, 0.5, 0.5]])
    np.testing.assert_allclose(backend.call("log_softmax", z), [[-np.inf, -np.log(2), -np.log(2)]], rtol=1e-15)


def _is_probability_argument(fn, name, options):
    if fn in ("mean_squared_error", "gaussian_nll") or name in ("class_weight", "pos_weight", "alpha", "logits"):
        return False
    return name != "y_pred" or not options.get("from_logits", False)


@pytest.mark.parametrize("fn, positional, array_kwargs, options", VALID, ids=[row[0] for row in VALID])
def test_every_probability_argument_rejects_values_outside_0_1(backend, fn, positional, array_kwargs, options):
    checked = 0
    for name, a in _float_arguments(positional, array_kwargs):
        if not _is_probability_argument(fn, name, options) or name == "x":
            continue
        bad = a.astype(np.float64)
        bad.flat[1] += bad.flat[0] + 0.5  # same row: a distribution still sums to 1
        bad.flat[0] = -0.5
        with pytest.raises(ValueError, match=rf"^{name} must hold probabilities in \[0, 1\]"):
            _call(backend, fn, positional, array_kwargs, options, {name: bad})
        checked += 1
    assert checked or fn in ("logsumexp", "softmax", "log_softmax", "sigmoid", "log_sigmoid",
                             "mean_squared_error", "gaussian_nll", "perplexity",
                             "fit_temperature") or options.get("from_logits")


@pytest.mark.parametrize("fn, positional, array_kwargs, options", VALID, ids=[row[0] for row in VALID])
def test_every_reduction_and_label_smoothing_option_is_checked(backend, fn, positional, array_kwargs, options):
    import inspect
    parameters = inspect.signature(getattr(backend.xl, fn)).parameters
    if "reduction" in parameters:
        for bad in ("avg", "batchmean", None):
            with pytest.raises(ValueError, match="^reduction must be one of 'mean', 'sum', 'none'"):
                _call(backend, fn, positional, array_kwargs, dict(options, reduction=bad))
    if "label_smoothing" in parameters:
        for bad in (-0.1, 1.5, float("nan")):
            with pytest.raises(ValueError, match=r"^label_smoothing must be in \[0, 1\]"):
                _call(backend, fn, positional, array_kwargs, dict(options, label_smoothing=bad))
        with pytest.raises(TypeError, match="^label_smoothing must be a float"):
            _call(backend, fn, positional, array_kwargs, dict(options, label_smoothing="0.1"))
