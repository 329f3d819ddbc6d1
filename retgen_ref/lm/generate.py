"""Generating text with RETGEN, with the retrieval trace of every token (``retgen.md`` §11).

Each step asks the model for ``P(· | x_{<t})`` and the patterns it retrieved
(:meth:`RetgenLM.predict`), reshapes the distribution, and picks a token:

``greedy``
    ``y_t = argmax_y P(y | x_{<t})`` — the inference rule of §11.1.
``sample``
    draw from ``P^{1/T}`` (temperature ``T``), optionally cut to the ``top_k`` most
    probable tokens and/or the smallest set whose mass reaches ``top_p`` (nucleus).
``adaptive``
    sampling whose temperature follows the retrieval confidence (§11.2): with ``c`` the
    best similarity retrieved at the longest resolution, ``T = T_low + (T − T_low)(1 − c)``
    — sharp where the context is found in the store, freer where it is not.
``beam``
    beam search (§11.2): ``beam_width`` hypotheses scored by the sum of their tokens'
    log-probabilities under the pattern mixture; the best one is returned.

A repetition penalty ``ρ ≥ 1`` (§11.2's diversity penalty) divides the probability of each
token by ``ρ^m``, ``m`` its count among the last ``penalty_window`` generated tokens, then
renormalises. All randomness comes from ``np.random.default_rng(seed)``: the same seed
gives the same text.

The vocabulary is fixed at training: a prompt word outside it reads as ``<unk>``
(:func:`encode_prompt`). A prompt with no token, or with no word the model knows, is refused;
otherwise the words read as ``<unk>`` are listed in :attr:`Generation.unknown_words`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .._validation import check_int
from .tokenize import UNK, tokenize

STRATEGIES = ("greedy", "sample", "adaptive", "beam")


@dataclass
class TraceStep:
    """One generated token and the top patterns behind it."""

    token: str
    prob: float
    patterns: list  # dicts: text, resolution, weight (share of P), next_token_prob

    def to_dict(self) -> dict:
        return {"token": self.token, "prob": self.prob, "patterns": self.patterns}


def encode_prompt(model, prompt, what: str = "prompt") -> tuple[np.ndarray, list[str]]:
    """Token ids of a prompt (text, a token list or ids) for ``model`` (anything with
    ``vocab`` and ``encode_context``), and its distinct words outside the vocabulary, which
    read as ``<unk>``, in order of first appearance.

    Raises ``ValueError`` for a prompt with no token, or whose every word is outside the
    vocabulary (the model could only continue ``<unk>``); ``what`` names the prompt in the
    message. Ids carry no words, so an id prompt is only checked for being non-empty.
    """
    tokens = tokenize(prompt) if isinstance(prompt, str) else list(prompt)
    ids = model.encode_context(tokens)
    if not len(ids):
        raise ValueError(f"the {what} is empty; give at least one word to continue")
    unknown = list(dict.fromkeys(t for t in tokens
                                 if isinstance(t, str) and t not in model.vocab))
    if unknown and np.all(ids == UNK):
        raise ValueError(f"no word of the {what} is in the model's vocabulary "
                         f"({quoted(unknown)}); the vocabulary is fixed at training, so use "
                         "words of the training corpus or retrain on text that has them")
    return ids, unknown


def quoted(words: list, most: int = 8) -> str:
    """The first ``most`` words, quoted and comma-separated (``...`` when there are more)."""
    shown = ", ".join(repr(w) for w in words[:most])
    return shown + (", ..." if len(words) > most else "")


@dataclass
class Generation:
    """Generated text (prompt excluded), its token ids, the trace when asked for, and the
    prompt's words outside the vocabulary, read as ``<unk>``."""

    text: str
    tokens: list
    ids: np.ndarray
    trace: list = field(default_factory=list)
    seconds: float = 0.0
    unknown_words: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"text": self.text, "tokens": self.tokens,
                "trace": [step.to_dict() for step in self.trace]}


