"""retgen_ref: a NumPy/Numba reference implementation of RETGEN.

Attention as retrieval (``retgen.md`` §2), the vector-search kernels it runs on, and the
papers' claims checked by computation. Public names are importable from here directly.
"""

from .index import FlatIndex, Index, load_index
from .threads import num_threads

__version__ = "0.1.0"

__all__ = ["FlatIndex", "Index", "load_index", "num_threads", "__version__"]
