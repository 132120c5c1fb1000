"""The PyTorch adapter of the front door (see :mod:`xentlib._frontdoor`).

Every value predicate reads one scalar back to the host (a synchronisation on
a GPU); inputs that are not tensors are created on the device of the tensor
they go with (``like``).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch._C._functorch import TransformType
from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

from xentlib import _validate as V
from xentlib._frontdoor import FrontDoor
from xentlib._numpy_ops import NumpyOps, host_array


def dtype_name(dtype):
    return str(dtype).replace("torch.", "")


def _from_numpy(a):
    return torch.as_tensor(a if a.flags.writeable else a.copy())


class TorchOps(NumpyOps):
    """Shares the NumPy adapter's scalar logic; every array primitive is torch's."""

    float_dtypes = V.FLOAT_DTYPES

    def is_array(self, x):
        return isinstance(x, torch.Tensor)

    def as_float(self, x, name, like=None):
        """``x`` as a floating tensor; Python numbers and lists become float64, on ``like``'s device."""
        if not isinstance(x, torch.Tensor):
            a = np.asarray(x) if isinstance(x, (np.ndarray, np.generic)) else host_array(x, name)
            try:
                x = _from_numpy(a)
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(f"{name} must be an array of floats; got {type(x).__name__}") from None
            if like is not None:
                x = x.to(like.device)
        if not x.is_floating_point():
            raise V.not_float(name, dtype_name(x.dtype))
        return x

    def as_labels(self, labels, name, like=None):
        if not isinstance(labels, torch.Tensor):
            try:
                labels = _from_numpy(np.asarray(labels))
            except (TypeError, ValueError, RuntimeError):
                raise V.not_integer(name, type(labels).__name__) from None
        if not self.is_integer(labels):
            raise V.not_integer(name, dtype_name(labels.dtype))
        return labels if like is None else labels.to(like.device)

    def promote(self, *xs):
        dtype = functools.reduce(torch.promote_types, (x.dtype for x in xs))  # bf16 with f16: f32
        return tuple(x.to(dtype) for x in xs)

    def is_float(self, x):
        return x.is_floating_point()

    def is_integer(self, x):
        return not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool)

    def dtype_name(self, x):
        return dtype_name(x.dtype)

    def is_empty(self, x):
        return x.numel() == 0

    def values_readable(self):
        """False inside ``torch.func.vmap`` (a value read back, ``.item()``, is refused there):
        the value checks are skipped, as under ``value_checks(False)``; ``grad`` reads them."""
        return not (torch._C._are_functorch_transforms_active() and any(
            i.key() == TransformType.Vmap for i in retrieve_all_functorch_interpreters()))

    def any_nan(self, x):
        return bool(torch.isnan(x.detach()).any())

    def any_inf(self, x):
        return bool(torch.isinf(x.detach()).any())

    def all_finite(self, x):
        # One fast pass, one host read: a finite sum means no NaN/inf; an overflowing sum is looked at closely.
        x = x.detach()
        return math.isfinite(x.sum().item()) or bool(torch.isfinite(x).all())

    def any_inf_max(self, x, axis):
        return bool(torch.isinf(torch.amax(x.detach(), dim=axis)).any())

    def min_max(self, x):
        low, high = torch.aminmax(x.detach())  # one pass; NaN propagates
        return low.item(), high.item()

    def worst_sum(self, p, axes, tol):
        p = p.detach()
        if p.dtype != torch.float64:  # a fast float32 sum settles rows clearly within tolerance
            quick = p.sum(dim=axes, dtype=torch.float32)
            if bool(((quick - 1).abs() <= tol / 4).all()):
                return 1.0
        sums = p.sum(dim=axes, dtype=torch.float32 if p.device.type == "mps" else torch.float64)
        return float(sums.flatten()[torch.argmax(torch.abs(sums - 1))])

    def bad_labels(self, labels, num_classes, ignore_index):
        bad = (labels < 0) | (labels >= num_classes)
        if ignore_index is not None:
            bad &= labels != ignore_index
        if not bool(bad.any()):
            return False, 0, 0
        return True, int(labels[bad].min()), int(labels[bad].max())

    def all_nonnegative(self, w, strict=False, high=None):
        w = w.detach()
        ok = torch.isfinite(w) & ((w > 0) if strict else (w >= 0))
        return bool((ok if high is None else ok & (w <= high)).all())

    def positive_cast(self, w, dtype_name):
        """On the device: no host read."""
        dtype = getattr(torch, dtype_name)
        if w.dtype == dtype:
            return w
        cast = w.to(dtype)
        smallest = float(np.finfo(dtype_name).smallest_subnormal)
        return torch.where((w > 0) & (cast == 0), smallest, cast)

    def scaled_to_unit(self, w, labels, ignore_index, min_exponent, max_exponent):
        if not (w.numel() and labels.numel()):
            return w
        used = (labels >= 0) & (labels < w.shape[0])
        if ignore_index is not None:
            used &= labels != ignore_index
        # a constant factor: the gradient of the mean is unchanged
        top = torch.where(used, w.detach()[torch.where(used, labels, 0)], 0).amax()
        exponent = torch.frexp(top).exponent  # 0 for 0, inf and NaN
        # no weight beyond the range: a far larger one (a class without items) bounds the scale
        largest = torch.frexp(w.detach().amax()).exponent - (max_exponent - 1)
        exponent = torch.maximum(exponent, largest)
        half, one = exponent // 2, torch.ones((), dtype=w.dtype, device=w.device)
        # on the device: no host read; two normal powers of two (2^1073 is beyond float64), a
        # product, as torch.ldexp's own gradient is 0
        scaled = w * torch.ldexp(one, -half) * torch.ldexp(one, half - exponent)
        # a non-zero weight stays non-zero (at least the smallest positive number): times -log 0 it is inf
        smallest = float(np.ldexp(1.0, min_exponent - 1))
        return torch.where((w > 0) & (scaled < smallest), smallest, scaled)

    def move_to_last(self, x, axis):
        return x.movedim(axis, -1)

    def to_host(self, x):
        """A NumPy copy; bfloat16 (which NumPy lacks) as float32, which holds every value."""
        x = x.detach()
        return (x.float() if x.dtype == torch.bfloat16 else x).cpu().numpy()

    def from_host(self, a, like=None):
        return torch.as_tensor(a, device=None if like is None else like.device)


front_door = FrontDoor(TorchOps())
