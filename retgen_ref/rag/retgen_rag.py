"""RAG-Sequence and RAG-Token with the RETGEN language model as generator
(``rag_math_notes_part5.md`` §1–2).

**Retriever.** For a query ``x`` a retriever (:mod:`.sparse`, :mod:`.dense`) returns ``k``
passages with scores ``s_z``; ``p_η`` is their softmax at temperature ``τ_η``,

    p_η(z | x) = exp(s_z / τ_η) / Σ_{z' ∈ top-k} exp(s_{z'} / τ_η),

normalised over the retrieved passages as the note's code computes it, so that the
marginals below sum to 1 (with §2's softmax over the whole corpus they sum to ``1 − ε``
and ``(1 − ε)^N``: ``retgen-ref verify``, ``rag_math_notes_part5/rag-sequence-token``).
``τ_η = ∞`` is the uniform ``p_η``.

**Generator.** ``p_θ(y_i | x, z, y_<i)`` is RETGEN's distribution with retrieval restricted
to passage ``z`` (:mod:`.passage_store`: ``P_{r,z}`` for each resolution ``r`` of
``passage_resolutions``, ``r = 0`` the passage's word frequencies) backed off to the whole
model ``P(y | x)``, by the model's confidence mixture
(:class:`~retgen_ref.lm.mixing.ConfidenceMixture`), from the longest resolution down:

    p_θ = λ_R(b_R) P_{R,z} + (1 − λ_R(b_R)) (… λ_0(b_0) P_{0,z} + (1 − λ_0(b_0)) P(y | x)),

``b_r = round(log2(1 + M_{r,z}))`` the bucket of the soft count of the retrieval in ``z``:
at ``r ≥ 1`` it grows with how closely the current context occurs in ``z``, at ``r = 0`` it
is the passage's length. ``p_θ > 0`` wherever ``P`` is, and ``p_θ(· | x, z, y_<i)`` sums to
1 over the vocabulary.

**Marginals** (§1):

    p_seq(y | x) = Σ_z p_η(z | x) Π_i p_θ(y_i | x, z, y_<i)
    p_tok(y | x) = Π_i Σ_z p_η(z | x) p_θ(y_i | x, z, y_<i)

**Fitting** (:meth:`RetgenRAG.fit`, on valid only): for each ``τ_η`` of a grid, and the
uniform ``p_η``, EM fits the λ's on the RAG-Token likelihood with the passage as latent
choice; the ``τ_η`` with the best valid RAG-Token likelihood is kept, and RAG-Sequence
uses the same generator and ``p_η``.

**Scoring a split** (:meth:`RetgenRAG.evaluate`): after its first ``query_window`` tokens
the split is cut into chunks of ``chunk`` tokens. Each chunk is an output sequence ``y``;
its query ``x`` is the ``query_window`` tokens before it, and the generator reads the
whole stream before each token, as the plain model does. The plain model is scored on the
same tokens.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .._validation import check_fits, check_int
from ..lm.generate import encode_prompt
from ..lm.mixing import ConfidenceMixture
from ..lm.model import Prediction
from .passage_store import PassageStore, context_queries, last_context_query

TAU_GRID = (np.inf,) + tuple(10.0 ** np.arange(-2.5, 1.75, 0.5))
_GRID_TOLERANCE = 1e-7   # EM tolerance while comparing τ_η; the kept one is refitted exactly
_STORE_CACHE = 512       # passage stores kept between chunks
# Scoring and fitting hold about 11 float64 arrays of (1 + R_z, tokens, k) (the components
# and the EM's work arrays): tracemalloc's peak over a fit was 84-107 bytes per cell for
# k = 400-50 (962 tokens, R_z = 3). Bytes per cell, for the memory check:
_BYTES_PER_CELL = 96
QUERY_WINDOW = 64        # default tokens of a query when scoring


def retriever_distribution(scores, tau: float = 1.0) -> np.ndarray:
    """``p_η(z | x)``: the softmax of each row's scores at temperature ``tau`` over the
    retrieved passages (padding, score ``−inf``, gets 0); ``tau = inf`` is uniform."""
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2:
        raise ValueError("scores must be (n_queries, k)")
    if not tau > 0:
        raise ValueError(f"tau={tau} must be > 0")
    found = np.isfinite(scores)
    if not found.any(axis=1).all():
        raise ValueError("a query retrieved no passage")
    logits = np.where(found, 0.0 if np.isinf(tau) else scores / tau, -np.inf)
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


@dataclass
class ChunkScores:
    """What the marginals need for the chunks of one stream (``n`` scored tokens).

    Attributes
    ----------
    base : (n,) the whole model's ``P(y_t | x_<t)``.
    passage_P, passage_M : (R_z, n, k) ``P_{r,z}(y_t | x_<t)`` and soft counts per passage.
    chunk_of : (n,) the chunk of each scored token.
    scores : (n_chunks, k) retrieval scores per chunk (``−inf`` for a missing passage).
    """

    base: np.ndarray
    passage_P: np.ndarray
    passage_M: np.ndarray
    chunk_of: np.ndarray
    scores: np.ndarray

    def components(self) -> tuple[np.ndarray, np.ndarray]:
        """``(P, M)`` of the generator's mixture, ``(1 + R_z, n·k)``: row 0 the whole model."""
        n, k = self.passage_P.shape[1:]
        base = np.repeat(self.base, k)[None]
        P = np.concatenate([base, self.passage_P.reshape(-1, n * k)])
        M = np.concatenate([np.full_like(base, np.inf), self.passage_M.reshape(-1, n * k)])
        return P, M


