"""The RETGEN language model (``retgen.md`` §11.1): corpus, tokens and vocabulary."""

from .corpus import Corpus, Document, load_corpus, read_documents, split_documents
from .tokenize import EOS, EOS_TOKEN, UNK, UNK_TOKEN, Vocabulary, clean, tokenize

__all__ = [
    "Corpus", "Document", "EOS", "EOS_TOKEN", "UNK", "UNK_TOKEN", "Vocabulary", "clean",
    "load_corpus", "read_documents", "split_documents", "tokenize",
]
