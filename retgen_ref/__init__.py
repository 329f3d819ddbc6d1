"""retgen_ref: a NumPy/Numba reference implementation of RETGEN.

Attention as retrieval (``retgen.md`` §2), the vector-search kernels it runs on, and the
papers' claims checked by computation. Public names are importable from here directly.
"""

from ._jit import kernel_cache

# Every module with compiled kernels is imported here, inside kernel_cache() (see _jit.py).
with kernel_cache():
    from .attention import (RetrievalResult, attention_weights, dropped_mass,
                            multi_head_attention, retrieval_attention, softmax_attention,
                            topk_error_bound)
    from .features import (PositiveRandomFeatures, RandomFourierFeatures, kernel_attention,
                           kernel_matrix, paper_kernel_estimate)
    from .index import (FlatIndex, HNSWIndex, Index, IVFFlatIndex, IVFPQIndex, IVFSQIndex,
                        LSHIndex, PreTransformIndex, ShardedIndex, SQIndex, index_factory,
                        load_index)
    from .kmeans import KMeans
    from .lm import RetgenLM, load_corpus
    from .opq import OPQ
    from .pq import ProductQuantizer
    from .sq import ScalarQuantizer
    from .threads import num_threads

__version__ = "0.1.0"

__all__ = [
    "FlatIndex", "HNSWIndex", "IVFFlatIndex", "IVFPQIndex", "IVFSQIndex", "Index", "KMeans",
    "LSHIndex", "OPQ", "PreTransformIndex", "RetgenLM", "SQIndex", "ScalarQuantizer",
    "ShardedIndex", "load_corpus",
    "PositiveRandomFeatures", "ProductQuantizer", "RandomFourierFeatures", "RetrievalResult",
    "attention_weights", "dropped_mass", "index_factory", "kernel_attention", "kernel_matrix", "load_index",
    "multi_head_attention", "num_threads", "paper_kernel_estimate", "retrieval_attention",
    "softmax_attention", "topk_error_bound", "__version__",
]
