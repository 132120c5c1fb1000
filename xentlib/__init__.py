"""xentlib: cross-entropy and its relatives, the companion library of the book.

The same API in three backends, imported on demand so that NumPy users need
neither framework installed::

    from xentlib import numpy as xl       # the reference
    from xentlib import torch as xl       # PyTorch tensors, autograd
    from xentlib import tensorflow as xl  # TensorFlow tensors, Keras losses

``xentlib.value_checks(False)`` switches the data-dependent input checks off
(``xentlib.value_checks(True)`` back on); ``with xentlib.value_checks(False):``
switches them off inside the block only.
"""
from xentlib._validate import value_checks

__version__ = "0.1.0"
__all__ = ["value_checks", "__version__"]