@dataclass
class Decoder:
    """Decoding settings; :meth:`generate` runs them on a model (module docstring)."""

    strategy: str = "greedy"
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    low_temperature: float = 0.3
    repetition_penalty: float = 1.0
    penalty_window: int = 32
    beam_width: int = 4
    seed: int = 0

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy={self.strategy!r}; choose one of {STRATEGIES}")
        if not self.temperature > 0 or not 0 < self.low_temperature <= self.temperature:
            raise ValueError("temperatures must satisfy 0 < low_temperature <= temperature")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p} must be in (0, 1]")
        if self.repetition_penalty < 1:
            raise ValueError(f"repetition_penalty={self.repetition_penalty} must be >= 1")
        check_int(self.top_k, "top_k", minimum=0)
        check_int(self.beam_width, "beam_width")
        check_int(self.penalty_window, "penalty_window")

    # -- shaping one distribution ---------------------------------------------------------
    def penalised(self, dist: np.ndarray, generated: list) -> np.ndarray:
        """``P(y) / ρ^{m(y)}``, renormalised (the repetition penalty)."""
        if self.repetition_penalty == 1 or not generated:
            return dist
        recent = np.bincount(generated[-self.penalty_window:], minlength=len(dist))
        out = dist / self.repetition_penalty ** recent
        return out / out.sum()

    def shaped(self, dist: np.ndarray, temperature: float) -> np.ndarray:
        """Temperature, then top-k and top-p truncation, renormalised."""
        logits = np.log(dist) / temperature
        out = np.exp(logits - logits.max())
        if self.top_k and self.top_k < len(out):
            out[np.argsort(out)[:-self.top_k]] = 0
        if self.top_p < 1:
            order = np.argsort(out)[::-1]
            mass = np.cumsum(out[order]) / out.sum()
            out[order[np.searchsorted(mass, self.top_p) + 1:]] = 0
        return out / out.sum()

    def temperature_for(self, prediction) -> float:
        """The adaptive temperature from the best similarity at the longest resolution."""
        if self.strategy != "adaptive":
            return self.temperature
        sims = prediction.retrieved[-1].similarity
        confidence = float(np.clip(sims.max(), 0, 1)) if len(sims) else 0.0
        return self.low_temperature + (self.temperature - self.low_temperature) * (
            1 - confidence)

    # -- decoding -----------------------------------------------------------------------
    def generate(self, model, prompt, max_tokens: int = 40, trace: bool = False,
                 interpolate: bool = False, trace_patterns: int = 3) -> Generation:
        """Continue ``prompt`` (text, tokens or ids; :func:`encode_prompt`) by ``max_tokens``
        tokens."""
        check_int(max_tokens, "max_tokens")
        start = time.perf_counter()
        ids, unknown = encode_prompt(model, prompt)
        context = ids.tolist()
        if self.strategy == "beam":
            ids = self._beam(model, context, max_tokens, interpolate)
        else:
            ids = self._sample(model, context, max_tokens, interpolate)
        seconds = time.perf_counter() - start
        steps = trace_of(model, context, ids, interpolate, trace_patterns) if trace else []
        ids = np.array(ids, np.int64)
        return Generation(model.vocab.detokenize(ids), model.vocab.decode(ids), ids, steps,
                          seconds, unknown)

    def _sample(self, model, context: list, max_tokens: int, interpolate: bool) -> list:
        rng = np.random.default_rng(self.seed)
        generated = []
        for _ in range(max_tokens):
            prediction = model.predict(np.array(context + generated), interpolate)
            dist = self.penalised(prediction.distribution, generated)
            if self.strategy == "greedy":
                token = int(np.argmax(dist))
            else:
                p = self.shaped(dist, self.temperature_for(prediction))
                token = int(rng.choice(len(p), p=p))
            generated.append(token)
        return generated

    def _beam(self, model, context: list, max_tokens: int, interpolate: bool) -> list:
        beams = [(0.0, [])]
        for _ in range(max_tokens):
            candidates = []
            for score, seq in beams:
                dist = model.predict(np.array(context + seq), interpolate).distribution
                logp = np.log(self.penalised(dist, seq))
                for token in np.argsort(logp)[::-1][:self.beam_width]:
                    candidates.append((score + logp[token], seq + [int(token)]))
            candidates.sort(key=lambda c: -c[0])  # stable: ties keep the earlier beam first
            beams = candidates[:self.beam_width]
        return beams[0][1]


def trace_of(model, context: list, generated: list, interpolate: bool = False,
             n_patterns: int = 3) -> list[TraceStep]:
    """For each generated token: its probability and the top patterns behind it.

    A pattern's ``weight`` is its share of the final distribution, ``w_r(x)`` times its
    kernel weight within resolution ``r``; ``next_token_prob`` is ``P_emp(token | p)``.
    """
    steps = []
    for t, token in enumerate(generated):
        prediction = model.predict(np.array(context + generated[:t]), interpolate)
        hits = [(found.mixture_weight * w, found.resolution, int(i), p)
                for found in prediction.retrieved
                for w, i, p in zip(found.weight, found.ids, found.patterns)]
        hits.sort(key=lambda h: -h[0])
        patterns = []
        for weight, r, i, p in hits[:n_patterns]:
            next_prob = model.pattern_next_probability(r, [i], token)[0]
            patterns.append({"text": " ".join(model.vocab.decode(p)), "resolution": r,
                             "weight": float(weight), "next_token_prob": float(next_prob)})
        steps.append(TraceStep(model.vocab.tokens[token],
                               float(prediction.distribution[token]), patterns))
    return steps
