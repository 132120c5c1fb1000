"""Bad input gets a ValueError/TypeError naming the argument, in every backend.

The rows are the function table's (``xentlib._docs.FUNCTIONS``): each bad row
changes arguments of the function's first valid call (NumPy, converted to the
backend) and names the exception type and a regex the message must match; the
regex always starts with the offending argument's name.
"""
import numpy as np
import pytest

import xentlib
from xentlib._docs import FUNCTIONS
from xentlib._inputs import Z

# (function, its first valid call, {argument: bad value}, error, message regex): the table's bad rows.
BAD = [(fn, f.calls[0], changes, error, match) for fn, f in FUNCTIONS.items() for changes, error, match in f.bad]


def _ids():
    seen = {}
    for fn, *_ in BAD:
        seen[fn] = seen.get(fn, 0) + 1
        yield f"{fn}-{seen[fn]}"


@pytest.mark.parametrize("fn, call, changes, error, match", BAD, ids=list(_ids()))
def test_bad_input_raises_a_named_error(backend, fn, call, changes, error, match):
    positional, keywords = call
    arrays = [backend.asarray(changes.get(name, a)) for name, a in positional]
    keywords = {**keywords, **{k: v for k, v in changes.items() if k not in dict(positional)}}
    keywords = {k: backend.asarray(v) if isinstance(v, np.ndarray) else v for k, v in keywords.items()}
    with pytest.raises(error, match=match):
        getattr(backend.xl, fn)(*arrays, **keywords)


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

# The table's valid calls: (name, positional (argument, array) pairs, array keyword arguments, other
# keyword options). Each float array is then, one at a time, made integer or NaN.
VALID = [(fn, positional, {k: v for k, v in keywords.items() if isinstance(v, np.ndarray)},
          {k: v for k, v in keywords.items() if not isinstance(v, np.ndarray)})
         for fn, f in FUNCTIONS.items() for positional, keywords in f.calls]


def test_every_function_of_the_table_has_a_valid_call():
    """Save those with a suite of their own (``tested_in``)."""
    assert {row[0] for row in VALID} == {fn for fn, f in FUNCTIONS.items() if not f.tested_in}


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
    declared = FUNCTIONS[fn].probabilities
    if declared is not None:
        return name in declared
    if name in ("class_weight", "pos_weight", "alpha", "logits"):
        return False
    return name != "y_pred" or not options.get("from_logits", False)


@pytest.mark.parametrize("fn, positional, array_kwargs, options", VALID, ids=[row[0] for row in VALID])
def test_every_probability_argument_rejects_values_outside_0_1(backend, fn, positional, array_kwargs, options):
    checked = 0
    for name, a in _float_arguments(positional, array_kwargs):
        if not _is_probability_argument(fn, name, options):
            continue
        bad = a.astype(np.float64)
        bad.flat[1] += bad.flat[0] + 0.5  # same row: a distribution still sums to 1
        bad.flat[0] = -0.5
        with pytest.raises(ValueError, match=rf"^{name} must hold probabilities in \[0, 1\]"):
            _call(backend, fn, positional, array_kwargs, options, {name: bad})
        checked += 1
    assert checked or FUNCTIONS[fn].probabilities == () or options.get("from_logits")


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
