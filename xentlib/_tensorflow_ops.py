"""The TensorFlow adapter of the front door (see :mod:`xentlib._frontdoor`).

Eager mode answers with Python values and raises at once. While a
``tf.function`` is traced, the predicates are boolean scalar tensors and
:meth:`TensorFlowOps.require` adds a ``tf.debugging.Assert`` with the message
the eager error would have (tensor arguments filled in when it fails). XLA
drops assertions; the losses then mark an invalid label with NaN instead.
"""
from __future__ import annotations

import functools
import re

import numpy as np
import tensorflow as tf

from xentlib import _validate as V
from xentlib._frontdoor import FrontDoor
from xentlib._numpy_ops import host_array


def _py(value):
    return value.numpy().item() if tf.is_tensor(value) else value


class TensorFlowOps:
    keeps_subnormals = False  # the CPU kernels flush them to 0
    float_dtypes = V.FLOAT_DTYPES

    def is_array(self, x):
        return tf.is_tensor(x) or isinstance(x, tf.Variable)

    def as_float(self, x, name, like=None):
        """``x`` as a floating tensor; Python numbers and lists become float64."""
        if isinstance(x, (np.ndarray, np.generic)):
            if x.dtype.kind != "f" and x.dtype.name != "bfloat16":  # ml_dtypes' bfloat16 is kind 'V'
                raise V.not_float(name, x.dtype)
            x = tf.convert_to_tensor(x)
        elif not self.is_array(x):
            x = tf.convert_to_tensor(host_array(x, name))
        if not x.dtype.is_floating:
            raise V.not_float(name, x.dtype.name)
        x = tf.convert_to_tensor(x)
        if x.shape.rank is None:
            raise ValueError(f"{name} must have a known rank (number of dimensions)")
        return x

    def as_labels(self, labels, name, like=None):
        if not self.is_array(labels):
            labels = np.asarray(labels)
            if labels.dtype.kind not in "iu":
                raise V.not_integer(name, labels.dtype)
            labels = tf.convert_to_tensor(labels)
        if not labels.dtype.is_integer:
            raise V.not_integer(name, labels.dtype.name)
        labels = tf.convert_to_tensor(labels)
        if labels.shape.rank is None:
            raise ValueError(f"{name} must have a known rank (number of dimensions)")
        return tf.cast(labels, tf.int64)

    def promote(self, *xs):
        """The widest dtype; float16 with bfloat16 gives float32 (neither holds the other), as in torch."""
        dtypes = {x.dtype for x in xs}
        widest = max(dtypes, key=lambda d: d.size)
        if widest.size == 2 and len(dtypes) > 1:
            widest = tf.float32
        # to float64 through float32's bits: TensorFlow's CPU cast flushes subnormals (16-bit ones
        # are normal in float32 or cast exactly there)
        return tuple(widen_float32(tf.cast(x, tf.float32)) if widest == tf.float64 and x.dtype != tf.float64
                     else tf.cast(x, widest) for x in xs)

    def is_float(self, x):
        return x.dtype.is_floating

    def is_integer(self, x):
        return x.dtype.is_integer

    def shape(self, x):
        return tuple(x.shape.as_list())

    def dim(self, x, axis):
        """Static length along ``axis``, or a scalar tensor when unknown."""
        n = x.shape[axis]
        return int(n) if n is not None else tf.shape(x)[axis]

    def dtype_name(self, x):
        return x.dtype.name

    def is_empty(self, x):
        return x.shape.num_elements() == 0

    def _answer(self, t):
        return bool(t) if tf.executing_eagerly() else t

    def any_nan(self, x):
        return self._answer(tf.reduce_any(tf.math.is_nan(x)))

    def any_inf(self, x):
        return self._answer(tf.reduce_any(tf.math.is_inf(x)))

    def all_finite(self, x):
        if x.dtype in (tf.float32, tf.float64):  # one pass: a finite sum means no NaN/inf (else look closer)
            ok = tf.cond(tf.math.is_finite(tf.reduce_sum(x)), lambda: tf.constant(True),
                         lambda: tf.reduce_all(tf.math.is_finite(x)))
        else:  # a 16-bit sum overflows easily
            ok = tf.reduce_all(tf.math.is_finite(x))
        return self._answer(ok)

    def any_inf_max(self, x, axis):
        return self._answer(tf.reduce_any(tf.math.is_inf(tf.reduce_max(x, axis=axis))))

    def min_max(self, x):
        low, high = tf.reduce_min(x), tf.reduce_max(x)
        return (_py(low), _py(high)) if tf.executing_eagerly() else (low, high)

    def any_nan_scalar(self, *values):
        if tf.executing_eagerly():
            return any(v != v for v in values)  # NaN is the one value unequal to itself
        return tf.reduce_any(tf.math.is_nan(tf.stack(values)))

    def worst_sum(self, p, axes, tol):
        def exact():
            sums = tf.reduce_sum(tf.cast(p, tf.float64), axis=axes)
            dev = tf.concat([tf.zeros([1], sums.dtype), tf.reshape(sums - 1, [-1])], 0)
            return 1 + tf.gather(dev, tf.argmax(tf.abs(dev)))  # 1 for an empty input

        if p.dtype == tf.float64:
            worst = exact()
        else:  # a fast float32 sum settles rows clearly within tolerance; float64 otherwise
            quick = tf.reduce_sum(tf.cast(p, tf.float32), axis=axes)
            clear = tf.reduce_all(tf.abs(quick - 1) <= tol / 4)
            worst = tf.cond(clear, lambda: tf.constant(1.0, tf.float64), exact)
        return _py(worst) if tf.executing_eagerly() else worst

    def bad_labels(self, labels, num_classes, ignore_index):
        labels = tf.cast(labels, tf.int64)
        bad = invalid_labels(labels, num_classes, ignore_index)
        big = tf.constant(np.iinfo(np.int64).max, tf.int64)
        low = tf.reduce_min(tf.where(bad, labels, big))
        high = tf.reduce_max(tf.where(bad, labels, -big))
        any_bad = tf.reduce_any(bad)
        if tf.executing_eagerly():
            return bool(any_bad), _py(low), _py(high)
        return any_bad, low, high

    def all_nonnegative(self, w, strict=False, high=None):
        if strict:  # on the bits: TensorFlow's CPU comparison flushes a subnormal to 0 (1e-45 > 0 is False)
            bits = tf.bitcast(w, {8: tf.int64, 4: tf.int32, 2: tf.int16}[w.dtype.size])
            positive = bits > 0  # the sign bit makes every negative float a negative integer
        else:
            positive = w >= 0
        ok = tf.math.is_finite(w) & positive
        if high is not None:
            ok &= w <= high
        return self._answer(tf.reduce_all(ok))

    def positive_cast(self, w, dtype_name):
        """The CPU kernels flush subnormals (also a float64 one cast to float32): a positive weight
        is at least the dtype's smallest normal number, read on the bits."""
        cast = tf.cast(w, dtype_name)
        smallest = tf.constant(np.finfo(dtype_name).tiny, cast.dtype)
        positive = tf.bitcast(w, {8: tf.int64, 4: tf.int32, 2: tf.int16}[w.dtype.size]) > 0
        return tf.where(positive & (cast < smallest), smallest + tf.zeros_like(cast), cast)

    def scaled_to_unit(self, w, labels, ignore_index, min_exponent, max_exponent):
        used = (labels >= 0) & (labels < tf.shape(w, out_type=labels.dtype)[0])
        if ignore_index is not None:
            used &= tf.not_equal(labels, ignore_index)
        # each weight as f 2^k, f normal: a subnormal one (flushed by the kernels) counts too
        f, k = _unflushed(tf.stop_gradient(w))
        none = tf.constant(-1e4, w.dtype)
        exponents = tf.where(f > 0, _exponent(f) + k, none + tf.zeros_like(f))
        picked = tf.gather(exponents, tf.where(used, labels, tf.zeros_like(labels)))
        top = tf.reduce_max(tf.where(used, picked, none + tf.zeros_like(picked)))  # a constant factor
        exponent = tf.where(top > none, top, tf.zeros_like(top))  # no kept weight > 0: unscaled
        # no weight beyond the range: a far larger one (a class without items) bounds the scale
        largest = tf.reduce_max(exponents) - (max_exponent - 1)
        exponent = tf.maximum(exponent, largest)
        total = k - exponent
        half = tf.math.floor(total / 2)  # two normal powers of two: tf.pow flushes 2^-127
        two = tf.constant(2, w.dtype)
        # exact, one factor at a time (0 x 2^1073 would be 0 x inf); w itself where it is normal
        scaled = tf.where(k < 0, f, w) * tf.pow(two, half) * tf.pow(two, total - half)
        # a non-zero weight stays non-zero (at least the smallest normal number: the CPU kernels
        # flush subnormals): times -log 0 it is inf
        smallest = tf.constant(np.ldexp(1.0, min_exponent - 1), w.dtype)
        positive = tf.bitcast(w, {8: tf.int64, 4: tf.int32, 2: tf.int16}[w.dtype.size]) > 0  # subnormals too
        return tf.where(positive & (scaled < smallest), smallest + tf.zeros_like(w), scaled)

    def values_readable(self):
        return True

    def require(self, ok, builder, *args):
        """Raise ``builder(*args)`` unless ``ok``; in a graph, return an assertion op.

        Tensor ``args`` are scalars; their values are written into the message
        when the assertion fails.
        """
        if isinstance(ok, bool):
            if not ok:
                raise builder(*[_py(a) for a in args])
            return None
        slots, fake = {}, []
        for i, a in enumerate(args):
            if tf.is_tensor(a):
                sentinel = 918273 + 2 * i  # formats the same with {} and {:.6g}
                slots[str(sentinel)] = a
                a = sentinel
            fake.append(a)
        text = str(builder(*fake))
        parts = re.split("(" + "|".join(slots) + ")", text) if slots else [text]
        pieces = [slots.get(p, p) for p in parts if p]
        if slots and not _in_xla_context():  # one string, the eager message: Assert prints each
            # piece in its own brackets ('found values in [] [-3] [, ] [5] []'); XLA drops the
            # assertion, and could not compile the string ops
            pieces = [tf.strings.join([p if isinstance(p, str) else _as_text(p) for p in pieces])]
        return tf.debugging.Assert(ok, pieces, summarize=1)

    def same_runtime_shape(self, a, a_name, b, b_name):
        """In a graph with unknown dimensions (e.g. the batch), check when it runs."""
        if a.shape.is_fully_defined() and b.shape.is_fully_defined():
            return None
        return tf.debugging.assert_equal(
            tf.shape(a, tf.int64), tf.shape(b, tf.int64),
            message=f"{a_name} and {b_name} must have the same shape")

    def same_labels_shape(self, labels, y_pred, axis):
        if labels.shape.is_fully_defined() and y_pred.shape.is_fully_defined():
            return None
        return self.same_runtime_shape(labels, "labels", move_to_last(y_pred, axis)[..., 0],
                                       "y_pred without its class axis")

    def nan_outside(self, x, low, high):
        """In a graph, ``x`` with NaN where it lies outside [low, high]: XLA compiles the
        assertion away (and a graph without automatic control dependencies, such as a TF1
        session's, may prune it), and the loss of such an item is then NaN, not a silent number."""
        if tf.executing_eagerly():
            return x  # the check has raised
        bad = (x < tf.constant(low, x.dtype)) | (x > tf.constant(high, x.dtype))
        return tf.where(bad, tf.constant(np.nan, x.dtype), x)

    def any_not_equal(self, x, value):
        return self._answer(tf.reduce_any(tf.not_equal(x, value)))

    def reshape(self, x, shape):
        return tf.reshape(x, shape)

    def move_to_last(self, x, axis):
        return move_to_last(x, axis)

    def to_host(self, x):
        """Eager tensors only (see :meth:`on_host` for a graph); bfloat16 as float32, which
        holds every value (NumPy has no bfloat16: the reference refuses ml_dtypes' type)."""
        return (tf.cast(x, tf.float32) if x.dtype == tf.bfloat16 else x).numpy()

    def from_host(self, a, like=None):
        return tf.constant(a)

    def on_host(self, fn, *xs, outputs):
        """``fn`` of the host copies of ``xs``, its ``outputs`` float64 results as tensors; in a
        graph one ``tf.numpy_function`` (run after the assertions on ``xs``; not under XLA)."""
        if tf.executing_eagerly():
            return tuple(tf.constant(a) for a in fn(*(self.to_host(x) for x in xs)))
        results = tf.numpy_function(fn, list(xs), [tf.float64] * outputs, stateful=False)
        for r in results:
            r.set_shape([None])
        return tuple(results)

    def after(self, x, checks):
        """``x`` computed after ``checks``: the gathers that follow would raise an unnamed error."""
        checks = [c for c in checks if c is not None]
        if not checks:
            return x
        with tf.control_dependencies(checks):
            return tf.identity(x)


