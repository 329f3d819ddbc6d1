"""Saving a :class:`~retgen_ref.lm.model.RetgenLM` as plain arrays plus JSON.

A model directory holds, for its current generation ``g``, ``model-<g>.npz`` (vocabulary,
configuration and fitted parameters in the JSON header; token streams, word vectors,
pattern tables and the baselines' counts as arrays), one ``index_r<r>-<g>.npz`` per
resolution, and ``manifest.json``, a checksummed JSON naming those files. Every file is
written by :mod:`retgen_ref.persist`, so it is checksummed, written atomically and never
unpickled: a damaged or foreign file is refused with a ``ValueError`` naming it.

Crash safety: a save writes the files of generation ``g + 1`` beside those of ``g``,
switches the manifest to them in one atomic rename, and only then deletes the files the
manifest no longer names. A process killed at any moment of a save leaves a folder that
loads as the model before the save or the model after it; the files a killed save left
are ignored by :func:`load_model` and deleted by the next :func:`save_model`. A folder
saved before manifests (``model.npz`` and ``index_r<r>.npz``) still loads; saving into it
converts it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..index import load_index
from ..persist import (check_destination, load_state, read_manifest, remove_unreferenced,
                       save_state, write_manifest)
from .embed import ContextEncoder
from .mixing import mixture_from_params
from .ngram import KneserNeyLM, UnigramLM
from .pattern_index import Resolution
from .patterns import PatternTable
from .tokenize import Vocabulary

KIND = "RetgenLM"
MANIFEST = "manifest.json"
FORMAT_NAME = "retgen_ref.RetgenLM"
FORMAT_VERSION = 1
LEGACY_MODEL_FILE = "model.npz"  # the layout before manifests, with index_r<r>.npz
#: The names of every file a save writes (with a generation), or wrote before manifests.
_OURS = re.compile(rf"{re.escape(MANIFEST)}|(model|index_r\d+)(-(?P<generation>\d+))?\.npz")
_DAMAGED = "the folder is damaged: restore it from a backup or train the model again"
REWEIGHTING = "reweighting"  # the v2 reranker or policy, saved under this prefix
FITTED = ("k_", "tau_", "alpha_", "clock_", "train_seconds_", "fit_report_", "corpus_name")


def save_model(model, path, *, make_parents: bool = False) -> None:
    """Write ``model`` into directory ``path`` as a new generation. ``path`` is created if
    needed, but its parent folder must exist unless ``make_parents`` creates it too.

    Crash safe (module docstring): killed at any moment, the folder loads as the model it
    held before or as ``model``.
    """
    from dataclasses import asdict
    path = check_destination(path, make_parents=make_parents, directory=True)
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot create folder {path}: {exc.strerror}") from None
    generation = _last_generation(path) + 1
    files = {"model": f"model-{generation:06d}.npz",
             "indexes": {str(r): f"index_r{r}-{generation:06d}.npz" for r in model.levels}}
    arrays = {f"split_{name}": stream for name, stream in model.splits.items()}
    arrays["word_vectors"] = model.word_vectors
    for r, level in model.levels.items():
        arrays.update(level.table.arrays(f"r{r}_"))
        if model.pattern_history[r] is not None:
            arrays[f"r{r}_history"] = model.pattern_history[r]
        level.index.save(path / files["indexes"][str(r)])
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
    save_state(path / files["model"], KIND, params, arrays)
    write_manifest(path / MANIFEST, {"format": FORMAT_NAME, "version": FORMAT_VERSION,
                                     "generation": generation, **files})
    remove_unreferenced(path, _OURS, keep={MANIFEST, files["model"], *files["indexes"].values()})


def _last_generation(path: Path) -> int:
    """The highest generation among the files in ``path``, current or left by a killed
    save (0 if none), so a new generation's names are never in use."""
    found = (_OURS.fullmatch(name) for name in os.listdir(path))
    return max((int(m["generation"] or 0) for m in found if m), default=0)


def _current_files(path: Path) -> tuple[Path, dict | None]:
    """The model file of the folder and its index files by resolution, as its manifest
    names them; for a folder saved before manifests, ``model.npz`` and None."""
    if not (path / MANIFEST).is_file():
        if (path / LEGACY_MODEL_FILE).is_file():
            return path / LEGACY_MODEL_FILE, None
        raise FileNotFoundError(f"{path} holds no RETGEN model (no {MANIFEST}); train one "
                                "with `retgen-ref train --out DIR`")
    manifest = read_manifest(path / MANIFEST, FORMAT_NAME, FORMAT_VERSION, "RETGEN model",
                             "Train the model again and save it.")
    try:
        model_name = str(manifest["model"])
        index_names = {int(r): str(name) for r, name in manifest["indexes"].items()}
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"{path / MANIFEST} is inconsistent ({exc!r}); {_DAMAGED}") from None
    if any(Path(name).name != name for name in [model_name, *index_names.values()]):
        raise ValueError(f"{path / MANIFEST} names files outside {path}; {_DAMAGED}")
    return path / model_name, {r: path / name for r, name in index_names.items()}


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
    model_file, index_files = _current_files(path)
    kind, params, arrays = load_state(model_file)
    if kind != KIND:
        raise ValueError(f"{model_file} holds a {kind}, not a RETGEN model")
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
        raise ValueError(f"{model_file}: the configuration and the saved reranker or "
                         "policy disagree; the file is damaged")
    model.reweighting_ = None if reweighting is None else reweighting.from_state(
        params[REWEIGHTING], _prefixed(arrays, REWEIGHTING))
    if index_files is None:
        index_files = {r: path / f"index_r{r}.npz" for r in cfg.resolutions}
    if sorted(index_files) != list(cfg.resolutions):
        raise ValueError(f"{path / MANIFEST} names index files for resolutions "
                         f"{sorted(index_files)}; the model has {list(cfg.resolutions)}: "
                         f"{_DAMAGED}")
    model.levels, model.pattern_history = {}, {}
    for r in cfg.resolutions:
        table = PatternTable.from_arrays(arrays, f"r{r}_")
        index = load_index(index_files[r])
        if index.ntotal != len(table) or index.d != model.encoder.dim(r):
            raise ValueError(f"{index_files[r]} does not match the model's patterns "
                             f"({index.ntotal} vectors of d={index.d}, expected {len(table)} "
                             f"of d={model.encoder.dim(r)})")
        model.levels[r] = Resolution(table, index)
        model.pattern_history[r] = arrays.get(f"r{r}_history")
    return model
