"""Vector indexes with a FAISS-style API."""

from .base import Index, load_index
from .flat import FlatIndex

__all__ = ["Index", "FlatIndex", "load_index"]
