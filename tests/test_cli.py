"""The retgen-ref command line."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from retgen_ref.cli import main


def test_demo_shows_duality_and_every_error_within_its_bound(capsys):
    assert main(["demo", "--part", "attention", "--keys", "1024", "--queries", "4"]) == 0
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
    main(["demo", "--part", "attention", "--keys", "300", "--seed", "3"])
    first = capsys.readouterr().out
    main(["demo", "--part", "attention", "--keys", "300", "--seed", "3"])
    assert capsys.readouterr().out == first


def test_lm_demo_trains_prints_the_table_and_predictions(capsys):
    assert main(["demo", "--part", "lm", "--train-tokens", "30000"]) == 0
    out = capsys.readouterr().out
    for row in ("RETGEN", "RETGEN + KN-5 (interpolated)", "Kneser-Ney 5-gram",
                "unigram (add-one)"):
        match = re.search(rf"^{re.escape(row)}\s+([\d.]+)\s+([\d.]+)$", out, re.MULTILINE)
        valid, test = float(match[1]), float(match[2])
        assert 1 < valid < 2000 and 1 < test < 2000
    assert "'she could not help' ->" in out
    assert "r=4 (mixture weight" in out
    assert "Generated (top-p 0.9" in out and "Retrieval trace of the first 6 tokens" in out


@pytest.mark.parametrize("args,message", [
    (["demo", "--keys", "0"], "--keys must be >= 1"),
    (["demo", "--train-tokens", "-1"], "--train-tokens must be >= 0"),
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
