"""xentlib.training: the small training scaffolding the book's chapters share.

* :func:`fit_torch`: a PyTorch minibatch loop (shuffled by the seeded global torch
  generator, or one you pass) that returns per-epoch curves shaped like Keras'
  ``History.history``: ``{"loss": [...], "val_loss": [...]}``.
* :func:`keras_progress`: a Keras callback that collects a progress line per
  reported epoch and prints them once, when training ends.
* :class:`EpochLog`: what both use: which epochs to report, how a line reads,
  and the single print at the end (one output block per run in a notebook).

Neither helper imports a framework until it is called, so ``import xentlib.training``
is cheap.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

__all__ = ["EpochLog", "fit_torch", "keras_progress"]

LineFormat = Callable[[int, Mapping[str, float]], str]


def default_line(epoch: int, logs: Mapping[str, float]) -> str:
    """``epoch 3: training loss 0.1234 | held-out loss 0.2345`` (the keys present)."""
    parts = [f"training loss {logs['loss']:.4f}"] if "loss" in logs else []
    if "val_loss" in logs:
        parts.append(f"held-out loss {logs['val_loss']:.4f}")
    return f"epoch {epoch}: " + " | ".join(parts)


class EpochLog:
    """Progress lines of one training run, printed together at its end.

    Args:
      every: report epoch 1, then every ``every``-th epoch (1 reports all).
      line: ``line(epoch, logs) -> str`` with 1-based ``epoch`` and the epoch's
        ``logs`` (e.g. ``{"loss": ..., "val_loss": ...}``); default
        ``default_line``.
      epochs: the number of epochs of the run, whose last epoch is then reported
        too (the Keras callback reads it from ``fit``).

    >>> log = EpochLog(every=2, epochs=5)
    >>> for epoch in range(1, 6):
    ...     log.record(epoch, {"loss": 1 / epoch})
    >>> log.flush()
    epoch 1: training loss 1.0000
    epoch 3: training loss 0.3333
    epoch 5: training loss 0.2000
    """

    def __init__(self, every: int = 1, line: LineFormat | None = None,
                 epochs: int | None = None):
        _check_positive("every", every)
        if epochs is not None:
            _check_positive("epochs", epochs)
        self.epochs, self.every = epochs, every
        self.line = line or default_line
        self.lines: list[str] = []

    def record(self, epoch: int, logs: Mapping[str, float]) -> None:
        """Keep the line of ``epoch`` (1-based) if it is one to report."""
        if (epoch - 1) % self.every == 0 or epoch == self.epochs:
            self.lines.append(self.line(epoch, logs))

    def flush(self) -> None:
        """Print the kept lines as one block and forget them."""
        if self.lines:
            print("\n".join(self.lines))
        self.lines = []


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")


def fit_torch(model, loss_fn: Callable, data: Sequence, optimizer, *, epochs: int,
              batch_size: int, validation: Sequence | None = None, every: int | None = None,
              line: LineFormat | None = None, generator=None) -> dict[str, list[float]]:
    """Train a PyTorch model by minibatches; return the per-epoch curves.

    Each epoch shuffles the examples with ``torch.randperm`` (the global generator,
    which :func:`xentlib.notebook.seed_all` seeds, unless ``generator`` is given),
    cuts them into batches of ``batch_size`` (the last one may be smaller), and takes
    one optimiser step per batch on ``loss_fn(*batch)``.

    Args:
      model: the ``torch.nn.Module``; put in training mode for the steps and in
        evaluation mode for the held-out loss.
      loss_fn: ``loss_fn(*tensors) -> scalar loss``, called with the batch's rows of
        each tensor of ``data`` (e.g. ``lambda x, y: loss(y, model(x))``).
      data: tensors with the examples along their first axis, all the same length.
      optimizer: a ``torch.optim`` optimiser over the model's parameters.
      epochs, batch_size: positive integers.
      validation: tensors like ``data``; after each epoch ``loss_fn(*validation)``
        is evaluated without gradients.
      every: print progress lines (see :class:`EpochLog`) once, after training;
        ``None`` prints nothing.
      line: the progress line's format, ``line(epoch, logs) -> str``.
      generator: a ``torch.Generator`` for the shuffling, independent of the global one.

    Returns:
      ``{"loss": [...], "val_loss": [...]}``, one float per epoch (``val_loss`` only
      with ``validation``); ``loss`` is the epoch's mean of the batch losses,
      weighted by batch size, as Keras reports it.

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(64, 3); y = x @ torch.tensor([1.0, -2.0, 0.5])
    >>> net = torch.nn.Linear(3, 1)
    >>> mse = lambda xb, yb: ((net(xb)[:, 0] - yb) ** 2).mean()
    >>> curve = fit_torch(net, mse, (x, y), torch.optim.SGD(net.parameters(), lr=0.1),
    ...                   epochs=20, batch_size=16, validation=(x, y), every=10)
    epoch 1: training loss ... | held-out loss ...
    epoch 11: training loss ... | held-out loss ...
    epoch 20: training loss ... | held-out loss ...
    >>> len(curve["loss"]), curve["val_loss"][-1] < 1e-3 < curve["loss"][0]
    (20, True)
    """
    import torch

    _check_positive("epochs", epochs)
    _check_positive("batch_size", batch_size)
    n = len(data[0])
    if any(len(t) != n for t in data):
        raise ValueError(f"data must be tensors of one length; got {[len(t) for t in data]}")
    log = EpochLog(every, line, epochs) if every is not None else None
    curves: dict[str, list[float]] = {"loss": []}
    if validation is not None:
        curves["val_loss"] = []
    for epoch in range(1, epochs + 1):
        model.train()
        order, total = torch.randperm(n, generator=generator), 0.0
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            loss = loss_fn(*(t[rows] for t in data))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        curves["loss"].append(total / n)
        if validation is not None:
            model.eval()
            with torch.no_grad():
                curves["val_loss"].append(float(loss_fn(*validation)))
        if log:
            log.record(epoch, {key: values[-1] for key, values in curves.items()})
    if log:
        log.flush()
    return curves


def keras_progress(every: int = 1, line: LineFormat | None = None):
    """A Keras callback that prints the run's progress lines once, when ``fit`` ends.

    Pass it with ``verbose=0``: ``model.fit(..., verbose=0,
    callbacks=[keras_progress(every=5)])``. The lines are those of
    :class:`EpochLog` (same ``every`` and ``line``; the last epoch is always
    reported); ``logs`` holds what Keras reports (``loss``, ``val_loss``, metrics).
    """
    return _keras_progress_class()(EpochLog(every, line))


@functools.cache
def _keras_progress_class():
    import keras

    class KerasProgress(keras.callbacks.Callback):
        """Collects an :class:`EpochLog` during ``fit`` and prints it at the end."""

        def __init__(self, log: EpochLog):
            super().__init__()
            self.log = log

        def on_train_begin(self, logs=None):
            self.log.epochs = self.params.get("epochs")

        def on_epoch_end(self, epoch, logs=None):
            self.log.record(epoch + 1, logs or {})

        def on_train_end(self, logs=None):
            self.log.flush()

    return KerasProgress
