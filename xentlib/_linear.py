r"""Linear cross-entropy: what the NumPy, PyTorch and TensorFlow versions share.

Each backend (``_linear_numpy``, ``_linear_torch``, ``_linear_tensorflow``)
defines ``linear_cross_entropy(hidden, weight, labels, **options)``, given the
shared signature and docstring by :func:`public`, and makes one call to
:func:`prepare`, which converts and checks every argument through that
backend's front door and returns the arrays plus a :class:`LinearCE` record of
the normalised options, and then runs its own
chunk loop. The formula, the options and the docstring are written here once.

Per item :math:`n`, with logits :math:`z_n = W h_n + b` (capped to
:math:`c \tanh(z_n / c)` when ``softcap=c``), :math:`\operatorname{lse}_n =
\log \sum_c e^{z_{n,c}}`, class weights :math:`w` (all 1 by default) and
:math:`\bar w = \frac1V \sum_c w_c`:

.. math:: \ell_n = (1-\varepsilon)\, w_{y_n} \big(\operatorname{lse}_n - z_{n,y_n}\big)
          + \frac{\varepsilon}{V} \sum_c w_c \big(\operatorname{lse}_n - z_{n,c}\big)
          + \lambda\, w_{y_n} \operatorname{lse}_n^2

and its gradient with respect to the logits, :math:`p_n = \operatorname{softmax}(z_n)`,

.. math:: \frac{\partial \ell_n}{\partial z_n} = p_n \big((1-\varepsilon) w_{y_n}
          + \varepsilon \bar w + 2\lambda w_{y_n} \operatorname{lse}_n\big)
          - (1-\varepsilon) w_{y_n} e_{y_n} - \frac{\varepsilon}{V} w

(times :math:`1 - (z/c)^2` with a soft cap), which every backend computes in
the forward pass when the loss is reduced to a scalar.
"""
from __future__ import annotations

import inspect
import numbers
from typing import NamedTuple

from xentlib import _validate as V

#: The per-item results that ``extras=`` can ask for, computed in the same pass.
EXTRAS = ("lse", "label_logprob", "entropy", "argmax")

#: Logits held at once by the default chunking at small ``d``: 2**23 numbers (32 MiB in
#: float32). The chunk also has at least :data:`MIN_ROWS` rows, and ``d // 2`` up to 1024
#: (see :func:`chunk_rows`).
CHUNK_ELEMENTS = 1 << 23

#: Fewest rows per default chunk: each chunk reads the (V, d) weight twice and reads and
#: writes its gradient once, whatever its row count, against 6 rows V d flops of products.
MIN_ROWS = 256


class LinearCE(NamedTuple):
    """The options of one ``linear_cross_entropy`` call, checked and normalised."""
    vocab: int
    dim: int
    rows: int                    # rows of logits per chunk
    ignore_index: int | None
    label_smoothing: float
    reduction: str
    z_loss: float
    softcap: float | None
    extras: tuple[str, ...]


