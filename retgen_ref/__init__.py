"""retgen_ref: a NumPy/Numba reference implementation of RETGEN.

Attention as retrieval (``retgen.md`` §2), the vector-search kernels it runs on, and the
papers' claims checked by computation. Public names are importable from here directly.
"""

from .attention import (RetrievalResult, attention_weights, dropped_mass,
                        multi_head_attention, retrieval_attention, softmax_attention,
                        topk_error_bound)
from .index import FlatIndex, Index, load_index
from .threads import num_threads

__version__ = "0.1.0"

__all__ = [
    "FlatIndex", "Index", "RetrievalResult", "attention_weights", "dropped_mass",
    "load_index", "multi_head_attention", "num_threads", "retrieval_attention",
    "softmax_attention", "topk_error_bound", "__version__",
]
