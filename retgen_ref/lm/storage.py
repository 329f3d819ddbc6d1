"""Saving a :class:`~retgen_ref.lm.model.RetgenLM` as plain arrays plus JSON.

A model directory holds ``model.npz`` (vocabulary, configuration and fitted parameters
in the JSON header; token streams, word vectors, pattern tables and the baselines'
counts as arrays) and one ``index_r<r>.npz`` per resolution. Every file is written by
:mod:`retgen_ref.persist`, so it is checksummed, written atomically and never unpickled:
a damaged or foreign file is refused with a ``ValueError`` naming it.
"""

from __future__ import annotations

from pathlib import Path

from ..index import load_index
from ..persist import load_state, save_state
from .embed import ContextEncoder
from .mixing import mixture_from_params
from .ngram import KneserNeyLM, UnigramLM
from .pattern_index import Resolution
from .patterns import PatternTable
from .tokenize import Vocabulary

KIND = "RetgenLM"
MODEL_FILE = "model.npz"
REWEIGHTING = "reweighting"  # the v2 reranker or policy, saved under this prefix
FITTED = ("k_", "tau_", "alpha_", "clock_", "train_seconds_", "fit_report_", "corpus_name")


def _index_file(path: Path, r: int) -> Path:
    return path / f"index_r{r}.npz"


def save_model(model, path) -> None:
    """Write ``model`` into directory ``path`` (created if needed)."""
    from dataclasses import asdict
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    arrays = {f"split_{name}": stream for name, stream in model.splits.items()}
    arrays["word_vectors"] = model.word_vectors
    for r, level in model.levels.items():
        arrays.update(level.table.arrays(f"r{r}_"))
        if model.pattern_history[r] is not None:
            arrays[f"r{r}_history"] = model.pattern_history[r]
        level.index.save(_index_file(path, r))
    params = {"config": asdict(model.config), "vocab": model.vocab.tokens,
              "mixture": model.mixture_.params(),
              **{name: getattr(model, name) for name in FITTED}}
    parts = [("unigram", model.unigram), ("kn5", model.kn5)]
    if model.reweighting_ is not None:
        parts.append((REWEIGHTING, model.reweighting_))
    for name, part in parts:
        part_params, part_arrays = part.state()
        params[name] = part_params
        arrays.update({f"{name}_{key}": value for key, value in part_arrays.items()})
    save_state(path / MODEL_FILE, KIND, params, arrays)


def _prefixed(arrays: dict, name: str) -> dict:
    """The arrays saved under ``name_``, without the prefix."""
    prefix = f"{name}_"
    return {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}


def _reweighting_class(config):
    """The class of the model's v2 reweighting (policy over reranker), or None."""
    if config.policy != "none":
        from ..v2.policy import RetrievalPolicy
        return RetrievalPolicy
    if config.rerank:
        from ..v2.rerank import EnergyReranker
        return EnergyReranker
    return None


def load_model(path):
    """Read a model directory written by :func:`save_model`."""
    from .model import RetgenLM
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no model directory at {path}; train one with "
                                "`retgen-ref train --out DIR`")
    kind, params, arrays = load_state(path / MODEL_FILE)
    if kind != KIND:
        raise ValueError(f"{path / MODEL_FILE} holds a {kind}, not a RETGEN model")
    model = RetgenLM(**{**params["config"],
                        "resolutions": tuple(params["config"]["resolutions"])})
    cfg = model.config
    model.vocab = Vocabulary(params["vocab"])
    model.splits = {name: arrays[f"split_{name}"] for name in ("train", "valid", "test")}
    model.word_vectors = arrays["word_vectors"]
    model.encoder = ContextEncoder(model.word_vectors, dict(cfg.embedding), cfg.decay,
                                   cfg.history)
    model.mixture_ = mixture_from_params(params["mixture"])
    for name in FITTED:
        setattr(model, name, params[name])
    for name, cls in (("unigram", UnigramLM), ("kn5", KneserNeyLM)):
        setattr(model, name, cls.from_state(params[name], _prefixed(arrays, name)))
    reweighting = _reweighting_class(cfg)
    if (reweighting is None) != (REWEIGHTING not in params):
        raise ValueError(f"{path / MODEL_FILE}: the configuration and the saved reranker or "
                         "policy disagree; the file is damaged")
    model.reweighting_ = None if reweighting is None else reweighting.from_state(
        params[REWEIGHTING], _prefixed(arrays, REWEIGHTING))
    model.levels, model.pattern_history = {}, {}
    for r in cfg.resolutions:
        table = PatternTable.from_arrays(arrays, f"r{r}_")
        index = load_index(_index_file(path, r))
        if index.ntotal != len(table) or index.d != model.encoder.dim(r):
            raise ValueError(f"{_index_file(path, r)} does not match the model's patterns "
                             f"({index.ntotal} vectors of d={index.d}, expected {len(table)} "
                             f"of d={model.encoder.dim(r)})")
        model.levels[r] = Resolution(table, index)
        model.pattern_history[r] = arrays.get(f"r{r}_history")
    return model
