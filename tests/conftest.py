"""Test configuration: Hypothesis searches afresh on every local run, but CI (which sets
CI=true) replays a fixed sequence of examples, so a red CI always means a reproducible
failure rather than a newly drawn example. Shared fixtures: ``corpus_dir``."""

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory):
    """Two short documents cut from the bundled novels, one paragraph per line: a corpus
    small enough to train a RETGEN model on in a few seconds."""
    from retgen_ref.lm import read_documents

    folder = tmp_path_factory.mktemp("corpus")
    for doc in read_documents("austen")[:2]:
        (folder / f"{doc.name}.txt").write_text("\n".join(doc.paragraphs[:150]) + "\n")
    return folder
