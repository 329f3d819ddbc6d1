"""The RETGEN language model (``retgen.md`` §3, §4, §11.1) and its count-based baselines."""

from .corpus import Corpus, Document, load_corpus, read_documents, split_documents
from .model import RetgenConfig, RetgenLM
from .ngram import KneserNeyLM, UnigramLM
from .tokenize import EOS, EOS_TOKEN, UNK, UNK_TOKEN, Vocabulary, clean, tokenize

__all__ = [
    "Corpus", "Document", "EOS", "EOS_TOKEN", "KneserNeyLM", "RetgenConfig", "RetgenLM",
    "UNK", "UNK_TOKEN", "UnigramLM", "Vocabulary", "clean", "load_corpus", "read_documents",
    "split_documents", "tokenize",
]
