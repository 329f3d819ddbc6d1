"""What the v2 reranker and retrieval policy share: scoring a split through the model.

Both re-weight the patterns each resolution retrieves; the model asks them for
``search_k_`` (how many patterns to retrieve) and ``weights(model, r, sims, ids, queries)``
(the weight ``a_i`` of each), and :meth:`RetgenLM.scored_components
<retgen_ref.lm.RetgenLM.scored_components>` turns those into ``P_r(y_t) = Σ_i a_i
P_emp(y_t | p_i)``.
"""

from __future__ import annotations

import numpy as np


class Reweighting:
    """Base of :class:`~.rerank.EnergyReranker` and :class:`~.policy.RetrievalPolicy`."""

    def _check_model(self, model) -> None:
        raise NotImplementedError

    def log_prob(self, model, split) -> np.ndarray:
        """Natural-log probability of every token of a split (or id stream), re-weighted."""
        self._check_model(model)
        stream = model.token_stream(split)
        P, M = model.scored_components(stream, self)
        return np.log(model._target_prob(P, M, stream, False))

    def perplexity(self, model, split) -> float:
        """``exp(−mean log P)`` over every token of the split, re-weighted."""
        return float(np.exp(-self.log_prob(model, split).mean()))