def chunk_rows(num_rows: int, vocab: int, dim: int, elements: int = CHUNK_ELEMENTS) -> int:
    """Rows per chunk: about ``elements`` logits, at least :data:`MIN_ROWS` rows and ``dim // 2``
    (up to 1024 rows: at d = 4096 a chunk of V logits per row is then a quarter of the
    weight gradient's size).

    Every chunk streams the ``(V, d)`` weight through two matrix products and adds
    its ``(rows, V)`` logit gradient into the ``(V, d)`` weight gradient, reading and
    writing all of it: about ``16 V d`` bytes of memory traffic against ``6 rows V d``
    flops. Few rows make that traffic, not the products, the cost. Measured with two
    threads against the naive form's CPU time: N = 2048, d = 256, V = 131072: 64 rows
    0.98x, 256 rows 0.67x, 512 rows 0.65x; d = 1024, V = 32768: 256 rows 1.05x, 512
    rows 0.92x, 1024 rows 0.90x.
    """
    least = max(MIN_ROWS, min(dim // 2, 1024))
    return max(1, min(max(num_rows, 1), max(elements // max(vocab, 1), least)))


def _public_signature(hidden, weight, labels, *, bias=None, ignore_index=None, label_smoothing=0.0,
                      reduction="mean", chunk_size=None, class_weight=None, z_loss=0.0,
                      softcap=None, extras=()):
    """The signature of every backend's ``linear_cross_entropy``."""


SIGNATURE = inspect.signature(_public_signature)


def public(function, backend: str, example: str, *, chunk_elements: int = CHUNK_ELEMENTS):
    """Give a backend's ``linear_cross_entropy(hidden, weight, labels, **options)`` the shared
    signature (as ``help`` and the API pages show it), docstring, and its
    ``default_chunk_size(num_rows, vocab, dim)``: the rows per chunk it uses when
    ``chunk_size`` is not given (``chunk_elements`` as passed to :func:`prepare`)."""
    function.__signature__ = SIGNATURE
    function.__doc__ = doc(backend, example)

    def default_chunk_size(num_rows: int, vocab: int, dim: int) -> int:
        """Rows per chunk of ``linear_cross_entropy`` without ``chunk_size``, for
        ``num_rows`` items, ``vocab`` classes and hidden size ``dim``."""
        return chunk_rows(num_rows, vocab, dim, chunk_elements)

    function.default_chunk_size = default_chunk_size
    return function


def prepare(front_door, hidden, weight, labels, options, *, chunk_elements=CHUNK_ELEMENTS):
    """Convert and check the arguments of ``linear_cross_entropy`` (one call per backend).

    ``options`` are the keyword arguments of the call (names and defaults as in
    :data:`SIGNATURE`). Returns ``(hidden, weight, labels, bias, class_weight,
    options)``: the arrays as the backend's floating arrays (labels as integers),
    all on ``hidden``'s device, and a :class:`LinearCE`.
    """
    call = SIGNATURE.bind(hidden, weight, labels, **options)
    call.apply_defaults()
    (hidden, weight, labels, bias, ignore_index, label_smoothing, reduction, chunk_size,
     class_weight, z_loss, softcap, extras) = call.arguments.values()
    ops = front_door.ops
    hidden, weight = front_door.floats((hidden, "hidden"), (weight, "weight"))
    labels = ops.as_labels(labels, "labels", like=hidden)
    if bias is not None:
        (bias,) = front_door.floats((bias, "bias"), like=hidden)
    base = front_door.linear(hidden, weight, labels, bias=bias, ignore_index=ignore_index,
                             label_smoothing=label_smoothing, reduction=reduction,
                             chunk_size=chunk_size)
    vocab, dim = ops.shape(weight)
    if class_weight is not None:
        (class_weight,) = front_door.floats((class_weight, "class_weight"), like=hidden)
        if ops.shape(class_weight) != (vocab,):
            raise ValueError(f"class_weight must have shape ({vocab},), one weight per row of "
                             f"weight; got {ops.shape(class_weight)}")
    options = LinearCE(
        vocab=vocab, dim=dim,
        rows=base.chunk_size or chunk_rows(_rows(ops.shape(labels)), vocab, dim, chunk_elements),
        ignore_index=base.ignore_index, label_smoothing=base.label_smoothing,
        reduction=base.reduction, z_loss=_check_z_loss(z_loss), softcap=_check_softcap(softcap),
        extras=_check_extras(extras))
    for name, x in (("hidden", hidden), ("weight", weight), ("bias", bias)):
        if x is not None:
            front_door.logits(x, name)
    if class_weight is not None:
        front_door.weights(class_weight, "class_weight")
    front_door.label_range(labels, vocab, options.ignore_index)
    return hidden, weight, labels, bias, class_weight, options


def _rows(lead_shape) -> int:
    """Number of items; 2**16 stands in for a dimension unknown while tracing a graph."""
    n = 1
    for s in lead_shape:
        n *= (1 << 16) if s is None else s
    return n


def _check_z_loss(z_loss) -> float:
    if isinstance(z_loss, bool) or not isinstance(z_loss, numbers.Real):
        raise TypeError(f"z_loss must be a float >= 0 (e.g. 1e-4, as in PaLM); got {z_loss!r}")
    z_loss = float(z_loss)
    if not 0.0 <= z_loss < float("inf"):
        raise ValueError(f"z_loss must be finite and >= 0 (e.g. 1e-4); got {z_loss}")
    return z_loss


def _check_softcap(softcap):
    if softcap is None:
        return None
    return V.check_positive("softcap", softcap)


def _check_extras(extras) -> tuple[str, ...]:
    if isinstance(extras, str):
        raise TypeError(f"extras must be a tuple of names, e.g. ({extras!r},); got a string")
    try:
        extras = tuple(extras)
    except TypeError:
        raise TypeError(f"extras must be a tuple of names from {EXTRAS}; got {extras!r}") from None
    unknown = [e for e in extras if e not in EXTRAS]
    if unknown:
        raise ValueError(f"extras must be names from {EXTRAS}; got {unknown[0]!r}")
    if len(set(extras)) != len(extras):
        raise ValueError(f"extras must not repeat a name; got {extras}")
    return extras


def doc(backend: str, example: str) -> str:
    """The docstring of every backend's ``linear_cross_entropy``: shared text, then the backend's."""
    return DOC.format(backend=backend.strip(), example=example.strip("\n"))


DOC = r"""Cross-entropy of the logits :math:`z = h W^\top + b`, never forming all of them.

.. math:: \ell_n = (1-\varepsilon)\, w_{{y_n}} \big(\operatorname{{lse}}(z_n) - z_{{n,y_n}}\big)
          + \frac{{\varepsilon}}{{V}} \sum_{{c=1}}^{{V}} w_c \big(\operatorname{{lse}}(z_n) - z_{{n,c}}\big)
          + \lambda\, w_{{y_n}} \operatorname{{lse}}(z_n)^2

with :math:`\operatorname{{lse}}(z) = \log\sum_c e^{{z_c}}`. Without the new options
the value equals ``sparse_categorical_cross_entropy(labels, hidden @ weight.T +
bias, from_logits=True, ...)`` and PyTorch's ``F.cross_entropy`` (its semantics
for ``ignore_index``, ``label_smoothing`` and ``weight``; ``'mean'`` divides by
:math:`\sum_{{n \in \mathcal K}} w_{{y_n}}`, the kept items' weights, and is 0 if
that is 0), but the rows are processed ``chunk_size`` at a time, so at most a
``(chunk_size, V)`` block of logits exists (default: about :math:`2^{{23}}`
logits, at least 256 rows, and ``d // 2`` rows up to 1024; for given sizes,
``linear_cross_entropy.default_chunk_size(N, V, d)``). ``hidden`` has shape ``(..., d)``,
``weight`` ``(V, d)`` (PyTorch's ``nn.Linear`` layout), ``labels`` ``(...)``.

Args:
    bias: ``(V,)``, added to the logits.
    class_weight: ``(V,)`` non-negative weights :math:`w` (PyTorch's ``weight=``).
    ignore_index: label value of items that are left out (padding).
    label_smoothing: :math:`\varepsilon` in [0, 1].
    reduction: ``'mean'``, ``'sum'`` or ``'none'`` (per item, ``labels``' shape).
    chunk_size: rows of logits per chunk.
    z_loss: :math:`\lambda \ge 0`, the coefficient of the squared log-sum-exp
        (PaLM's auxiliary z-loss, 1e-4 there; Liger's ``lse_square_scale``),
        weighted like the item.
    softcap: :math:`c > 0`: the logits become :math:`c \tanh(z / c)` before the
        softmax (Gemma 2's final-logit soft-capping, 30 there); every result,
        extras included, is then about the capped logits.
    extras: names from ``("lse", "label_logprob", "entropy", "argmax")``: per-item
        results computed in the same pass (log-sum-exp, :math:`\log p_{{y_n}}`, which
        is 0 for ignored items, the entropy of the softmax in nats, the index of
        the largest logit). They carry no gradient (use ``z_loss`` for a loss on
        the log-sum-exp).

Returns:
    The loss (float32 for 16-bit and float32 inputs, float64 for float64); with
    ``extras``, the pair ``(loss, {{name: array of labels' shape}})``.

Precision: float16 and bfloat16 inputs are computed in float32 (the matrix
products, the softmax and every accumulation; gradients are returned in the
input dtype), float32 chunk losses are summed in float64, so the chunk size
does not change the result beyond rounding.

{backend}

{example}
"""
