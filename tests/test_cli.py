"""The retgen-ref command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from retgen_ref.cli import main


def test_demo_shows_duality_and_every_error_within_its_bound(capsys):
    assert main(["demo", "--keys", "1024", "--queries", "4"]) == 0
    out = capsys.readouterr().out
    assert "max |softmax_attention - retrieval_attention| = 0.0e+00" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [int(r[0]) for r in rows] == [1, 4, 16, 64, 256, 1024]
    for _k, _eps, err, bound, excess in rows:
        assert float(err) <= float(bound) + 1e-12
        assert float(excess) <= 1e-12
    eps = [float(r[1]) for r in rows]
    assert eps == sorted(eps, reverse=True)  # more keys retrieved, less mass dropped


def test_demo_is_reproducible(capsys):
    main(["demo", "--keys", "300", "--seed", "3"])
    first = capsys.readouterr().out
    main(["demo", "--keys", "300", "--seed", "3"])
    assert capsys.readouterr().out == first


@pytest.mark.parametrize("args,message", [
    (["demo", "--keys", "0"], "--keys must be >= 1"),
    (["demo", "--keys", "ten"], "invalid int value"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
])
def test_bad_arguments_exit_2_with_a_message(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "retgen_ref", "--version"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.startswith("retgen_ref ")
