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
from .pattern_index import INDEX_KINDS, Resolution, build_index
from .patterns import context_windows, extract_patterns, pattern_ids
from .word_vectors import word_vectors

SPLITS = ("train", "valid", "test")


@dataclass
class RetgenConfig:
    """Everything that defines a model before it sees data.

    The defaults are the configuration with the best valid perplexity in the ablation of
    ``benchmarks/bench_lm.py`` (``docs/04-retgen-lm.md`` §4.3).
    """

    resolutions: tuple = (1, 2, 3, 4)
    index: str = "hnsw"
    word_dim: int = 64
    window: int = 2
    embedding: dict = field(default_factory=lambda: {"positional": 1.0})
    decay: float = 0.85
    history: int = 64
    k_max: int = 128
    mixture: str = "confidence"
    seed: int = 0

    def __post_init__(self):
        self.resolutions = tuple(sorted(check_int(r, "resolution") for r in self.resolutions))
        if not self.resolutions or len(set(self.resolutions)) != len(self.resolutions):
            raise ValueError("resolutions must be distinct positive integers, e.g. (1, 2, 3, 4)")
        if self.index not in INDEX_KINDS:
            raise ValueError(f"index={self.index!r}; choose one of {INDEX_KINDS}")
        if self.mixture not in ("confidence", "em", "paper"):
            raise ValueError(f"mixture={self.mixture!r}; choose 'confidence', 'em' or 'paper'")
        check_int(self.k_max, "k_max")


@dataclass
class Retrieved:
    """What one resolution retrieved for one query (for traces and the demo)."""

    resolution: int
    patterns: list          # (P_i, r) token ids of each retrieved pattern
    similarity: np.ndarray  # s_i
    weight: np.ndarray      # normalised kernel weight of each pattern in P_r
    mixture_weight: float   # w_r(x)


class RetgenLM:
    """The RETGEN language model: a vector database of corpus patterns (§11.1).

    Examples
    --------
    >>> from retgen_ref.lm import RetgenLM, load_corpus
    >>> model = RetgenLM(index="flat").fit(load_corpus("austen"))  # doctest: +SKIP
    >>> model.perplexity("test")                                   # doctest: +SKIP
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
        history = self.encoder.history_vectors(train) if self.encoder.uses_history else None
        self.levels, self.pattern_history = {}, {}
        for r in cfg.resolutions:
            say(f"patterns and index, resolution {r}")
            table = extract_patterns(train, r)
            self.pattern_history[r] = self._pattern_history(table, train, history)
            vectors = self.encoder.encode(table.contexts, self.pattern_history[r])
            self.levels[r] = Resolution(table, build_index(cfg.index, vectors, cfg.seed))
        self.build_seconds_ = time.perf_counter() - start
        say("fitting tau, k and the mixture on valid")
        fit_on_valid(self)
        self.train_seconds_ = time.perf_counter() - start
        return self

    def _pattern_history(self, table, train, history):
        """Global part of each stored pattern: the mean history vector of its occurrences."""
        if history is None:
            return None
        occurrence = pattern_ids(table, context_windows(train, table.resolution))
        sums = np.zeros((len(table), history.shape[1]))
        np.add.at(sums, occurrence, history)
        return (sums / table.totals[:, None]).astype(np.float32)

    # -- retrieval ----------------------------------------------------------------------
    def _queries(self, stream: np.ndarray, r: int) -> np.ndarray:
        history = self.encoder.history_vectors(stream) if self.encoder.uses_history else None
        return self.encoder.encode(context_windows(stream, r), history)

    def search_stream(self, stream: np.ndarray, k: int) -> dict:
        """Per resolution, the ``k`` nearest patterns to the context of every position."""
        return {r: level.search(self._queries(stream, r), k) for r, level in self.levels.items()}

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

    # -- scoring ------------------------------------------------------------------------
    def _stream(self, split) -> np.ndarray:
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
        stream = self._stream(split)
        P, M = self.components(stream)
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
        fitted mixture of the resolutions (``test_ppl_mixture``).
        """
        def ppl(prob):
            return float(np.exp(-np.log(prob).mean()))

        out = {}
        for split in ("valid", "test"):
            start = time.perf_counter()
            stream = self.splits[split]
            P, M = self.components(stream)
            out[f"{split}_ppl"] = ppl(self._target_prob(P, M, stream, False))
            out[f"{split}_ppl_interpolated"] = ppl(self._target_prob(P, M, stream, True))
            out[f"{split}_ppl_mixture"] = {
                name: ppl(self._target_prob(P, M, stream, False, mixture_from_params(params)))
                for name, params in self.fit_report_["mixtures"].items()}
            out[f"eval_{split}_s"] = time.perf_counter() - start
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
        return self._stream(np.asarray(context, np.int64).reshape(-1))

    def _retrieve_one(self, ids: np.ndarray):
        """Per resolution: search results and the full ``P_r`` for the end of ``ids``."""
        stream = np.append(ids, 0).astype(np.int32)  # a dummy target after the context
        out = []
        for r, level in self.levels.items():
            query = self._queries(stream, r)[-1:]
            sims, hit = level.search(query, self.k_)
            dist, mass = level.distribution(sims[0], hit[0], self.tau_, len(self.vocab))
            out.append((r, sims[0], hit[0], dist, mass))
        return out

    def next_token_distribution(self, context, interpolate: bool = False) -> np.ndarray:
        """``P(· | context)`` over the whole vocabulary, shape ``(V,)``, sums to 1, no zero."""
        ids = self.encode_context(context)
        found = self._retrieve_one(ids)
        P = np.array([self.unigram.distribution(ids)] + [f[3] for f in found])
        M = np.array([[np.inf]] + [[f[4]] for f in found])
        dist = self.mixture_.weights(M)[:, 0] @ P
        if interpolate:
            dist = (1 - self.alpha_) * dist + self.alpha_ * self.kn5.distribution(ids)
        return dist

    def retrieve(self, context) -> list[Retrieved]:
        """The patterns behind ``next_token_distribution(context)``, per resolution."""
        ids = self.encode_context(context)
        found = self._retrieve_one(ids)
        M = np.array([[np.inf]] + [[f[4]] for f in found])
        mix = self.mixture_.weights(M)[:, 0]
        out = []
        for j, (r, sims, hit, _, _) in enumerate(found):
            keep = hit >= 0
            sims, hit = sims[keep], hit[keep]
            level = self.levels[r]
            w = level.totals[hit] * np.exp((sims - sims.max()) / self.tau_) if len(hit) else sims
            out.append(Retrieved(r, [level.table.contexts[i] for i in hit], sims,
                                 w / w.sum() if len(w) else w, float(mix[j + 1])))
        return out

    @property
    def n_patterns(self) -> int:
        return sum(len(level.table) for level in self.levels.values())

    @property
    def nbytes(self) -> dict:
        """Bytes of the pattern tables and of the indexes."""
        return {"patterns": sum(level.table.nbytes for level in self.levels.values()),
                "index": sum(level.index.nbytes for level in self.levels.values())}

    # -- persistence --------------------------------------------------------------------
    def save(self, path) -> None:
        from .storage import save_model
        save_model(self, path)

    @classmethod
    def load(cls, path) -> "RetgenLM":
        from .storage import load_model
        return load_model(path)
