"""The hierarchical context embedding of ``retgen.md`` §3.2 (Definition 3.2).

A context ``x = (w_1, …, w_r)`` (``w_r`` the most recent token) in a document becomes

    e(x) = Φ(e_local(x), e_pos(x), e_global(X))

with word vectors ``v(w)`` from :mod:`retgen_ref.lm.word_vectors`:

``local``
    the paper's ``(1/r) Σ_k W_1 v(w_k) + b_1`` with ``W_1 = I``, ``b_1 = 0``: the mean
    word vector, blind to word order.
``positional``
    each word bound to its offset from the prediction point: the concatenation
    ``[v(w_r); ρ v(w_{r-1}); …; ρ^{r-1} v(w_1)]``. The paper's ``e_pos`` encodes the
    absolute position ``i`` of the context in its document, which is undefined for a
    pattern that occurs at many positions; the offset inside the context is the part of
    position that a pattern has, and ``ρ < 1`` makes recent words count more.
``global``
    the paper's attention over the document, with uniform weights over the ``history``
    tokens before the prediction point: their mean word vector. A stored pattern's global
    part is the mean over its occurrences.
``Φ`` (fusion)
    each part scaled to unit length and by ``√weight``, concatenated and normalised to a
    unit vector (§11.2). The inner product of two embeddings is then the weighted mean
    of the parts' cosines, ``Σ_part weight · cos_part / Σ weight``. The paper's fusion
    is a learned MLP with LayerNorm; nothing here is trained by gradient, so Φ keeps
    the parts' geometry instead of scrambling it with untrained weights.

The ablation in ``docs/04-retgen-lm.md`` measures what each part does to perplexity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PARTS = ("positional", "local", "global")


@dataclass
class ContextEncoder:
    """Maps contexts to unit vectors (§3.2). ``weights`` gives each part's share of Φ.

    Parameters
    ----------
    word_vectors : (V, d_w) float32
    weights : dict
        Part name → non-negative weight; parts with weight 0 are left out.
    decay : float
        ``ρ`` of the positional part.
    history : int
        Tokens averaged by the global part.
    """

    word_vectors: np.ndarray
    weights: dict = field(default_factory=lambda: {"positional": 1.0})
    decay: float = 0.85
    history: int = 64

    def __post_init__(self):
        unknown = set(self.weights) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown embedding parts {sorted(unknown)}; choose from {PARTS}")
        if not any(w > 0 for w in self.weights.values()):
            raise ValueError("at least one embedding part needs a positive weight")
        if not 0 < self.decay <= 1:
            raise ValueError(f"decay={self.decay} must be in (0, 1]")

    def _active(self) -> list[tuple[str, float]]:
        return [(p, self.weights[p]) for p in PARTS if self.weights.get(p, 0) > 0]

    @property
    def uses_history(self) -> bool:
        return self.weights.get("global", 0) > 0

    def dim(self, r: int) -> int:
        """Embedding dimension at resolution ``r``."""
        d_w = self.word_vectors.shape[1]
        return sum(d_w * r if p == "positional" else d_w for p, _ in self._active())

    def encode(self, contexts: np.ndarray, history: np.ndarray | None = None) -> np.ndarray:
        """Unit embeddings ``(N, dim(r))`` float32 of contexts ``(N, r)``.

        ``history`` ``(N, d_w)`` holds the global vectors (:meth:`history_vectors`); it is
        required when the global part is active.
        """
        contexts = np.asarray(contexts)
        n, r = contexts.shape
        pieces = []
        for part, weight in self._active():
            if part == "positional":
                vec = np.concatenate([self.word_vectors[contexts[:, r - 1 - j]] * self.decay ** j
                                      for j in range(r)], axis=1)
            elif part == "local":
                vec = self.word_vectors[contexts].mean(axis=1)
            else:
                if history is None:
                    raise ValueError("the global part needs the history vectors")
                vec = np.asarray(history, np.float32)
            pieces.append(_unit(vec) * np.float32(np.sqrt(weight)))
        return _unit(np.concatenate(pieces, axis=1))

    def history_vectors(self, stream: np.ndarray) -> np.ndarray:
        """Mean word vector of the ``history`` tokens before each position, ``(N, d_w)``."""
        vectors = self.word_vectors[np.asarray(stream)].astype(np.float64)
        prefix = np.zeros((len(stream) + 1, vectors.shape[1]))
        np.cumsum(vectors, axis=0, out=prefix[1:])
        end = np.arange(len(stream))
        start = np.maximum(end - self.history, 0)
        counts = np.maximum(end - start, 1)[:, None]
        return ((prefix[end] - prefix[start]) / counts).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    x = np.asarray(x, np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1)
