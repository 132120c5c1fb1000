r"""xentlib.seq2seq: the GRU encoder-decoder of the book's chapters 4.7 and 4.8.

A GRU encoder reads the source sequence; its final state starts a GRU decoder,
which predicts each target token from the source and the tokens before it. The
models output logits, for a token-level cross-entropy with ``ignore_index=PAD``.

* :class:`Seq2Seq`: the PyTorch model. ``model(x, y_in)`` is the
  teacher-forced pass (all target positions at once, from the true prefix
  ``y_in = <bos> y_1 ... y_{T-1}``); ``model.greedy(x, steps)`` decodes freely,
  feeding back its own most likely token.
* :class:`KerasSeq2Seq`: the same architecture in Keras. ``.model`` is the
  teacher-forced ``keras.Model([x, y_in]) -> logits`` to compile and fit;
  ``.greedy(x, steps)`` decodes freely with the same layers.
* :func:`greedy_decode`: the free-running loop both use, framework-free.

Importing this module imports PyTorch; Keras is imported when a
:class:`KerasSeq2Seq` is built.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from .datasets import BOS

__all__ = ["Seq2Seq", "KerasSeq2Seq", "greedy_decode"]


def greedy_decode(step: Callable, state, batch_size: int, *, steps: int,
                  banned: Sequence[int] = ()) -> np.ndarray:
    """Free-running greedy decoding: start from ``<bos>``, feed back each argmax.

    Args:
      step: ``step(tokens, state) -> (logits, state)``; ``tokens`` is a
        ``(batch, 1)`` int64 array of the previous tokens, ``logits`` anything
        ``np.asarray`` turns into ``(batch, 1, vocab)``.
      state: the decoder's initial state (the encoder's summary of the source).
      batch_size: the number of sequences decoded side by side.
      steps: the number of tokens generated; cut the output at its first
        ``<eos>`` (``Vocab.decode`` does).
      banned: token ids never emitted (for example ``<pad>``, ``<bos>``, ``<unk>``).

    Returns:
      the generated ids, an int64 array ``(batch, steps)``.

    >>> vocab = 4                                   # a decoder that always prefers "previous + 1"
    >>> step = lambda tok, s: (np.eye(vocab)[(tok + 1) % vocab], s)
    >>> greedy_decode(step, None, 2, steps=5).tolist()
    [[2, 3, 0, 1, 2], [2, 3, 0, 1, 2]]
    >>> greedy_decode(step, None, 1, steps=3, banned=[3]).tolist()   # 3 banned: ties go to id 0
    [[2, 0, 1]]
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer; got {steps!r}")
    tokens = np.full((batch_size, 1), BOS, dtype=np.int64)
    out = []
    for _ in range(steps):
        logits, state = step(tokens, state)
        logits = np.array(logits, dtype=np.float64)
        logits[..., list(banned)] = -np.inf
        tokens = logits.argmax(axis=-1).astype(np.int64)
        out.append(tokens)
    return np.concatenate(out, axis=1)


class Seq2Seq(torch.nn.Module):
    """GRU encoder-decoder in PyTorch: embeddings of ``emb``, GRUs of ``hidden`` units.

    >>> _ = torch.manual_seed(0)
    >>> net = Seq2Seq(src_size=7, tgt_size=9)
    >>> x = torch.tensor([[4, 5, 6]]); y_in = torch.tensor([[1, 4, 5]])
    >>> tuple(net(x, y_in).shape), net.greedy(x, steps=4).shape
    ((1, 3, 9), (1, 4))
    """

    def __init__(self, src_size: int, tgt_size: int, emb: int = 32, hidden: int = 64):
        super().__init__()
        self.src_emb = torch.nn.Embedding(src_size, emb)
        self.tgt_emb = torch.nn.Embedding(tgt_size, emb)
        self.encoder = torch.nn.GRU(emb, hidden, batch_first=True)
        self.decoder = torch.nn.GRU(emb, hidden, batch_first=True)
        self.out = torch.nn.Linear(hidden, tgt_size)

    def forward(self, x, y_in):
        """Teacher forcing: logits ``(batch, T, tgt_size)`` for every target position."""
        _, h = self.encoder(self.src_emb(x))
        return self.out(self.decoder(self.tgt_emb(y_in), h)[0])

    @torch.no_grad()
    def greedy(self, x, steps: int, banned: Sequence[int] = ()) -> np.ndarray:
        """Free-running greedy decoding (see :func:`greedy_decode`); an int64 array."""
        _, h = self.encoder(self.src_emb(torch.as_tensor(x)))

        def step(tokens, h):
            o, h = self.decoder(self.tgt_emb(torch.from_numpy(tokens)), h)
            return self.out(o).numpy(), h

        return greedy_decode(step, h, len(x), steps=steps, banned=banned)


class KerasSeq2Seq:
    """The same GRU encoder-decoder in Keras; ``.model`` is the teacher-forced model.

    >>> import keras
    >>> keras.utils.set_random_seed(0)
    >>> s2s = KerasSeq2Seq(src_size=7, tgt_size=9)
    >>> x = np.array([[4, 5, 6]]); y_in = np.array([[1, 4, 5]])
    >>> tuple(s2s.model([x, y_in]).shape), s2s.greedy(x, steps=4).shape
    ((1, 3, 9), (1, 4))
    """

    def __init__(self, src_size: int, tgt_size: int, emb: int = 32, hidden: int = 64):
        import keras
        self.src_emb = keras.layers.Embedding(src_size, emb)
        self.tgt_emb = keras.layers.Embedding(tgt_size, emb)
        self.encoder = keras.layers.GRU(hidden, return_state=True)
        self.decoder = keras.layers.GRU(hidden, return_sequences=True, return_state=True)
        self.project = keras.layers.Dense(tgt_size)                    # logits
        src = keras.Input(shape=(None,), dtype="int32")
        tgt_in = keras.Input(shape=(None,), dtype="int32")
        _, h = self.encoder(self.src_emb(src))
        seq, _ = self.decoder(self.tgt_emb(tgt_in), initial_state=h)  # teacher forcing
        self.model = keras.Model([src, tgt_in], self.project(seq))

    def greedy(self, x, steps: int, banned: Sequence[int] = ()) -> np.ndarray:
        """Free-running greedy decoding (see :func:`greedy_decode`); an int64 array."""
        _, h = self.encoder(self.src_emb(np.asarray(x)))

        def step(tokens, h):
            o, h = self.decoder(self.tgt_emb(tokens), initial_state=h)
            return self.project(o), h

        return greedy_decode(step, h, len(x), steps=steps, banned=banned)
