"""A known-item retrieval task on a corpus: find the rest of a paragraph from its first
sentence.

The collection is every paragraph of the corpus (all three splits) with its first
sentence removed; a query is the first sentence of a paragraph of one split, and its one
relevant item is the rest of that same paragraph. Paragraphs of a single sentence have no
rest: they are in neither the collection nor the queries. A rest that occurs more than
once (``" said she.``) is one item of the collection, so that no ranking has to break a
tie between identical texts, and it is the relevant item of each query it follows.

The first sentence ends at the first token made only of ``.``, ``!`` and ``?``, except a
``.`` after a title abbreviation (``mr``, ``mrs``, ``dr``, ``st``, ``messrs``; the
tokenizer splits ``Mr.`` into ``mr`` and ``.``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..lm.corpus import SPLITS

ABBREVIATIONS = ("mr", "mrs", "dr", "st", "messrs")


def first_sentence_end(paragraph: np.ndarray, vocab) -> int:
    """Tokens in the first sentence of ``paragraph`` (its length when it has one sentence)."""
    tokens = vocab.decode(paragraph)
    for i, token in enumerate(tokens):
        if token and set(token) <= set(".!?") and not (
                token == "." and i > 0 and tokens[i - 1] in ABBREVIATIONS):
            return i + 1
    return len(tokens)


@dataclass
class KnownItemTask:
    """Collection, queries and the one relevant collection id of each query."""

    collection: list   # token-id arrays: the distinct paragraph rests
    queries: list      # token-id arrays: first sentences
    relevant: np.ndarray  # (n_queries,) collection id of each query's paragraph rest


def known_item_task(corpus, query_split: str = "test") -> KnownItemTask:
    """The task of the module docstring with queries from ``query_split``."""
    if query_split not in SPLITS:
        raise ValueError(f"query_split={query_split!r}; choose one of {SPLITS}")
    item_of, queries, relevant = {}, [], []
    for split in SPLITS:
        for paragraph in corpus.paragraphs(split):
            end = first_sentence_end(paragraph, corpus.vocab)
            if end == len(paragraph):
                continue
            rest = np.ascontiguousarray(paragraph[end:], np.int32)
            item = item_of.setdefault(rest.tobytes(), len(item_of))
            if split == query_split:
                queries.append(paragraph[:end])
                relevant.append(item)
    collection = [np.frombuffer(text, np.int32) for text in item_of]
    if not queries:
        raise ValueError(f"the {query_split} split has no paragraph of two sentences or more")
    return KnownItemTask(collection, queries, np.array(relevant))
