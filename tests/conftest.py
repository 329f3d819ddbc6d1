"""Test configuration: Hypothesis searches afresh on every local run, but CI (which sets
CI=true) replays a fixed sequence of examples, so a red CI always means a reproducible
failure rather than a newly drawn example."""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
