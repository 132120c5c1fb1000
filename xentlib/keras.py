"""Keras losses from ``xentlib.tensorflow``: serialisable, with ``sample_weight`` as Keras' own.

>>> import keras
>>> import xentlib.keras
>>> loss = xentlib.keras.Loss("sparse_categorical_cross_entropy", from_logits=True)
>>> round(float(loss([0.0, 1.0], [[2.0, 0.5], [0.0, 0.0]], sample_weight=[1.0, 0.0])), 6)
0.100707

A model compiled with ``loss=xentlib.keras.Loss(...)`` (or ``xl.keras_loss(...)``,
which builds one) saves and loads with ``model.save`` / ``keras.models.load_model``
once ``xentlib.keras`` is imported (the class is registered as ``xentlib>Loss``).
Plain functions work too where Keras' float targets suit them:
``model.compile(loss=xl.binary_cross_entropy)`` or ``xl.categorical_cross_entropy``
(not the sparse losses: Keras turns integer labels into floats, which they
refuse; use this class for them).
"""
from __future__ import annotations

import inspect

import keras
import numpy as np
import tensorflow as tf
from keras.src.backend import set_keras_mask  # Keras 3's mask protocol (Loss.__call__ reads it)

from xentlib import tensorflow as xtf

__all__ = ["Loss"]

_SPARSE = ("sparse_categorical_cross_entropy", "perplexity")
_LOSSES = ("categorical_cross_entropy", "sparse_categorical_cross_entropy", "binary_cross_entropy",
           "mean_squared_error", "gaussian_nll", "perplexity", "cross_entropy", "kl_divergence")


def _to_rank(y, rank):
    """Drop or add a trailing length-1 axis so ``y`` has ``rank`` dimensions."""
    if y.shape.rank == rank + 1 and y.shape[-1] == 1:
        return tf.squeeze(y, axis=-1)
    if y.shape.rank == rank - 1:
        return tf.expand_dims(y, axis=-1)
    return y


@keras.saving.register_keras_serializable(package="xentlib")
class Loss(keras.losses.Loss):
    r"""The loss ``fn`` of :mod:`xentlib.tensorflow` (by name) as a ``keras.losses.Loss``.

    .. math:: L = \frac{\sum_n s_n\, \ell_n}{N_{\text{kept}}},
       \qquad \ell_n = \texttt{fn}(y_n, \hat y_n, \texttt{reduction='none', **options})

    with :math:`s_n` Keras' ``sample_weight`` (1 without) and
    :math:`N_{\text{kept}}` the number of items not equal to ``ignore_index``,
    as Keras' own losses reduce (``reduction='sum_over_batch_size'``). Without
    ``sample_weight`` and ``class_weight`` this is ``fn``'s ``'mean'``; with
    ``class_weight`` it divides by the item count, as Keras' ``class_weight``
    does, not by the summed weights. The sparse losses get their labels back as
    integers (Keras passes floats), a trailing length-1 axis dropped.
    ``options`` (``from_logits``, ``ignore_index``, ``class_weight``, ...) go to
    ``fn`` and into ``get_config``.
    """

    def __init__(self, fn="categorical_cross_entropy", *, name=None,
                 reduction="sum_over_batch_size", dtype=None, **options):
        if fn not in _LOSSES:
            raise ValueError(f"fn must name a loss of xentlib.tensorflow (one of {', '.join(_LOSSES)}); "
                             f"got {fn!r}")
        super().__init__(name=name or fn, reduction=reduction, dtype=dtype)
        self.fn = fn
        self.options = {k: np.asarray(v).tolist() if isinstance(v, (np.ndarray, list, tuple)) or tf.is_tensor(v)
                        else v for k, v in options.items()}
        self._takes_reduction = "reduction" in inspect.signature(getattr(xtf, fn)).parameters

    def call(self, y_true, y_pred):
        y_true, y_pred = tf.convert_to_tensor(y_true), tf.convert_to_tensor(y_pred)
        if self.fn in _SPARSE:
            y_true = tf.cast(tf.round(_to_rank(y_true, y_pred.shape.rank - 1)), tf.int64)
        else:
            y_true = _to_rank(y_true, y_pred.shape.rank)
        extra = {"reduction": "none"} if self._takes_reduction else {}
        losses = getattr(xtf, self.fn)(y_true, y_pred, **extra, **self.options)
        ignore_index = self.options.get("ignore_index")
        if ignore_index is not None and self.fn in _SPARSE and self._takes_reduction:
            # A Keras mask on the losses: Keras then divides by the kept items, and combines
            # it with a mask the model's output carries (Embedding(mask_zero=True)).
            set_keras_mask(losses, tf.not_equal(y_true, ignore_index))
        return losses

    def get_config(self):
        return {**super().get_config(), "fn": self.fn, **self.options}
