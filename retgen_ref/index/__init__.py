"""Vector indexes with a FAISS-style API."""

from .base import Index, load_index
from .flat import FlatIndex
from .ivf import IVFFlatIndex

__all__ = ["Index", "FlatIndex", "IVFFlatIndex", "load_index"]