def _in_xla_context():
    """Whether the graph being traced is compiled by XLA (``tf.function(jit_compile=True)``)."""
    from tensorflow.python.framework import ops
    from tensorflow.python.ops import control_flow_util

    return control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph())


def _as_text(value):
    """A scalar tensor as the eager message writes it (a float as its shortest repr, ~``{:.6g}``)."""
    if value.dtype.is_floating:
        return tf.strings.as_string(tf.cast(value, tf.float64) if value.dtype.size == 2 else value, shortest=True)
    return tf.strings.as_string(value)


def _unflushed(w):
    """``(f, k)`` with ``w = f * 2**k`` exactly and ``f`` a normal number (or 0, where ``w`` is), for
    ``w >= 0``: a subnormal float32 or float64, which TensorFlow's CPU kernels flush to 0, is its
    bits' integer mantissa (normal) times 2^-149 or 2^-1074; other values ``(w, 0)``."""
    if w.dtype not in (tf.float32, tf.float64):
        return w, tf.zeros_like(w)
    int_type, mantissa_bits, lowest = (tf.int64, 52, -1074) if w.dtype == tf.float64 else (tf.int32, 23, -149)
    bits = tf.bitcast(w, int_type)
    subnormal = (bits > 0) & (bits < tf.constant(2 ** mantissa_bits, int_type))
    f = tf.where(subnormal, tf.cast(bits, w.dtype), w)
    return f, tf.where(subnormal, tf.constant(lowest, w.dtype), tf.zeros_like(w))


