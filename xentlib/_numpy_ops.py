"""The NumPy adapter of the front door (see :mod:`xentlib._frontdoor`)."""
from __future__ import annotations

import numpy as np

from xentlib import _validate as V
from xentlib._frontdoor import FrontDoor


def host_array(x, name):
    """A Python number or (nested) list as an ndarray; float64 for numbers, strings refused."""
    try:
        a = np.asarray(x)
    except (TypeError, ValueError):
        a = None
    if a is None or a.dtype.kind not in "biuf":  # "0.5" is not a number
        raise TypeError(f"{name} must be an array of floats; got {type(x).__name__}")
    return a if a.dtype.kind == "f" else a.astype(np.float64)


class NumpyOps:
    keeps_subnormals = True  # arithmetic on subnormal numbers is exact
    float_dtypes = V.NUMPY_FLOAT_DTYPES  # no bfloat16

    def is_array(self, x):
        return isinstance(x, (np.ndarray, np.generic))

    def as_float(self, x, name, like=None):
        x = np.asarray(x) if self.is_array(x) else host_array(x, name)
        if x.dtype.kind != "f":
            raise V.not_float(name, x.dtype, self.float_dtypes)
        return x

    def as_labels(self, labels, name, like=None):
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu":
            raise V.not_integer(name, labels.dtype)
        return labels

    def promote(self, *xs):
        dtype = np.result_type(*xs)
        return tuple(x.astype(dtype, copy=False) for x in xs)

    def is_float(self, x):
        return x.dtype.kind == "f"

    def is_integer(self, x):
        return x.dtype.kind in "iu"

    def shape(self, x):
        return tuple(x.shape)

    def dim(self, x, axis):
        return x.shape[axis]

    def dtype_name(self, x):
        return x.dtype.name

    def is_empty(self, x):
        return x.size == 0

    def any_nan(self, x):
        return bool(np.isnan(x).any())

    def any_inf(self, x):
        return bool(np.isinf(x).any())

    def all_finite(self, x):
        return bool(np.isfinite(x).all())

    def any_inf_max(self, x, axis):
        return bool(np.isinf(np.max(x, axis=axis)).any())

    def min_max(self, x):
        return float(x.min()), float(x.max())

    def any_nan_scalar(self, *values):
        return any(v != v for v in values)  # NaN is the one value unequal to itself

    def worst_sum(self, p, axes, tol):
        sums = p.sum(axis=axes, dtype=np.float64)
        return float(sums.flat[np.argmax(np.abs(sums - 1))])

    def bad_labels(self, labels, num_classes, ignore_index):
        bad = (labels < 0) | (labels >= num_classes)
        if ignore_index is not None:
            bad &= labels != ignore_index
        if not bad.any():
            return False, 0, 0
        return True, int(labels[bad].min()), int(labels[bad].max())

    def all_nonnegative(self, w, strict=False, high=None):
        ok = np.isfinite(w).all() and ((w > 0) if strict else (w >= 0)).all()
        return bool(ok and (high is None or (w <= high).all()))

    def positive_cast(self, w, dtype_name):
        if w.dtype == dtype_name:
            return w
        with np.errstate(over="ignore"):  # unchecked (value checks off): beyond the max is inf
            cast = w.astype(dtype_name)
        return np.where((w > 0) & (cast == 0), np.finfo(dtype_name).smallest_subnormal, cast).astype(dtype_name)

    def scaled_to_unit(self, w, labels, ignore_index, min_exponent, max_exponent):
        used = (labels >= 0) & (labels < len(w))
        if ignore_index is not None:
            used &= labels != ignore_index
        top = w[labels[used]].max() if used.any() else 0
        if not 0 < top < np.inf:
            return w
        # no weight beyond the range: a far larger one (a class without items) bounds the scale
        largest = np.frexp(w.max())[1] - (max_exponent - 1)
        scaled = np.ldexp(w, -max(np.frexp(top)[1], largest)).astype(w.dtype)
        # a non-zero weight stays non-zero (at least the smallest positive number): times -log 0 it is inf
        return np.where(w > 0, np.maximum(scaled, np.ldexp(1.0, min_exponent - 1)), scaled).astype(w.dtype)

    def values_readable(self):
        return True

    def require(self, ok, builder, *args):
        if not ok:
            raise builder(*args)

    def same_runtime_shape(self, a, a_name, b, b_name):
        return None

    def same_labels_shape(self, labels, y_pred, axis):
        return None

    def after(self, x, checks):
        return x

    def nan_outside(self, x, low, high):
        return x  # eager: the check has raised

    def any_not_equal(self, x, value):
        return bool((x != value).any())

    def reshape(self, x, shape):
        return x.reshape(shape)

    def move_to_last(self, x, axis):
        return np.moveaxis(x, axis, -1)

    def to_host(self, x):
        return np.asarray(x)

    def from_host(self, a, like=None):
        return a

    def on_host(self, fn, *xs, outputs):
        """``fn`` of the host copies of ``xs``; its ``outputs`` float64 arrays on ``xs[-1]``'s device."""
        return tuple(self.from_host(a, like=xs[-1]) for a in fn(*(self.to_host(x) for x in xs)))


front_door = FrontDoor(NumpyOps())
