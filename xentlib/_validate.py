"""Argument checks shared by the three backends.

Only backend-independent logic lives here: option values, tolerances, error
messages, and the switch that turns the (costly) value checks off. Each
backend inspects its own arrays and calls these helpers to raise.

Every error names the offending argument first, says what was expected and,
where there is one, the fix.
"""
from __future__ import annotations

import contextvars
import math
import numbers

REDUCTIONS = ("mean", "sum", "none")

# Tolerance on "sums to 1" for distributions, by floating dtype name (stated in
# xentlib.numpy's docstring and in every error message). Far above the round-off
# of softmax in that dtype, so that hand-rounded tables such as 1/3 = 0.333333 pass.
SUM_TOLERANCE = {"float64": 1e-6, "float32": 1e-4, "float16": 1e-2, "bfloat16": 2e-2}

_value_checks = contextvars.ContextVar("xentlib_value_checks", default=True)


def value_checks_enabled() -> bool:
    """Whether data-dependent checks (NaN, ranges, sums, label range) run."""
    return _value_checks.get()


class value_checks:
    """Turn the data-dependent checks on or off: a bare call, or a ``with`` block.

    Shape, dtype and option checks always run (they cost nothing). The value
    checks (NaN, probabilities in [0, 1], distributions summing to 1, labels in
    [0, C)) read every element and, on a GPU, synchronise; switch them off in a
    hot training loop once the pipeline is known to be sound.

    ``xentlib.value_checks(False)`` switches them off from then on (in the
    current thread or asyncio task); ``with xentlib.value_checks(False):``
    switches them off inside the block and restores the previous setting after
    it. The setting lives in a ``contextvars.ContextVar``: a thread started
    inside the block does *not* inherit it (a new thread starts with the checks
    on, unless it runs in a copied context, ``contextvars.copy_context().run``).
    Python gives a generator no context of its own (a context variable
    follows the thread or asyncio task; PEP 568, which would change that, is
    deferred): a generator that *yields inside* the block switches the checks
    off for its caller too while it is suspended, and the block's end restores
    the setting from before the block, undoing a change the caller made
    meanwhile. Keep ``yield`` outside the block, or advance the generator in a
    context of its own (``ctx = contextvars.copy_context()``, then
    ``ctx.run(next, generator)``). In a ``tf.function`` the setting is read
    when the function is traced.

    >>> import xentlib
    >>> from xentlib import numpy as xl
    >>> with xentlib.value_checks(False):
    ...     float(xl.entropy([0.5, 0.7]))   # not a distribution, but not checked
    0.6...
    """

    def __init__(self, enabled: bool):
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be True or False; got {enabled!r}")
        self._enabled = enabled
        self._token = _value_checks.set(enabled)

    def __repr__(self):  # what a notebook shows after a bare call: no memory address
        return f"value_checks({self._enabled})"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _value_checks.reset(self._token)
        return False


def check_reduction(reduction) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction must be one of 'mean', 'sum', 'none'; got {reduction!r}")
    return reduction