def _exponent(x):
    """About frexp's exponent of the scalar ``x`` (0 for 0, inf and NaN): ``x`` / 2^e in [1/4, 1)."""
    exponent = tf.math.floor(tf.math.log(x) / np.log(2.0)) + 1
    return tf.where((x > 0) & tf.math.is_finite(x), exponent, tf.zeros_like(exponent))


def widen_float32(x):
    """``x`` as float64 with its subnormals kept: TensorFlow's CPU cast flushes them to 0.

    A float32 subnormal is its bits (an integer m < 2**23) times :math:`2^{-149}`,
    a normal float64.
    """
    bits = tf.bitcast(x, tf.int32)
    magnitude = tf.bitwise.bitwise_and(bits, 0x7FFFFFFF)
    subnormal = (magnitude > 0) & (magnitude < 0x00800000)
    value = tf.cast(magnitude, tf.float64) * 2.0 ** -149
    cast = tf.cast(x, tf.float64)  # its gradient is the cast's also at a subnormal (not 0)
    exact = tf.stop_gradient(tf.where(bits < 0, -value, value)) + (cast - tf.stop_gradient(cast))
    return tf.where(subnormal, exact, cast)


def invalid_labels(labels, num_classes, ignore_index):
    """Where a label is outside [0, num_classes) and not ``ignore_index``."""
    bad = (labels < 0) | (labels >= tf.cast(num_classes, labels.dtype))
    if ignore_index is not None:
        bad &= tf.not_equal(labels, ignore_index)
    return bad