class RetgenRAG:
    """RAG over a passage collection with a fitted :class:`~retgen_ref.lm.RetgenLM` as generator.

    Parameters
    ----------
    model : the generator's language model.
    retriever : a fitted :class:`~.sparse.BM25Retriever`, :class:`~.sparse.TfidfRetriever`
        or :class:`~.dense.DenseRetriever` over ``passages``.
    passages : the collection, token-id arrays (e.g. ``corpus.paragraphs("train")``).
    k : passages retrieved per query; a ``k`` above ``len(passages)`` retrieves them all
        (``self.k`` is capped there, so the cost grows with the passages, not with ``k``).
    passage_resolutions : resolutions of the passage stores; default ``0`` and the model's.
    query_window, chunk : tokens of the query and of each output sequence when scoring.

    Examples
    --------
    >>> from retgen_ref.lm import RetgenLM, load_corpus
    >>> from retgen_ref.rag import BM25Retriever, RetgenRAG
    >>> corpus = load_corpus("austen").with_train_prefix(20_000)
    >>> model = RetgenLM(index="flat", resolutions=(1, 2)).fit(corpus)
    >>> passages = corpus.paragraphs("train")
    >>> bm25 = BM25Retriever().fit(passages, len(corpus.vocab))
    >>> rag = RetgenRAG(model, bm25, passages, k=3).fit(max_tokens=2_000)
    >>> log_seq, log_tok = rag.log_marginals("she was", "very happy .")
    >>> bool(log_seq < 0 and log_tok < 0)
    True
    """

    def __init__(self, model, retriever, passages, k: int = 5, passage_resolutions=None,
                 query_window: int = QUERY_WINDOW, chunk: int = 32):
        self.model, self.retriever, self.passages = model, retriever, list(passages)
        if getattr(retriever, "n_docs_", None) != len(self.passages):
            raise ValueError(f"the retriever indexes {getattr(retriever, 'n_docs_', 0)} "
                             f"documents but {len(self.passages)} passages were given; fit "
                             "it on the same passages")
        for i, passage in enumerate(self.passages):
            if not len(passage):
                raise ValueError(f"passage {i} is empty; every passage needs a token")
            try:
                model.token_stream(np.asarray(passage))
            except ValueError as err:
                raise ValueError(f"passage {i}: {err}") from None
        self.k = min(check_int(k, "k"), len(self.passages))
        self.query_window = check_int(query_window, "query_window")
        self.chunk = check_int(chunk, "chunk")
        resolutions = (0,) + tuple(model.levels) if passage_resolutions is None else \
            passage_resolutions
        self.passage_resolutions = tuple(sorted(
            {check_int(r, "passage resolution", minimum=0) for r in resolutions}))
        self._stores = OrderedDict()

    # -- the parts ----------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "mixture_"):
            raise ValueError("fit the RAG model first (RetgenRAG.fit on the valid split)")

    def retrieve(self, query) -> tuple[np.ndarray, np.ndarray]:
        """``(passage ids, p_η)`` of the ``k`` passages for one query (text, tokens or ids).

        An empty query, or one with no word of the vocabulary, is a ``ValueError``
        (:func:`~retgen_ref.lm.generate.encode_prompt`).
        """
        self._check_fitted()
        scores, ids = self.retriever.search([encode_prompt(self.model, query, "query")[0]],
                                            self.k)
        keep = ids[0] >= 0
        return ids[0][keep], retriever_distribution(scores, self.tau_eta_)[0][keep]

    def passage_store(self, passage_id: int) -> PassageStore:
        """The pattern stores of one passage (the last few hundred are kept)."""
        passage_id = check_int(passage_id, "passage id", minimum=0,
                               maximum=len(self.passages) - 1)
        store = self._stores.pop(passage_id, None)
        if store is None:
            store = PassageStore(self.model, self.passages[passage_id],
                                 self.passage_resolutions)
        self._stores[passage_id] = store
        if len(self._stores) > _STORE_CACHE:
            self._stores.popitem(last=False)
        return store

    def generator_distributions(self, context, passage_ids, base=None) -> np.ndarray:
        """``p_θ(· | context, z)`` over the whole vocabulary, one row per passage ``z``.

        ``base`` is the whole model's ``P(· | context)`` when the caller has it already.
        """
        self._check_fitted()
        ids = self.model.encode_context(context)
        queries = {r: last_context_query(self.model, ids, r) for r in self.passage_resolutions}
        base = self.model.next_token_distribution(ids) if base is None else base
        rows = []
        for passage_id in passage_ids:
            P, M = self.passage_store(passage_id).distributions(queries)
            w = self.mixture_.weights(np.concatenate([[np.inf], M])[:, None])[:, 0]
            rows.append(w[0] * base + w[1:] @ P)
        return np.array(rows).reshape(len(rows), len(base))

    # -- scoring ------------------------------------------------------------------------
    def score_chunks(self, stream: np.ndarray, starts, stops) -> ChunkScores:
        """Retrieval and every component for the chunks ``stream[start:stop]``."""
        n = int(np.subtract(stops, starts).sum())
        check_fits(_BYTES_PER_CELL * (1 + len(self.passage_resolutions)) * n * self.k,
                   f"scoring {n:,} tokens with k={self.k} passages each",
                   "retrieve fewer passages (k) or score fewer tokens (max_tokens)")
        model = self.model
        base = np.exp(model.log_prob(stream))
        queries = {r: context_queries(model, stream, r) for r in self.passage_resolutions}
        scores, passages = self.retriever.search(
            [stream[max(0, s - self.query_window):s] for s in starts], self.k)
        positions = np.concatenate([np.arange(s, e) for s, e in zip(starts, stops)])
        chunk_of = np.repeat(np.arange(len(starts)), np.subtract(stops, starts))
        n_res = len(self.passage_resolutions)
        P = np.zeros((n_res, len(positions), self.k))
        M = np.zeros_like(P)
        at = 0
        for c, (start, stop) in enumerate(zip(starts, stops)):
            span = slice(at, at + stop - start)
            part = {r: q[start:stop] for r, q in queries.items()}
            for j, passage_id in enumerate(passages[c]):
                if passage_id >= 0:
                    store = self.passage_store(passage_id)
                    P[:, span, j], M[:, span, j] = store.target_components(
                        part, stream[start:stop])
            at = span.stop
        return ChunkScores(base[positions], P, M, chunk_of, scores)

    def _generator(self, scored: ChunkScores, mixture) -> np.ndarray:
        """``p_θ(y_t | x, z_j, y_<t)`` for every scored token and passage, ``(n, k)``."""
        P, M = scored.components()
        return (mixture.weights(M) * P).sum(axis=0).reshape(len(scored.base), -1)

    def _marginals(self, scored: ChunkScores, mixture, tau: float):
        """``(log p_seq per chunk (n_chunks,), log p_tok per token (n,))``."""
        eta = retriever_distribution(scored.scores, tau)
        gen = self._generator(scored, mixture)
        log_tok = np.log((eta[scored.chunk_of] * gen).sum(axis=1))
        with np.errstate(divide="ignore"):
            joint = np.log(eta) + np.add.reduceat(np.log(gen), _chunk_starts(scored), axis=0)
        top = joint.max(axis=1, keepdims=True)
        log_seq = top[:, 0] + np.log(np.exp(joint - top).sum(axis=1))
        return log_seq, log_tok

    def _fit_mixture(self, scored: ChunkScores, tau: float, tolerance: float):
        P, M = scored.components()
        prior = retriever_distribution(scored.scores, tau)[scored.chunk_of].ravel()
        groups = np.repeat(np.arange(len(scored.base)), scored.passage_P.shape[2])
        return ConfidenceMixture().fit(P, M, prior=prior, groups=groups, tolerance=tolerance)

    def _chunks(self, stream: np.ndarray):
        starts = np.arange(self.query_window, len(stream), self.chunk)
        if not len(starts):
            raise ValueError(f"the stream has {len(stream)} tokens, none after the first "
                             f"query_window={self.query_window}")
        return starts, np.minimum(starts + self.chunk, len(stream))

    def _split(self, split, max_tokens):
        stream = self.model.token_stream(split)
        return stream if max_tokens is None else stream[:check_int(max_tokens, "max_tokens")]

    def fit(self, split="valid", max_tokens: int | None = None, tau_grid=TAU_GRID):
        """Fit ``τ_η`` and the generator's mixture on ``split`` (its first ``max_tokens``).

        ``fit_report_`` holds the RAG-Token perplexity of every ``τ_η`` of the grid (each
        with its own EM fit, to a looser tolerance) and of the kept one after its final fit.
        """
        taus = [float(t) for t in tau_grid]
        if not taus or not all(t > 0 for t in taus):
            raise ValueError("tau_grid needs at least one temperature, each > 0")
        stream = self._split(split, max_tokens)
        scored = self.score_chunks(stream, *self._chunks(stream))

        def token_ppl(mixture, tau):
            return float(np.exp(-self._marginals(scored, mixture, tau)[1].mean()))

        report = {tau: token_ppl(self._fit_mixture(scored, tau, _GRID_TOLERANCE), tau)
                  for tau in taus}
        self.tau_eta_ = min(report, key=report.get)
        self.mixture_ = self._fit_mixture(scored, self.tau_eta_, tolerance=1e-10)
        self.fit_report_ = {"tau_eta_ppl": report, "tokens": int(len(scored.base)),
                            "rag_token_ppl": token_ppl(self.mixture_, self.tau_eta_)}
        return self

    def chunk_log_probs(self, split="test", max_tokens: int | None = None) -> dict:
        """Per chunk of ``split``: its tokens, the log-probability of the chunk under the
        plain model, RAG-Token and RAG-Sequence (arrays of length ``n_chunks``), and the
        retrieval scores of its passages (``scores``, ``(n_chunks, k)``)."""
        self._check_fitted()
        stream = self._split(split, max_tokens)
        scored = self.score_chunks(stream, *self._chunks(stream))
        log_seq, log_tok = self._marginals(scored, self.mixture_, self.tau_eta_)
        starts = _chunk_starts(scored)
        return {"tokens": np.bincount(scored.chunk_of),
                "plain": np.add.reduceat(np.log(scored.base), starts),
                "rag_token": np.add.reduceat(log_tok, starts), "rag_sequence": log_seq,
                "scores": scored.scores}

    def evaluate(self, split="test", max_tokens: int | None = None) -> dict:
        """Perplexities of the plain model, RAG-Token and RAG-Sequence on the same tokens."""
        chunks = self.chunk_log_probs(split, max_tokens)
        n = int(chunks["tokens"].sum())
        return {**{f"{name}_ppl": float(np.exp(-chunks[name].sum() / n))
                   for name in ("plain", "rag_token", "rag_sequence")},
                "tokens": n, "chunks": int(len(chunks["tokens"]))}

    def log_marginals(self, x, y) -> tuple[float, float]:
        """``(log p_seq(y | x), log p_tok(y | x))`` for a query ``x`` and output ``y``.

        The passages are retrieved with the last ``query_window`` tokens of ``x``; ``y``
        is one chunk however long it is.
        """
        self._check_fitted()
        x, y = self.model.encode_context(x), self.model.encode_context(y)
        if not len(x) or not len(y):
            raise ValueError("x and y each need at least one token")
        stream = np.concatenate([x, y]).astype(np.int32)
        scored = self.score_chunks(stream, [len(x)], [len(stream)])
        log_seq, log_tok = self._marginals(scored, self.mixture_, self.tau_eta_)
        return float(log_seq[0]), float(log_tok.sum())

    # -- generation ---------------------------------------------------------------------
    def generate(self, query, max_tokens: int = 40, **decoding):
        """Retrieve passages for ``query`` and continue it by RAG-Token decoding:
        ``y_i`` from ``Σ_z p_η(z | x) p_θ(· | x, z, y_<i)`` with the
        :class:`~retgen_ref.lm.generate.Decoder` settings ``decoding``.

        Returns ``(Generation, passage ids, p_η)``.
        """
        from ..lm.generate import Decoder
        passage_ids, eta = self.retrieve(query)
        conditioned = _PassageConditioned(self, passage_ids, eta)
        return Decoder(**decoding).generate(conditioned, query, max_tokens), passage_ids, eta


def _chunk_starts(scored: ChunkScores) -> np.ndarray:
    return np.flatnonzero(np.diff(scored.chunk_of, prepend=-1))


class _PassageConditioned:
    """The RAG-Token next-token distribution for fixed passages, shaped like a model for
    :class:`~retgen_ref.lm.generate.Decoder` (``vocab``, ``encode_context``, ``predict``).

    ``predict`` returns the plain model's retrieval with the RAG distribution (the adaptive
    temperature reads its similarities), so it is no trace of the passages' part.
    """

    def __init__(self, rag: RetgenRAG, passage_ids, eta):
        self.rag, self.passage_ids, self.eta = rag, passage_ids, eta
        self.vocab, self.encode_context = rag.model.vocab, rag.model.encode_context

    def predict(self, context, interpolate: bool = False) -> Prediction:
        if interpolate:
            raise ValueError("RAG generation does not interpolate with KN-5")
        plain = self.rag.model.predict(context)
        dist = self.eta @ self.rag.generator_distributions(context, self.passage_ids,
                                                           plain.distribution)
        return Prediction(dist, plain.retrieved)
