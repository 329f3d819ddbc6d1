"""The RETGEN language model (``retgen.md`` §3, §4, §11.1).

Training is indexing (§5.2, §11.1): for each resolution ``r`` every distinct context of
``r`` tokens is stored with its next-token counts and its context embedding. Predicting
the token after a history ``x`` retrieves, per resolution, the ``k`` stored patterns
nearest to ``e(x)`` and mixes their next-token distributions (:mod:`.kernels`):

    P_r(y | x) = Σ_i n(p_i) exp(s_i/τ) P_emp(y | p_i) / Σ_i n(p_i) exp(s_i/τ)   (§4.4)

then mixes the resolutions with the floor ``P_0`` (add-one unigram, so no word ever gets
zero probability) using the weights of :mod:`.mixing` (§4.3):

    P(y | x) = Σ_r w_r(x) P_r(y | x).

``τ``, ``k`` and the weights are fitted on the valid split only (:mod:`.tuning`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .._validation import check_int
from .corpus import Corpus
from .embed import ContextEncoder
from .mixing import mixture_from_params
from .ngram import KneserNeyLM, UnigramLM
from .pattern_index import Resolution, build_index, check_index_params
from .patterns import context_windows, extract_patterns, pattern_ids
from .word_vectors import word_vectors

SPLITS = ("train", "valid", "test")
POLICIES = ("none", "direct", "reinforce")


@dataclass
class RetgenConfig:
    """Everything that defines a model before it sees data.

    The defaults are the configuration with the best valid perplexity in the ablation of
    ``benchmarks/bench_lm.py`` (``docs/04-retgen-lm.md`` §4.3).

    Attributes
    ----------
    resolutions : context lengths ``r`` with a pattern store each (§4.3).
    index : ``"flat"`` (exact), ``"hnsw"`` or ``"ivfpq"`` (:mod:`.pattern_index`).
    index_params : settings of that index kind, e.g. ``{"nprobe": 32, "refine_k": 256}``
        for ivfpq (:data:`~.pattern_index.INDEX_PARAMS`).
    word_dim, window : PPMI-SVD word vectors (:mod:`.word_vectors`).
    embedding, decay, history : the context embedding's parts, the positional part's
        slot decay ``ρ`` and the global part's window (:mod:`.embed`).
    k_max : most patterns retrieved; ``k ≤ k_max`` and ``τ`` are fitted on valid.
    mixture : ``"confidence"``, ``"em"`` or ``"paper"`` (:mod:`.mixing`).
    decay_rate : ``λ`` of the drift weights ``e^{−λ·age}`` of online updates (§9.2).
    rerank : learn the energy-based reranker of ``retgen_v2.md`` §5 on valid
        (:class:`~retgen_ref.v2.rerank.EnergyReranker`) and weight the retrieved patterns
        by it.
    policy : ``"none"``, or learn the retrieval policy of ``retgen_v2.md`` §3 on valid
        (:class:`~retgen_ref.v2.policy.RetrievalPolicy`) with ``"direct"`` gradients or
        ``"reinforce"``; it chooses ``k``, ``τ`` and the diversity weight per query, over
        the reranker's energy when ``rerank`` is on.
    seed : for the SVD start vector, the index and the policy.
    """

    resolutions: tuple = (1, 2, 3, 4)
    index: str = "hnsw"
    index_params: dict = field(default_factory=dict)
    word_dim: int = 64
    window: int = 2
    embedding: dict = field(default_factory=lambda: {"positional": 1.0})
    decay: float = 0.85
    history: int = 64
    k_max: int = 128
    mixture: str = "confidence"
    decay_rate: float = 0.0
    rerank: bool = False
    policy: str = "none"
    seed: int = 0

    def __post_init__(self):
        self.resolutions = tuple(sorted(check_int(r, "resolution") for r in self.resolutions))
        if not self.resolutions or len(set(self.resolutions)) != len(self.resolutions):
            raise ValueError("resolutions must be distinct positive integers, e.g. (1, 2, 3, 4)")
        self.index_params = check_index_params(self.index, self.index_params)
        if self.mixture not in ("confidence", "em", "paper"):
            raise ValueError(f"mixture={self.mixture!r}; choose 'confidence', 'em' or 'paper'")
        check_int(self.k_max, "k_max")
        if not (np.isfinite(self.decay_rate) and self.decay_rate >= 0):
            raise ValueError(f"decay_rate={self.decay_rate} must be a finite number >= 0")
        if not isinstance(self.rerank, bool):
            raise ValueError(f"rerank={self.rerank!r} must be True or False")
        if self.policy not in POLICIES:
            raise ValueError(f"policy={self.policy!r}; choose one of {POLICIES}")


@dataclass
class Retrieved:
    """What one resolution retrieved for one query (for traces and the demo)."""

    resolution: int
    ids: np.ndarray         # rows of the retrieved patterns in the resolution's table
    patterns: np.ndarray    # (k, r) their token ids
    similarity: np.ndarray  # s_i
    weight: np.ndarray      # a_i of each in P_r: n(p_i) exp(s_i/τ) normalised, or the v2 reweighting's
    mixture_weight: float   # w_r(x)


@dataclass
class Prediction:
    """A next-token distribution and the retrieval behind it."""

    distribution: np.ndarray  # (V,)
    retrieved: list           # one Retrieved per resolution, shortest first


class RetgenLM:
    """The RETGEN language model: a vector database of corpus patterns (§11.1).

    Examples
    --------
    A quick model on the first 20,000 training tokens (``RetgenLM()`` on the whole corpus
    is the measured default, ``docs/04-retgen-lm.md``):

    >>> from retgen_ref.lm import RetgenLM, load_corpus
    >>> corpus = load_corpus("austen").with_train_prefix(20_000)
    >>> model = RetgenLM(index="flat", resolutions=(1, 2)).fit(corpus)
    >>> dist = model.next_token_distribution("she could not")
    >>> round(float(dist.sum()), 9), bool(dist.min() > 0)
    (1.0, True)
    >>> model.perplexity("test") < model.unigram.perplexity(corpus.test)
    True
    """

    def __init__(self, **config):
        self.config = RetgenConfig(**config)

    # -- training -----------------------------------------------------------------------
    def fit(self, corpus: Corpus, progress=None) -> "RetgenLM":
        """Index the training split, then fit τ, k and the mixture on the valid split."""
        from .tuning import fit_on_valid
        say = progress or (lambda message: None)
        cfg = self.config
        start = time.perf_counter()
        self.vocab, self.corpus_name = corpus.vocab, corpus.name
        self.splits = {name: corpus.split(name) for name in SPLITS}
        if not len(self.splits["valid"]):
            raise ValueError(f"corpus {corpus.name!r} has an empty valid split, which the "
                             "model needs to fit tau, k and the mixture; give it more "
                             "paragraphs (the last 10% of each document are valid and test)")
        train, V = self.splits["train"], len(self.vocab)
        say("word vectors")
        # A tiny corpus may have fewer words than dimensions; the SVD needs dim < V.
        self.word_vectors = word_vectors(train, V, min(cfg.word_dim, V - 1), cfg.window,
                                         seed=cfg.seed)
        self.encoder = ContextEncoder(self.word_vectors, dict(cfg.embedding), cfg.decay,
                                      cfg.history)
        self.unigram = UnigramLM().fit(train, V)
        self.kn5 = KneserNeyLM(5).fit(train, V)
        self._build_levels([train], say)
        say("fitting tau, k and the mixture on valid")
        fit_on_valid(self)
        self.reweighting_ = self._fit_reweighting(say)
        self.train_seconds_ = time.perf_counter() - start
        return self

    def _fit_reweighting(self, say):
        """The v2 reranker and/or retrieval policy of the configuration, fitted on valid."""
        reweighting = None
        if self.config.rerank:
            from ..v2.rerank import EnergyReranker
            say("energy reranker on valid")
            reweighting = EnergyReranker().fit(self)
        if self.config.policy != "none":
            from ..v2.policy import RetrievalPolicy
            say(f"retrieval policy on valid ({self.config.policy})")
            reweighting = RetrievalPolicy(method=self.config.policy,
                                          seed=self.config.seed).fit(self, reweighting)
        return reweighting

    def _build_levels(self, segments: list, say=lambda message: None) -> None:
        """Pattern tables and indexes of every resolution from training token streams."""
        self.levels, self.pattern_history = {}, {}
        for r in self.config.resolutions:
            say(f"patterns and index, resolution {r}")
            table = extract_patterns(segments, r)
            self.pattern_history[r] = self.pattern_history_vectors(table, segments)
            vectors = self.encoder.encode(table.contexts, self.pattern_history[r])
            index = build_index(self.config.index, vectors, self.config.seed,
                                **self.config.index_params)
            self.levels[r] = Resolution(table, index)
        self.clock_ = 0.0

    def pattern_history_vectors(self, table, segments: list):
        """Global part of each stored pattern: the mean history vector of its occurrences."""
        if not self.encoder.uses_history:
            return None
        sums = np.zeros((len(table), self.word_vectors.shape[1]))
        for stream in segments:
            occurrence = pattern_ids(table, context_windows(stream, table.resolution))
            np.add.at(sums, occurrence, self.encoder.history_vectors(stream))
        return (sums / table.totals[:, None]).astype(np.float32)

    # -- retrieval ----------------------------------------------------------------------
    def context_queries(self, stream: np.ndarray, r: int) -> np.ndarray:
        """``e(x_t)`` of the ``r`` tokens before every position of ``stream``, ``(N, dim)``."""
        history = self.encoder.history_vectors(stream) if self.encoder.uses_history else None
        return self.encoder.encode(context_windows(stream, r), history)

    def search_stream(self, stream: np.ndarray, k: int) -> dict:
        """Per resolution, the ``k`` nearest patterns to the context of every position."""
        return {r: level.search(self.context_queries(stream, r), k)
                for r, level in self.levels.items()}

    def components(self, stream: np.ndarray, hits: dict | None = None, k=None, tau=None):
        """``(P, M)`` of :mod:`.mixing` for every position of ``stream`` (row 0: floor)."""
        k = self.k_ if k is None else k
        tau = self.tau_ if tau is None else tau
        hits = self.search_stream(stream, k) if hits is None else hits
        P = [np.exp(self.unigram.log_prob(stream))]
        M = [np.full(len(stream), np.inf)]
        for r, level in self.levels.items():
            sims, ids = hits[r]
            prob, mass = level.target_probabilities(sims, ids, k, tau, stream)
            P.append(prob)
            M.append(mass)
        return np.array(P), np.array(M)

    def scored_components(self, stream: np.ndarray, reweighting="fitted"):
        """``(P, M)`` as the model scores ``stream``: :meth:`components`, with each
        ``P_r(y_t) = Σ_i a_i P_emp(y_t | p_i)`` re-weighted by the v2 reranker or policy.

        ``reweighting`` defaults to the model's own (``reweighting_``, None when the
        configuration has neither); the mixture weights keep the kernel's soft counts ``M``.
        """
        reweighting = self.reweighting_ if reweighting == "fitted" else reweighting
        if reweighting is None:
            return self.components(stream)
        hits = self.search_stream(stream, reweighting.search_k_)
        P, M = self.components(stream, hits)
        queries = self.context_queries(stream, max(self.levels))
        for row, (r, level) in enumerate(self.levels.items(), start=1):
            sims, ids = hits[r]
            a = reweighting.weights(self, r, sims, ids, queries)
            P[row] = (a * level.pattern_probabilities(ids, stream)).sum(axis=1)
        return P, M

    # -- scoring ------------------------------------------------------------------------
    def token_stream(self, split) -> np.ndarray:
        """The int32 ids of a split name, or ``split`` itself checked as ids of the vocabulary."""
        if isinstance(split, str):
            if split not in SPLITS:
                raise ValueError(f"split={split!r}; choose one of {SPLITS} or pass token ids")
            return self.splits[split]
        stream = np.asarray(split)
        if stream.ndim != 1 or not np.issubdtype(stream.dtype, np.integer):
            raise ValueError("pass a split name or a 1-D array of token ids")
        if len(stream) and (stream.min() < 0 or stream.max() >= len(self.vocab)):
            raise ValueError(f"token ids must be in [0, {len(self.vocab)}); map unknown words "
                             "to 0 (<unk>) with model.vocab.encode")
        return stream.astype(np.int32)

    def log_prob(self, split, interpolate: bool = False) -> np.ndarray:
        """Natural-log probability of every token of a split (or id stream).

        ``interpolate=True`` scores ``(1 − α) P_RETGEN + α P_KN5`` with ``α`` fitted on
        valid (kNN-LM style).
        """
        stream = self.token_stream(split)
        P, M = self.scored_components(stream)
        return np.log(self._target_prob(P, M, stream, interpolate))

    def _target_prob(self, P, M, stream, interpolate: bool, mixture=None) -> np.ndarray:
        prob = ((mixture or self.mixture_).weights(M) * P).sum(axis=0)
        if interpolate:
            prob = (1 - self.alpha_) * prob + self.alpha_ * np.exp(self.kn5.log_prob(stream))
        return prob

    def perplexity(self, split, interpolate: bool = False) -> float:
        """``exp(−mean log P)`` over every token of the split, ``<unk>`` and ``<eos>`` included."""
        return float(np.exp(-self.log_prob(split, interpolate).mean()))

    def evaluate(self) -> dict:
        """Perplexities of the model, its KN-5 interpolation and the baselines, valid and test.

        One retrieval pass per split; ``eval_s`` is the seconds spent on the test split
        (retrieval, mixing and the interpolated score). Also the test perplexity under each
        fitted mixture of the resolutions (``test_ppl_mixture``), and with a v2 reranker or
        policy the perplexity of the kernel weights alone (``test_ppl_kernel``).
        """
        def ppl(prob):
            return float(np.exp(-np.log(prob).mean()))

        out = {}
        for split in ("valid", "test"):
            start = time.perf_counter()
            stream = self.splits[split]
            P, M = self.scored_components(stream)
            out[f"{split}_ppl"] = ppl(self._target_prob(P, M, stream, False))
            out[f"{split}_ppl_interpolated"] = ppl(self._target_prob(P, M, stream, True))
            out[f"{split}_ppl_mixture"] = {
                name: ppl(self._target_prob(P, M, stream, False, mixture_from_params(params)))
                for name, params in self.fit_report_["mixtures"].items()}
            out[f"eval_{split}_s"] = time.perf_counter() - start
            if self.reweighting_ is not None:
                out[f"{split}_ppl_kernel"] = ppl(
                    self._target_prob(*self.components(stream), stream, False))
            out[f"kn5_{split}_ppl"] = self.kn5.perplexity(stream)
            out[f"unigram_{split}_ppl"] = self.unigram.perplexity(stream)
        out["eval_s"] = out.pop("eval_test_s")
        return out

    # -- one context --------------------------------------------------------------------
    def encode_context(self, context) -> np.ndarray:
        """Token ids of a context given as text, a token list or ids (unknown → ``<unk>``)."""
        from .tokenize import tokenize
        if isinstance(context, str):
            return self.vocab.encode(tokenize(context))
        context = list(context)
        if context and isinstance(context[0], str):
            return self.vocab.encode(context)
        return self.token_stream(np.asarray(context, np.int64).reshape(-1))

    def last_context_query(self, ids: np.ndarray, r: int) -> np.ndarray:
        """Embedding of the context at the end of ``ids`` (only its tail is read)."""
        tail = ids[-(max(r, self.config.history) + 1):] if len(ids) else ids
        stream = np.append(tail, 0).astype(np.int32)  # a dummy target after the context
        return self.context_queries(stream, r)[-1:]

    def predict(self, context, interpolate: bool = False) -> Prediction:
        """``P(· | context)`` with the patterns it was retrieved from (one search per level).

        ``context`` is text, a token list or token ids; unknown words become ``<unk>``.
        """
        ids = self.encode_context(context)
        rw, V = self.reweighting_, len(self.vocab)
        longest = self.last_context_query(ids, max(self.levels)) if rw is not None else None
        P, masses, retrieved = [self.unigram.distribution(ids)], [np.inf], []
        for r, level in self.levels.items():
            sims, hit = level.search(self.last_context_query(ids, r),
                                     self.k_ if rw is None else rw.search_k_)
            dist, mass = level.distribution(sims[0, :self.k_], hit[0, :self.k_], self.tau_, V)
            if rw is None:
                keep = hit[0, :self.k_] >= 0
                sims, hit = sims[0, :self.k_][keep], hit[0, :self.k_][keep]
                w = level.totals[hit] * np.exp((sims - sims.max()) / self.tau_) \
                    if len(hit) else sims
                w = w / w.sum() if len(w) else w
            else:
                w = rw.weights(self, r, sims, hit, longest)[0]
                dist = level.weighted_distribution(hit[0], w, V)
                keep = w > 0
                sims, hit, w = sims[0][keep], hit[0][keep], w[keep]
            P.append(dist)
            masses.append(mass)
            retrieved.append(Retrieved(r, hit, level.table.contexts[hit], sims, w, 0.0))
        mix = self.mixture_.weights(np.array(masses)[:, None])[:, 0]
        for found, weight in zip(retrieved, mix[1:]):
            found.mixture_weight = float(weight)
        dist = mix @ np.array(P)
        if interpolate:
            dist = (1 - self.alpha_) * dist + self.alpha_ * self.kn5.distribution(ids)
        return Prediction(dist, retrieved)

    def next_token_distribution(self, context, interpolate: bool = False) -> np.ndarray:
        """``P(· | context)`` over the whole vocabulary, shape ``(V,)``, sums to 1, no zero."""
        return self.predict(context, interpolate).distribution

    def retrieve(self, context) -> list[Retrieved]:
        """The patterns behind ``next_token_distribution(context)``, per resolution."""
        return self.predict(context).retrieved

    def pattern_next_probability(self, resolution: int, ids, token: int) -> np.ndarray:
        """``P_emp(token | p_i)`` for the stored patterns ``ids`` of a resolution."""
        return self.levels[resolution].pattern_probabilities(np.asarray(ids)[None], [token])[0]

    # -- generation and online learning (§9, §11) -----------------------------------------
    def generate(self, prompt, max_tokens: int = 40, trace: bool = False,
                 interpolate: bool = False, **decoding):
        """Continue ``prompt``: a :class:`~.generate.Generation`.

        ``decoding`` are :class:`~.generate.Decoder` settings (strategy, temperature, ...).
        An empty prompt, or one with no word of the vocabulary, is a ``ValueError``; the
        prompt's other unknown words read as ``<unk>`` and are listed in the result's
        ``unknown_words`` (:func:`~.generate.encode_prompt`).
        """
        from .generate import Decoder
        return Decoder(**decoding).generate(self, prompt, max_tokens, trace, interpolate)

    def add_documents(self, texts, timestamp: float | None = None) -> dict:
        """Learn new documents (a list of texts) in place, §9.1; see :mod:`.online`.

        The summary of :meth:`add_token_streams` also lists the ``unknown_words``: the
        vocabulary is fixed at training, so words outside it are learned as ``<unk>``.
        """
        from .online import encode_documents
        if isinstance(texts, str):
            texts = [texts]
        if not all(isinstance(text, str) for text in texts):
            raise TypeError("texts must be a string or a list of strings")
        streams, unknown = encode_documents(self.vocab, texts)
        return {**self.add_token_streams(streams, timestamp), "unknown_words": unknown}

    def add_token_streams(self, streams: list, timestamp: float | None = None) -> dict:
        """Learn new documents given as token-id streams in place (§9.1, §9.2).

        Returns the numbers of ``documents``, ``tokens`` and ``unknown_tokens`` (``<unk>``)
        added and the ``new_patterns`` per resolution. No documents at all is refused unless
        a ``timestamp`` lets time pass (§9.2); documents with no token are refused.
        """
        from .online import add_streams
        return add_streams(self, streams, timestamp)

    @property
    def n_patterns(self) -> int:
        return sum(len(level.table) for level in self.levels.values())

    @property
    def nbytes(self) -> dict:
        """Bytes of the pattern tables and of the indexes."""
        return {"patterns": sum(level.table.nbytes for level in self.levels.values()),
                "index": sum(level.index.nbytes for level in self.levels.values())}

    # -- persistence --------------------------------------------------------------------
    def save(self, path, *, make_parents: bool = False) -> None:
        """Write the model into the folder ``path`` (created if needed; its parent must
        exist unless ``make_parents``); reopen it with :meth:`load`."""
        from .storage import save_model
        save_model(self, path, make_parents=make_parents)

    @classmethod
    def load(cls, path) -> "RetgenLM":
        from .storage import load_model
        return load_model(path)