def move_to_last(x, axis):
    if axis == x.shape.rank - 1:
        return x
    perm = [d for d in range(x.shape.rank) if d != axis] + [axis]
    return tf.transpose(x, perm)


front_door = FrontDoor(TensorFlowOps())


def compiled_when_hot(fn, calls=3):
    """``fn``, run as one ``tf.function`` (checks and formula in one graph) once it has been
    called eagerly ``calls`` times with the same arguments (tensor dtypes and shapes, options).

    Eager TensorFlow dispatches each of a loss's ~40 small operations on its own: at 4096 x 10
    logits that is several times the built-in's time, all of it dispatch. The graph runs
    them in one call. A check that fails in the graph (an assertion) is reported by running
    ``fn`` eagerly, which raises the named ``ValueError``. Calls with other inputs than
    tensors and Python options (lists, NumPy arrays, variables), and calls inside a graph,
    run ``fn`` as it is.

    >>> import tensorflow as tf
    >>> from xentlib import tensorflow as xl
    >>> z, y = tf.constant([[2.0, 0.5, -1.0]]), tf.constant([0])
    >>> [round(float(xl.sparse_categorical_cross_entropy(y, z, from_logits=True)), 5)
    ...  for _ in range(5)]  # the last two from the graph
    [0.24131, 0.24131, 0.24131, 0.24131, 0.24131]
    >>> xl.sparse_categorical_cross_entropy(tf.constant([3]), z, from_logits=True)
    Traceback (most recent call last):
    ValueError: labels must lie in [0, 3); found values in [3, 3]
    """
    seen, graphs = {}, {}

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        key = _call_key(args, kwargs) if tf.executing_eagerly() else None
        if key is None:
            return fn(*args, **kwargs)
        if seen.get(key, 0) < calls:
            out = fn(*args, **kwargs)  # counted once it returns: a call that raises (a static
            # check: its named error) is never traced, where AutoGraph would prefix the message
            if len(seen) > 4096:  # many distinct calls: forget, rather than grow
                seen.clear()
            seen[key] = seen.get(key, 0) + 1
            return out
        checks = V.value_checks_enabled()
        graph = graphs.get((checks, key))
        if graph is None:  # a graph per signature (static shapes: the fastest); beyond 8, one
            # per rank of each tensor, which relaxes lengths to None (never the ranks)
            relaxed = len(graphs) >= 8
            if relaxed:
                key = tuple((k[0], k[1], len(k[2])) if isinstance(k[1], tf.DType) else k for k in key)
            graph = graphs.get((checks, key)) or graphs.setdefault(
                (checks, key), _tensor_graph(fn, checks, args, kwargs, relaxed))
        try:
            return graph(*_tensors(args, kwargs))
        except tf.errors.InvalidArgumentError:
            return fn(*args, **kwargs)

    return wrapper


