"""Online learning: adding text to a trained RETGEN model (``retgen.md`` §9.1–9.2).

§9.1: because the model's parameters are a store of pattern counts, new text is learned
by counting its patterns and adding them, with no retraining. Per resolution ``r``:

1. the new documents' patterns are counted (:func:`~retgen_ref.lm.patterns.extract_patterns`,
   each document read from an empty history);
2. counts of patterns already stored are added to (:func:`~.patterns.add_to_table`);
3. contexts never seen before are appended to the table and their embeddings added to
   the index, which keeps every stored row where it was.

The vocabulary, word vectors, ``τ``, ``k`` and the mixture stay as fitted: new words map
to ``<unk>``, and the summary of an update says how many tokens did and which words they
were. The unigram floor gains the new tokens' counts; the KN-5 baseline is not updated.
An update with no token is refused, except an empty list of documents with a timestamp,
which only moves the clock (§9.2).

§9.2 (concept drift): with ``decay_rate = λ > 0``, text added at time ``t`` weighs 1 and
all stored counts are multiplied by ``e^{−λ (t − t_prev)}`` first, so a count made at time
``s`` weighs ``w = e^{−λ (t − s)}`` at time ``t``: data older by ``Δ`` counts ``e^{−λΔ}``
as much as new data.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from .corpus import parse_paragraphs
from .patterns import add_to_table, extract_patterns
from .tokenize import EOS, UNK, tokenize


def encode_documents(vocab, texts) -> tuple[list[np.ndarray], list[str]]:
    """Each document's token ids with recipe v1 (each paragraph's tokens then ``<eos>``),
    and the distinct words outside the vocabulary (read as ``<unk>``) in order of first
    appearance."""
    streams, unknown = [], {}
    for text in texts:
        ids = []
        for paragraph in parse_paragraphs(text):
            tokens = tokenize(paragraph)
            if tokens:
                ids.extend(vocab.encode(tokens).tolist() + [EOS])
                unknown.update(dict.fromkeys(t for t in tokens if t not in vocab))
        streams.append(np.array(ids, np.int32))
    return streams, list(unknown)


def encode_document(vocab, text: str) -> np.ndarray:
    """A document's token ids with recipe v1: each paragraph's tokens then ``<eos>``."""
    return encode_documents(vocab, [text])[0][0]


def add_streams(model, streams: list, timestamp: float | None = None) -> dict:
    """Add token-id documents to ``model`` in place (module docstring); return a summary."""
    if model.encoder.uses_history:
        raise ValueError("online updates need pattern embeddings that depend on the context "
                         "alone; this model's global part averages over stored occurrences "
                         "and cannot be updated in place (train without it)")
    if not len(streams) and timestamp is None:
        raise ValueError("no documents to add; pass at least one text (an empty list only "
                         "with a timestamp, to let time pass, §9.2)")
    if len(streams) and not any(len(s) for s in streams):
        raise ValueError("nothing to add: every document given is empty or whitespace only")
    now = model.clock_ if timestamp is None else float(timestamp)
    if not np.isfinite(now):
        raise ValueError(f"timestamp {timestamp} must be a finite number")
    if now < model.clock_:
        raise ValueError(f"timestamp {timestamp} is before the model's clock {model.clock_}; "
                         "add text in time order")
    streams = [model.token_stream(np.asarray(s)) for s in streams if len(s)]
    start = time.perf_counter()
    scale = float(np.exp(-model.config.decay_rate * (now - model.clock_)))
    added = {}
    for r, level in model.levels.items():
        if streams:
            new = extract_patterns(streams, r)
            merged, appended = add_to_table(level.table, new, scale)
            if len(appended):
                level.index.add(model.encoder.encode(new.contexts[appended]))
        else:  # only the clock moves: every stored count decays
            merged = replace(level.table, next_counts=level.table.next_counts * scale)
            appended = ()
        level.set_table(merged)
        added[r] = len(appended)
    tokens = np.concatenate(streams) if streams else np.empty(0, np.int32)
    if streams:
        model.unigram._set_counts(len(model.vocab), model.unigram.counts_ + np.bincount(
            tokens, minlength=len(model.vocab)))
    model.clock_ = now
    return {"documents": len(streams), "tokens": len(tokens), "new_patterns": added,
            "unknown_tokens": int(np.count_nonzero(tokens == UNK)), "scale": scale,
            "seconds": time.perf_counter() - start}
