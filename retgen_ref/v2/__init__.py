"""RETGEN v2 (``retgen_v2.md``): layers over the RETGEN language model of :mod:`retgen_ref.lm`."""

from .policy import RetrievalPolicy
from .rerank import EnergyReranker, NeighbourFeatures, neighbour_features

__all__ = ["EnergyReranker", "NeighbourFeatures", "RetrievalPolicy", "neighbour_features"]
