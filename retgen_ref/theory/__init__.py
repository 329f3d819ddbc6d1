"""The papers' claims, each checked by computation (``retgen-ref verify``).

One module per paper section (``retgen_s2``, ``retgen_v2_s4``, ``rag_foundations``, ...)
registers its claims in :data:`~.registry.CLAIMS`; importing this package imports every
module of it, so a new section module needs no other edit. :func:`~.registry.run_claim`
checks one claim and returns its row; :mod:`.report` turns rows into ``docs/theorems.md``.
"""

import importlib
import pkgutil

from .registry import (CLAIMS, SEEDS, VERDICTS, Claim, Finding, claim_order, judge,
                       not_checkable, run_claim)

_MACHINERY = {"registry", "report"}
for _info in pkgutil.iter_modules(__path__):
    if _info.name not in _MACHINERY:
        importlib.import_module(f"{__name__}.{_info.name}")
for _id in sorted(CLAIMS, key=claim_order):  # the papers' order, whatever the import order
    CLAIMS[_id] = CLAIMS.pop(_id)

__all__ = ["CLAIMS", "SEEDS", "VERDICTS", "Claim", "Finding", "judge", "not_checkable",
           "run_claim"]