def _tensors(args, kwargs):
    """The tensors of a call, in the order of :func:`_call_key` (keywords sorted by name)."""
    return [v for v in (*args, *(kwargs[k] for k in sorted(kwargs))) if isinstance(v, tf.Tensor)]


def _tensor_graph(fn, checks, args, kwargs, relaxed):
    """``fn`` as a ``tf.function`` of the call's tensors alone, its Python options fixed to this
    call's (they are part of the call's key): binding nested Python arguments cost a graph call
    as much again as running it (4096 x 10 logits: 0.27 ms)."""
    names = sorted(kwargs)
    template = [*args, *(kwargs[k] for k in names)]
    slots = [i for i, v in enumerate(template) if isinstance(v, tf.Tensor)]

    def traced(*tensors):
        values = list(template)
        for i, t in zip(slots, tensors):
            values[i] = t
        with V.value_checks(checks):
            return fn(*values[:len(args)], **dict(zip(names, values[len(args):])))

    # no AutoGraph: the traced code branches on tensors only through tf.cond / tf.where,
    # and its conversion made the first call of a graph 7-20x slower (sparse CE: 3 s)
    specs = [tf.TensorSpec([None] * template[i].shape.rank if relaxed else template[i].shape,
                           template[i].dtype) for i in slots]
    return tf.function(traced, autograph=False).get_concrete_function(*specs)


def _call_key(args, kwargs):
    """What a call's graph depends on, or ``None`` for arguments it would not be traced for."""
    key = []
    for name, value in [*((None, a) for a in args), *sorted(kwargs.items())]:
        if isinstance(value, tf.Tensor) and hasattr(value, "numpy"):  # an eager tensor
            key.append((name, value.dtype, tuple(value.shape)))
        elif value is None or isinstance(value, (bool, int, float, str)):
            key.append((name, type(value), value))
        else:
            return None
    return tuple(key)