def check_fraction(name: str, value) -> float:
    """A number in [0, 1], such as ``label_smoothing``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float in [0, 1]; got {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1]; got {value}")
    return value


#: frexp's exponent of each dtype's largest number (NumPy's ``finfo.maxexp``) and smallest subnormal.
MAX_EXPONENT = {"float64": 1024, "float32": 128, "bfloat16": 128, "float16": 16}
MIN_EXPONENT = {"float64": -1073, "float32": -148, "bfloat16": -132, "float16": -23}


MANTISSA_BITS = {"float64": 52, "float32": 23, "bfloat16": 7, "float16": 10}


def weight_exponents(weight_dtype: str, pred_dtype: str, subnormals: bool = True) -> tuple[int, int]:
    """The exponents (frexp's) a scaled class weight may span: within its own dtype and the dtype
    the loss is computed in (float64, else float32: 16-bit predictions are computed in float32);
    without ``subnormals`` (TensorFlow's CPU kernels flush them) down to the smallest normal."""
    compute = "float64" if pred_dtype == "float64" else "float32"
    lows = [MIN_EXPONENT.get(dtype, -1073) + (0 if subnormals else MANTISSA_BITS.get(dtype, 52))
            for dtype in (weight_dtype, compute)]
    return max(lows), min(MAX_EXPONENT.get(weight_dtype, 1024), MAX_EXPONENT[compute]) - WEIGHT_HEADROOM


#: Powers of two kept free above the largest scaled weight: smoothing's class sum of w_c (-log q_c)
#: must not overflow where the item does not (-log q of a probability is at most 745, C classes).
WEIGHT_HEADROOM = 32


#: The smallest normal number of the dtype a loss is computed in (16-bit inputs: float32).
_SMALLEST_NORMAL = {"float64": 2.2250738585072014e-308, "float32": 1.1754943508222875e-38}


def smallest_normal(*dtype_names: str) -> float:
    """The smallest normal number of the narrowest dtype these inputs are computed in (float64 only
    if every one is float64; 16-bit: float32)."""
    return _SMALLEST_NORMAL[compute_dtype(max(dtype_names, key=lambda d: d != "float64"))]


def smoothing_taken(label_smoothing: float, shares, *dtype_names: str) -> float:
    """The label smoothing a loss takes: a positive epsilon is never dropped, and is at least
    ``shares`` times the smallest normal of the compute dtype (see :func:`smallest_normal`), so
    that each share eps/K (``shares`` = K; binary: 2) is a normal number there, as a positive
    weight stays positive. A share rounded down (to 0, or to a subnormal, which TensorFlow
    flushes) would meet q = 0 as a finite loss where it is inf. ``shares`` ``None`` (a class
    count unknown while tracing a TensorFlow graph): unchanged, the share is bounded where it
    is formed."""
    if not label_smoothing or shares is None:
        return label_smoothing
    return max(label_smoothing, shares * smallest_normal(*dtype_names))


def check_loss_options(from_logits, label_smoothing, reduction) -> float:
    """The options every cross-entropy loss takes; returns ``label_smoothing`` as a float."""
    check_bool("from_logits", from_logits)
    label_smoothing = check_fraction("label_smoothing", label_smoothing)
    check_reduction(reduction)
    return label_smoothing


def check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive float; got {value!r}")
    value = float(value)
    if not (value > 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be positive and finite; got {value}")
    return value


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return value


def check_int(name: str, value, *, minimum: int | None = None, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return value


def log_base(base) -> float:
    """ln(base), the divisor that turns nats into the requested unit.

    ``None`` means nats (divisor 1), 2 bits, 10 bans (hartleys).
    """
    if base is None:
        return 1.0
    if isinstance(base, bool) or not isinstance(base, numbers.Real):
        raise TypeError(f"base must be None (nats) or a number such as 2 (bits); got {base!r}")
    if not (base > 0 and base != 1 and math.isfinite(base)):
        raise ValueError(f"base must be positive, finite and not 1; got {base}")
    return math.log(base)


def normalize_axis(axis, ndim: int, name: str = "axis") -> int:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"{name}={axis} is out of range for an input with {ndim} dimension(s)")
    return int(axis) % ndim


def sum_tolerance(dtype_name: str) -> float:
    return SUM_TOLERANCE.get(dtype_name, 1e-6)


# ---- error builders: one wording for every backend -------------------------

#: The floating dtypes a backend takes: NumPy has no bfloat16 (ml_dtypes' is refused).
FLOAT_DTYPES = "float16, bfloat16, float32 or float64"
NUMPY_FLOAT_DTYPES = "float16, float32 or float64"


def not_float(name: str, dtype, accepted: str = FLOAT_DTYPES) -> TypeError:
    """``accepted``: the backend's floating dtypes (NumPy: :data:`NUMPY_FLOAT_DTYPES`)."""
    return TypeError(
        f"{name} must have a floating-point dtype ({accepted}); got {dtype}. "
        f"Convert it first, e.g. to float32.")


def not_integer(name: str, dtype) -> TypeError:
    return TypeError(
        f"{name} must hold integer class indices; got dtype {dtype}. "
        f"For one-hot or probability targets use categorical_cross_entropy.")


def shape_mismatch(name: str, shape, other: str, other_shape) -> ValueError:
    return ValueError(
        f"{name} has shape {tuple(shape)} but {other} has shape {tuple(other_shape)}; "
        f"they must match")


def has_nan(name: str) -> ValueError:
    return ValueError(f"{name} contains NaN; clean the input before computing a loss")


def has_inf(name: str) -> ValueError:
    return ValueError(f"{name} contains +-inf; a regression target or prediction must be finite")


def not_finite(name: str) -> ValueError:
    return ValueError(f"{name} must be finite (logits may not be NaN or +-inf)")


def softmax_undefined(name: str, axis: int) -> ValueError:
    return ValueError(
        f"{name} contains +inf, or a slice along axis {axis} that is all -inf; softmax is "
        f"undefined there (NaN). Mask with a large negative number, or keep one finite logit")


def not_probability(name: str, low: float, high: float) -> ValueError:
    return ValueError(
        f"{name} must hold probabilities in [0, 1]; found values in [{low:.6g}, {high:.6g}]. "
        f"If these are logits, pass from_logits=True")


def not_distribution(name: str, worst_sum: float, tol: float, axis: int) -> ValueError:
    return ValueError(
        f"{name} must sum to 1 along axis {axis} (tolerance {tol:g}); found a sum of "
        f"{worst_sum:.6g}. Normalise it, apply softmax, or pass from_logits=True for logits")


def bad_labels(name: str, low: int, high: int, num_classes: int, ignore_index) -> ValueError:
    extra = "" if ignore_index is None else f" or equal ignore_index={ignore_index}"
    return ValueError(
        f"{name} must lie in [0, {num_classes}){extra}; found values in [{low}, {high}]")


def negative(name: str) -> ValueError:
    return ValueError(f"{name} must be non-negative and finite")


def compute_dtype(pred_dtype: str) -> str:
    """The dtype a loss of ``pred_dtype`` predictions is computed in (16-bit: float32)."""
    return "float64" if pred_dtype == "float64" else "float32"


#: The largest float32, the bound of a weight of a loss computed in float32.
FLOAT32_MAX = 3.4028234663852886e38


def weight_beyond(name: str, pred_dtype: str, fix: str) -> ValueError:
    return ValueError(
        f"{name} must be non-negative, finite and at most {FLOAT32_MAX:g}, float32's maximum (a loss of "
        f"{pred_dtype} predictions is computed in float32); {fix}, or pass float64 predictions")


def labels_shape(name: str, shape, expected, pred_name: str = "y_pred") -> ValueError:
    return ValueError(
        f"{name} has shape {tuple(shape)}; expected {tuple(expected)} "
        f"({pred_name}'s shape without its class axis)")


def no_tokens(name: str, empty: bool = False) -> ValueError:
    why = "holds no item" if empty else "every item equals ignore_index"
    return ValueError(f"{name}: {why}, so there is nothing to average; perplexity needs at least one token")
