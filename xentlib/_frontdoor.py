"""The front door: every argument of every backend is converted and checked here, once.

A public function of ``xentlib.numpy``, ``xentlib.torch`` or ``xentlib.tensorflow``
makes one call to its backend's :class:`FrontDoor` (``_numpy_ops.front_door`` and
so on), which returns the arguments normalised (tensors of a floating dtype on
one device, the class axis as a non-negative int, options validated), and then
computes its formula. The checks are written once, here, against a small
per-backend adapter (``ops``) that knows how to convert an input and how to
read a few facts from an array:

=====================  ====================================================
``ops.as_float``       an input as a floating array (``like``: its device)
``ops.float_dtypes``   the floating dtypes it takes, for the messages
``ops.as_labels``      an input as an integer array
``ops.promote``        arrays cast to their common floating dtype (as
                       NumPy's ``result_type``)
``ops.shape``          the static shape (``None`` for a dimension unknown
                       while tracing a TensorFlow graph)
``ops.dtype_name``     'float32', 'int64', ...
``ops.is_empty``       known to hold no element
``ops.any_nan``        ... and the other value predicates below: a Python
``ops.any_inf``        bool in eager mode, a boolean scalar tensor while
``ops.all_finite``     tracing a graph
``ops.min_max``        (min, max), NaN-propagating
``ops.worst_sum``      the sum along ``axes`` farthest from 1
``ops.bad_labels``     (any, min, max) of the labels outside [0, C) and not
                       ``ignore_index``
``ops.all_nonnegative`` every weight finite and >= 0 (``strict``: > 0),
                       at most ``high`` if given
``ops.positive_cast``  weights cast to a dtype, a positive one never 0
``ops.scaled_to_unit``  weights divided by the power of two that brings the
                       largest weight of a kept label into [1/2, 1) (unless
                       it is 0 or not finite), or lower, so that no weight's
                       exponent passes ``max_exponent``; a non-zero weight
                       at least ``2**(min_exponent - 1)``
``ops.require``        raise ``builder(*args)`` unless ``ok``; in a graph an
                       assertion op with the same message
``ops.after``          ``x``, computed after the given assertion ops
``ops.nan_outside``    ``x``; in a TensorFlow graph (XLA drops assertions)
                       with NaN where it is outside [low, high]
``ops.on_host``        a NumPy function of arrays, its float64 results as
                       the backend's arrays (in a graph: one host op)
=====================  ====================================================

Every message names the offending argument first (the texts are in
:mod:`xentlib._validate`). Shape, dtype and option checks always run; the
value checks (NaN, ranges, sums, labels) only while
:func:`xentlib.value_checks` is on, and where values can be read
(``ops.values_readable``: not inside ``torch.func.vmap``).
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

from xentlib import _validate as V
from xentlib._neutral import calibration_bins

__all__ = ["FrontDoor", "LinearArgs"]


class LinearArgs(NamedTuple):
    """The options of ``linear_cross_entropy``, normalised."""
    ignore_index: int | None
    label_smoothing: float
    reduction: str
    chunk_size: int | None


class FrontDoor:
    """Argument handling for one backend; ``ops`` is that backend's adapter."""

    def __init__(self, ops):
        self.ops = ops

    # ---- conversion -------------------------------------------------------------------

    def floats(self, *named, like=None):
        """Each ``(value, name)`` as a floating array; ``like``'s device (else the first array's)."""
        if like is None:
            like = next((v for v, _ in named if self.ops.is_array(v)), None)
        return tuple(self.ops.as_float(v, name, like=like) for v, name in named)

    def axis(self, axis, x, name: str):
        """``axis`` of the array ``name`` as a non-negative int; a 0-d array has no class axis."""
        ndim = len(self.ops.shape(x))
        if ndim == 0:
            raise ValueError(f"{name} is a scalar; it needs at least one dimension (the class axis)")
        return V.normalize_axis(axis, ndim)

    def same_shape(self, a, a_name, b, b_name):
        """Equal shapes; in a graph with unknown dimensions, also checked when it runs."""
        sa, sb = self.ops.shape(a), self.ops.shape(b)
        compatible = len(sa) == len(sb) and all(x is None or y is None or x == y for x, y in zip(sa, sb))
        if not compatible:
            raise V.shape_mismatch(a_name, tuple(sa), b_name, tuple(sb))
        return self.ops.same_runtime_shape(a, a_name, b, b_name)

    # ---- value checks -------------------------------------------------------------------

    def _checks_values(self, x):
        """Whether the value checks of ``x`` run: switched on, ``x`` not empty, and its values
        readable (not inside ``torch.func.vmap``, where no value can be read back)."""
        return V.value_checks_enabled() and not self.ops.is_empty(x) and self.ops.values_readable()

    def finite_values(self, x, name):
        """No NaN (``-inf`` allowed: a masked class)."""
        if self._checks_values(x):
            self.ops.require(_not(self.ops.any_nan(x)), V.has_nan, name)

    def real_values(self, x, name):
        """Neither NaN nor +-inf (regression values: inf - inf would be a silent NaN)."""
        self.finite_values(x, name)
        if self._checks_values(x):
            self.ops.require(_not(self.ops.any_inf(x)), V.has_inf, name)

    def logits(self, z, name):
        if self._checks_values(z):
            self.ops.require(self.ops.all_finite(z), V.not_finite, name)

    def softmax_input(self, x, axis):
        """+inf, or a slice of only -inf, makes softmax 0/0 or inf/inf: NaN."""
        if self._checks_values(x):
            self.ops.require(_not(self.ops.any_inf_max(x, axis)), V.softmax_undefined, "x", axis)

    def probabilities(self, p, name):
        """Values in [0, 1]; round-off may push a sum of probabilities a few ulps above 1: tolerated.

        Returns ``p``; in a TensorFlow graph, where XLA drops the assertion, with NaN in place of
        a value outside that range, so that the loss of its item is NaN, not a silent number."""
        if not self._checks_values(p):
            return p
        low, high = self.ops.min_max(p)
        self.ops.require(_not(self.ops.any_nan_scalar(low, high)), V.has_nan, name)
        high_ok = 1 + V.sum_tolerance(self.ops.dtype_name(p))
        self.ops.require((low >= 0) & (high <= high_ok), V.not_probability, name, low, high)
        return self.ops.nan_outside(p, 0, high_ok)

    def distribution(self, p, name, axis):
        """Probabilities that sum to 1 along ``axis``; returns ``p`` (see :meth:`probabilities`)."""
        p = self.probabilities(p, name)
        if self._checks_values(p):
            tol = V.sum_tolerance(self.ops.dtype_name(p))
            worst = self.ops.worst_sum(p, (axis,), tol)
            self.ops.require(abs(worst - 1) <= tol, V.not_distribution, name, worst, tol, axis)
        return p

    def label_range(self, labels, num_classes, ignore_index=None, name="labels"):
        """Every label in ``[0, num_classes)`` or equal to ``ignore_index``.

        The one label check of the library (losses, linear and vocab-parallel
        cross-entropy). Returns the assertion op in a TensorFlow graph (run the
        gathers after it), else ``None``.
        """
        if not self._checks_values(labels):
            return None
        any_bad, low, high = self.ops.bad_labels(labels, num_classes, ignore_index)
        return self.ops.require(_not(any_bad), V.bad_labels, name, low, high, num_classes, ignore_index)

    def weights(self, w, name, *, strict=False, like=None, fix=None):
        """Finite weights, >= 0 (``strict``: > 0); with ``like`` (the predictions) also at most the
        largest number of the dtype the loss is computed in (``fix``: how to mend a larger one)."""
        if not self._checks_values(w):
            return
        compute = None if like is None else V.compute_dtype(self.ops.dtype_name(like))
        # only a float64 weight can pass float32's maximum (and stay finite)
        high = V.FLOAT32_MAX if compute == "float32" and self.ops.dtype_name(w) == "float64" else None
        ok = self.ops.all_nonnegative(w, strict=strict, high=high)
        if strict:
            self.ops.require(ok, lambda: ValueError(f"{name} must be positive and finite"))
        elif high is not None:
            self.ops.require(ok, V.weight_beyond, name, self.ops.dtype_name(like), fix)
        else:
            self.ops.require(ok, V.negative, name)

    def in_compute_dtype(self, w, like):
        """Weights in the dtype a loss of ``like`` is computed in: rounded, and a positive weight
        at least that dtype's smallest positive number (TensorFlow: its smallest normal), never 0."""
        return self.ops.positive_cast(w, V.compute_dtype(self.ops.dtype_name(like)))

    # ---- one call per family of functions -------------------------------------------------

    def one_array(self, x, name="x", *, axis=None, softmax=False):
        """Building blocks: ``x`` (NaN refused) and, if given, its axis."""
        (x,) = self.floats((x, name))
        if axis is not None:
            axis = self.axis(axis, x, name)
        self.finite_values(x, name)
        if softmax:
            self.softmax_input(x, axis)
        return x, axis

    def distribution_args(self, p, axis, base, name="p"):
        """``entropy`` and ``smooth_labels``: one distribution along ``axis``."""
        (p,) = self.floats((p, name))
        axis = self.axis(axis, p, name)
        self._classes(p, axis, name)
        divisor = V.log_base(base)
        p = self.distribution(p, name, axis)
        return p, axis, divisor

    def two_distributions(self, p, q, axis, base):
        """``cross_entropy``, ``kl_divergence``: two distributions of one shape, one dtype.

        Mixed dtypes are promoted (float32 and float64 give float64), as any
        binary operation of NumPy and PyTorch does: the result keeps the
        precision of the wider input, whichever argument it is.
        """
        p, q = self.floats((p, "p"), (q, "q"))
        self.same_shape(p, "p", q, "q")
        axis = self.axis(axis, p, "p")
        self._classes(p, axis, "p")
        divisor = V.log_base(base)
        p = self.distribution(p, "p", axis)  # each within its own dtype's tolerance
        q = self.distribution(q, "q", axis)
        p, q = self.ops.promote(p, q)
        return p, q, axis, divisor

    def joint(self, p_xy, base):
        """A joint table, X along axis -2, Y along axis -1, summing to 1 over both."""
        (p_xy,) = self.floats((p_xy, "p_xy"))
        shape = self.ops.shape(p_xy)
        if len(shape) < 2:
            raise ValueError(
                f"p_xy must have at least 2 dimensions (X along axis -2, Y along axis -1); "
                f"got shape {tuple(shape)}")
        if 0 in shape[-2:]:
            raise ValueError(f"p_xy must have at least one value of X and of Y; got shape {tuple(shape)}")
        divisor = V.log_base(base)
        p_xy = self.probabilities(p_xy, "p_xy")
        if self._checks_values(p_xy):
            tol = V.sum_tolerance(self.ops.dtype_name(p_xy))
            worst = self.ops.worst_sum(p_xy, (-2, -1), tol)
            self.ops.require(abs(worst - 1) <= tol, _joint_sum_error, worst, tol)
        return p_xy, divisor

    def smoothing(self, y, epsilon, axis):
        """``smooth_labels``: a distribution and a fraction (taken as the losses take it)."""
        (y,) = self.floats((y, "y"))
        epsilon = V.check_fraction("epsilon", epsilon)
        axis = self.axis(axis, y, "y")
        self._classes(y, axis, "y")
        epsilon = self._label_smoothing(epsilon, self.ops.shape(y)[axis], y)
        y = self.distribution(y, "y", axis)
        return y, epsilon, axis

    def categorical(self, y_true, y_pred, from_logits, label_smoothing, axis, reduction):
        """``categorical_cross_entropy``: targets and predictions (logits or probabilities)."""
        y_true, y_pred = self.floats((y_true, "y_true"), (y_pred, "y_pred"))
        label_smoothing = V.check_loss_options(from_logits, label_smoothing, reduction)
        self.same_shape(y_true, "y_true", y_pred, "y_pred")
        axis = self.axis(axis, y_pred, "y_pred")
        self._classes(y_pred, axis)
        label_smoothing = self._label_smoothing(label_smoothing, self.ops.shape(y_pred)[axis], y_true, y_pred)
        y_true = self.distribution(y_true, "y_true", axis)
        y_pred = self.predictions(y_pred, from_logits, axis)
        return y_true, y_pred, label_smoothing, axis

    def predictions(self, y_pred, from_logits, axis=None, name="y_pred"):
        """Finite logits, or probabilities (a distribution along ``axis`` when given); returns
        ``y_pred`` (see :meth:`probabilities`)."""
        if from_logits:
            self.logits(y_pred, name)
            return y_pred
        if axis is None:
            return self.probabilities(y_pred, name)
        return self.distribution(y_pred, name, axis)

    def sparse(self, labels, y_pred, from_logits, label_smoothing, ignore_index, class_weight,
               axis, reduction, *, pred_name="y_pred"):
        """``sparse_categorical_cross_entropy``: integer labels and predictions.

        Returns ``(labels, y_pred, label_smoothing, ignore_index, class_weight, axis,
        num_classes)``; ``num_classes`` is an int, or a scalar tensor while tracing
        a TensorFlow graph with an unknown class dimension.
        """
        (y_pred,) = self.floats((y_pred, pred_name), like=labels if self.ops.is_array(labels) else None)
        labels = self.ops.as_labels(labels, "labels", like=y_pred)
        label_smoothing = V.check_loss_options(from_logits, label_smoothing, reduction)
        ignore_index = V.check_int("ignore_index", ignore_index, allow_none=True)
        axis = self.axis(axis, y_pred, pred_name)
        shape = self.ops.shape(y_pred)
        expected = shape[:axis] + shape[axis + 1:]
        got = self.ops.shape(labels)
        if len(got) != len(expected) or any(a is not None and b is not None and a != b
                                            for a, b in zip(got, expected)):
            raise V.labels_shape("labels", tuple(got), tuple(expected), pred_name)
        self._classes(y_pred, axis, pred_name)
        label_smoothing = self._label_smoothing(label_smoothing, shape[axis], y_pred)
        num_classes = self.ops.dim(y_pred, axis)
        checks = [self.ops.same_labels_shape(labels, y_pred, axis),
                  self.label_range(labels, num_classes, ignore_index)]
        labels = self.ops.after(labels, checks)
        if class_weight is not None:
            (class_weight,) = self.floats((class_weight, "class_weight"), like=y_pred)
            c, w_shape = shape[axis], self.ops.shape(class_weight)
            if len(w_shape) != 1 or None not in (c, w_shape[0]) and w_shape[0] != c:
                raise ValueError(
                    f"class_weight must have shape ({'C' if c is None else c},), one weight per "
                    f"class; got {w_shape}")
            self.weights(class_weight, "class_weight", like=None if reduction == "mean" else y_pred,
                         fix="rescale them (reduction='mean' does not depend on their scale)")
            if reduction == "mean":  # sum(w_y l) / sum(w_y) is the same for w / 2^k, and exactly
                # (a power of two scales without rounding), but its sums stay within the dtype:
                # 1e35 float32 weights over 1e4 items overflowed the denominator, giving 0, and
                # 5e-324 float64 weights with float32 logits were 0 once cast. The largest weight
                # of a kept label sets the scale: a weight far below it adds nothing anyway, and a
                # far larger one of a class without items only enters through smoothing, and is
                # kept within the compute dtype (1e30 scaled by 2^99 was inf in float32: 0 x inf);
                # a non-zero weight never becomes 0 (5e-324 halved was: 0 x -log 0 = 0, not inf)
                low, high = V.weight_exponents(self.ops.dtype_name(class_weight), self.ops.dtype_name(y_pred),
                                               self.ops.keeps_subnormals)
                class_weight = self.ops.scaled_to_unit(class_weight, labels, ignore_index, low, high)
            class_weight = self.in_compute_dtype(class_weight, y_pred)
        y_pred = self.predictions(y_pred, from_logits, axis, pred_name)
        return labels, y_pred, label_smoothing, ignore_index, class_weight, axis, num_classes

    def binary(self, y_true, y_pred, from_logits, label_smoothing, pos_weight, reduction):
        """``binary_cross_entropy``: targets in [0, 1], predictions, ``pos_weight``."""
        y_true, y_pred = self.floats((y_true, "y_true"), (y_pred, "y_pred"))
        label_smoothing = V.check_loss_options(from_logits, label_smoothing, reduction)
        label_smoothing = self._label_smoothing(label_smoothing, 2, y_true, y_pred)
        self.same_shape(y_true, "y_true", y_pred, "y_pred")
        y_true = self.probabilities(y_true, "y_true")
        if pos_weight is not None:
            (pos_weight,) = self.floats((pos_weight, "pos_weight"), like=y_pred)
            shape, pred_shape = self.ops.shape(pos_weight), self.ops.shape(y_pred)
            last = pred_shape[-1] if pred_shape else 1
            if len(shape) > 1 or (len(shape) == 1 and (not pred_shape or None not in (shape[0], last)
                                                       and shape[0] != last)):
                raise ValueError(
                    f"pos_weight must be a scalar or have shape ({last},),"
                    f" one weight per class on the last axis; got {tuple(shape)}")
            self.weights(pos_weight, "pos_weight", like=y_pred, fix="rescale it")
            pos_weight = self.in_compute_dtype(pos_weight, y_pred)
        y_pred = self.predictions(y_pred, from_logits)
        return y_true, y_pred, label_smoothing, pos_weight

    def regression(self, y_true, y_pred, reduction, pred_name="y_pred"):
        """``mean_squared_error`` (and the first half of ``gaussian_nll``): finite values."""
        y_true, y_pred = self.floats((y_true, "y_true"), (y_pred, pred_name))
        V.check_reduction(reduction)
        self.same_shape(y_true, "y_true", y_pred, pred_name)
        self.real_values(y_true, "y_true")
        self.real_values(y_pred, pred_name)
        return y_true, y_pred

    def gaussian(self, y_true, mean, variance, full, reduction):
        """``gaussian_nll``: values, means and a positive variance broadcastable to them."""
        V.check_bool("full", full)
        y_true, mean = self.regression(y_true, mean, reduction, pred_name="mean")
        (variance,) = self.floats((variance, "variance"), like=y_true)
        shape, var_shape = self.ops.shape(y_true), self.ops.shape(variance)
        # broadcast to y_true without changing its shape: the result has one value per element
        fits = len(var_shape) <= len(shape) and all(
            v in (1, None) or s is None or v == s for v, s in zip(reversed(var_shape), reversed(shape)))
        if not fits:
            raise ValueError(
                f"variance must be a scalar or broadcastable to {tuple(shape)}; got {tuple(var_shape)}")
        self.weights(variance, "variance", strict=True)
        return y_true, mean, variance

    def gradient(self, y_true, logits, axis=None):
        """``softmax_cross_entropy_grad`` (with ``axis``), ``sigmoid_cross_entropy_grad``."""
        y_true, logits = self.floats((y_true, "y_true"), (logits, "logits"))
        self.same_shape(y_true, "y_true", logits, "logits")
        if axis is None:
            y_true = self.probabilities(y_true, "y_true")
        else:
            axis = self.axis(axis, logits, "logits")
            y_true = self.distribution(y_true, "y_true", axis)
        self.logits(logits, "logits")
        return y_true, logits, axis

    def focal(self, gamma, alpha, *, per_class=False, num_classes=None, like=None):
        """The focal losses' options: ``gamma >= 0``; ``alpha`` ``None``, a fraction or,
        with ``per_class``, a non-negative scalar or one weight per class (``num_classes``:
        the class count, ``None`` while unknown in a graph)."""
        if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real):
            raise TypeError(f"gamma must be a non-negative float; got {gamma!r}")
        gamma = float(gamma)
        if not (gamma >= 0 and math.isfinite(gamma)):
            raise ValueError(f"gamma must be non-negative and finite, e.g. 2.0; got {gamma}")
        if alpha is None:
            return gamma, None
        if not per_class:
            return gamma, V.check_fraction("alpha", alpha)
        if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
            if not (alpha >= 0 and math.isfinite(alpha)):
                raise ValueError(f"alpha must be a non-negative float or one weight per class; "
                                 f"got {alpha!r}")
            return gamma, float(alpha)
        (alpha,) = self.floats((alpha, "alpha"), like=like)
        shape = self.ops.shape(alpha)
        if len(shape) != 1 or None not in (num_classes, shape[0]) and shape[0] != num_classes:
            raise ValueError(f"alpha must be a scalar or have shape ({num_classes or 'C'},), one "
                             f"weight per class; got shape {tuple(shape)}")
        self.weights(alpha, "alpha")
        return gamma, alpha

    def binary_focal(self, y_true, y_pred, gamma, alpha, from_logits, label_smoothing, reduction):
        """``binary_focal_cross_entropy``: the binary arguments, ``gamma`` and an ``alpha`` in [0, 1]."""
        y_true, y_pred, label_smoothing, _ = self.binary(y_true, y_pred, from_logits, label_smoothing,
                                                         None, reduction)
        return (y_true, y_pred, label_smoothing, *self.focal(gamma, alpha))

    def categorical_focal(self, y_true, y_pred, gamma, alpha, from_logits, label_smoothing, axis,
                          reduction):
        """``categorical_focal_cross_entropy``: the categorical arguments, ``gamma``, and ``alpha``
        as ``None``, a float, or per-class weights shaped to broadcast along ``axis``."""
        y_true, y_pred, label_smoothing, axis = self.categorical(y_true, y_pred, from_logits,
                                                                 label_smoothing, axis, reduction)
        shape = self.ops.shape(y_pred)
        gamma, alpha = self.focal(gamma, alpha, per_class=True, num_classes=shape[axis], like=y_pred)
        if alpha is not None and not isinstance(alpha, float):
            alpha = self.ops.reshape(alpha, [-1 if d == axis else 1 for d in range(len(shape))])
        return y_true, y_pred, label_smoothing, axis, gamma, alpha

    def perplexity(self, labels, logits, ignore_index, axis):
        """``perplexity``: the sparse arguments of logits; at least one token kept (checked even
        under ``value_checks(False)``: the mean over no token is undefined)."""
        args = self.sparse(labels, logits, True, 0.0, ignore_index, None, axis, "mean", pred_name="logits")
        if self.ops.is_empty(args[0]):  # the mean over no token is not 0 here: exp(0) = 1 would pass
            raise V.no_tokens("labels", empty=True)
        if ignore_index is not None and self.ops.values_readable():
            self.ops.require(self.ops.any_not_equal(args[0], ignore_index), V.no_tokens, "labels")
        return args

    def scored(self, labels, probs, axis, reduction):
        """``brier_score``: integer labels and probabilities, the class axis moved last."""
        labels, probs, *_, axis, _ = self.sparse(labels, probs, False, 0.0, None, None, axis,
                                                 reduction, pred_name="probs")
        return labels, self.ops.move_to_last(probs, axis)

    def temperature(self, logits, labels, axis):
        """``fit_temperature``: finite logits and their labels, as host arrays (the search runs
        in the NumPy reference), and ``logits`` itself (the result's dtype and device)."""
        labels, logits, *_, axis, _ = self.sparse(labels, logits, True, 0.0, None, None, axis,
                                                  "mean", pred_name="logits")
        return self.ops.to_host(logits), self.ops.to_host(labels), axis, logits

    def calibration(self, labels, probs, n_bins, binning, axis):
        """``expected_calibration_error``, ``maximum_calibration_error``: integer labels,
        probabilities with a class axis, a bin count and a binning.

        Returns ``probs`` and the count and gap of each non-empty bin
        (:func:`xentlib._neutral.calibration_bins`, on the host), as float64
        arrays of the backend on ``probs``' device (in a TensorFlow graph, the
        outputs of one ``tf.numpy_function``).
        """
        n_bins = V.check_int("n_bins", n_bins, minimum=1)
        if binning not in ("width", "mass"):
            raise ValueError(f"binning must be 'width' (equal-width bins) or 'mass' "
                             f"(equal-count bins); got {binning!r}")
        labels, probs, *_, axis, _ = self.sparse(labels, probs, False, 0.0, None, None, axis,
                                                 "mean", pred_name="probs")
        bins = self.ops.on_host(lambda y, p: calibration_bins(y, p, n_bins, binning, axis),
                                labels, probs, outputs=2)
        return (probs, *bins)

    def _label_smoothing(self, label_smoothing, shares, *arrays):
        """``label_smoothing`` (checked) as the loss takes it: each of its ``shares`` (the class
        count, ``None`` while unknown; binary: 2) at least the smallest normal of the dtype
        ``arrays`` are computed in (:func:`xentlib._validate.smoothing_taken`)."""
        return V.smoothing_taken(label_smoothing, shares, *(self.ops.dtype_name(a) for a in arrays))

    def _classes(self, x, axis, name="y_pred"):
        if self.ops.shape(x)[axis] == 0:
            raise ValueError(
                f"{name} has no classes (length 0 along axis {axis}); a distribution needs at least one")

    # ---- linear cross-entropy (the backends' _linear modules) ------------------------------

    def linear(self, hidden, weight, labels, *, bias=None, ignore_index=None, label_smoothing=0.0,
               reduction="mean", chunk_size=None) -> LinearArgs:
        """Shape, dtype and option checks of ``linear_cross_entropy`` (arrays already converted)."""
        for name, x in (("hidden", hidden), ("weight", weight), ("bias", bias)):
            if x is not None and not self.ops.is_float(x):
                raise V.not_float(name, self.ops.dtype_name(x), self.ops.float_dtypes)
        if not self.ops.is_integer(labels):
            raise V.not_integer("labels", self.ops.dtype_name(labels))
        label_smoothing = V.check_fraction("label_smoothing", label_smoothing)
        ignore_index = V.check_int("ignore_index", ignore_index, allow_none=True)
        V.check_reduction(reduction)
        chunk_size = V.check_int("chunk_size", chunk_size, minimum=1, allow_none=True)
        hidden_shape, weight_shape = self.ops.shape(hidden), self.ops.shape(weight)
        if len(hidden_shape) < 1:
            raise ValueError(f"hidden must have shape (..., d), at least one axis; got {hidden_shape}")
        if len(weight_shape) != 2 or weight_shape[1] != hidden_shape[-1]:
            raise ValueError(
                f"weight has shape {weight_shape} but hidden has shape {hidden_shape}; weight must "
                f"have shape (V, d) with d = hidden.shape[-1] = {hidden_shape[-1]}")
        if None in weight_shape:  # the chunking is planned from V and d when traced
            raise ValueError(
                f"weight must have a known shape (V, d) in a graph; got {weight_shape}. Give the "
                f"tf.function's input_signature static dimensions for weight, e.g. "
                f"tf.TensorSpec([V, d]) (the rows of hidden and labels may stay None)")
        if weight_shape[0] < 1:
            raise ValueError(f"weight must have at least one row (one class); got shape {weight_shape}")
        if self.ops.shape(labels) != hidden_shape[:-1]:
            raise ValueError(
                f"labels has shape {self.ops.shape(labels)}; expected {hidden_shape[:-1]} "
                f"(hidden's shape without its last axis)")
        if bias is not None and self.ops.shape(bias) != (weight_shape[0],):
            raise ValueError(
                f"bias must have shape ({weight_shape[0]},), one entry per row of weight; "
                f"got {self.ops.shape(bias)}")
        label_smoothing = self._label_smoothing(label_smoothing, weight_shape[0], hidden, weight)
        return LinearArgs(ignore_index, label_smoothing, reduction, chunk_size)


def _not(flag):
    """Logical not of a Python bool or a boolean scalar tensor."""
    return (not flag) if isinstance(flag, bool) else ~flag


def _joint_sum_error(worst, tol):
    return ValueError(
        f"p_xy must sum to 1 over its last two axes (tolerance {tol:g}); found a sum of {worst:.6g}")
