"""Vector indexes with a FAISS-style API."""

from .base import Index, load_index
from .factory import index_factory
from .flat import FlatIndex
from .hnsw import HNSWIndex
from .ivf import IVFFlatIndex, IVFPQIndex
from .lsh import LSHIndex
from .pretransform import PreTransformIndex
from .sq import IVFSQIndex, SQIndex
from .store import ShardedIndex

__all__ = ["Index", "FlatIndex", "HNSWIndex", "IVFFlatIndex", "IVFPQIndex", "IVFSQIndex",
           "LSHIndex", "PreTransformIndex", "SQIndex", "ShardedIndex", "index_factory",
           "load_index"]
