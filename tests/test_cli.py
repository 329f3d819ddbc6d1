"""The retgen-ref command line."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from retgen_ref.cli import main
from retgen_ref.lm import RetgenLM, load_corpus
from retgen_ref.rag import RetgenRAG


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


# -- checks before any work (issue 15) ------------------------------------------------------

@pytest.fixture(scope="module")
def saved(corpus_dir, tmp_path_factory):
    """A small flat model of the two-document corpus, saved (270 training paragraphs)."""
    folder = tmp_path_factory.mktemp("saved") / "model"
    RetgenLM(index="flat", resolutions=(1, 2)).fit(load_corpus(corpus_dir)).save(folder)
    return folder


def _must_not_run(*args, **kwargs):
    raise AssertionError("expensive work started before the arguments were checked")


@pytest.mark.parametrize("args,message", [
    (["demo", "--keys", "0"], "--keys must be >= 1, got 0"),
    (["demo", "--train-tokens", "-1"], "--train-tokens must be >= 0"),
    (["generate", "--model", "nowhere", "--prompt", "she", "--max-tokens", "0"],
     "--max-tokens must be >= 1"),
    (["generate", "--model", "nowhere", "--prompt", "she", "--beam-width", "0"],
     "--beam-width must be >= 1"),
    (["generate", "--model", "nowhere", "--prompt", "she", "--top-p", "0"], "top_p"),
    (["rag", "--model", "nowhere", "--query", "she", "--max-tokens", "0"],
     "--max-tokens must be >= 1"),
    (["rag", "--model", "nowhere", "--query", "she", "--width", "5"], "--width must be >= 10"),
    (["rag", "--model", "nowhere", "--query", "she", "--k", "0"], "--k must be >= 1"),
])
def test_bad_option_values_are_refused_before_loading_anything(args, message, capsys):
    """The model folder does not exist: the option is refused before it is looked for."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("query,messages", [
    ("", ["the query is empty"]),
    (" \n\t", ["the query is empty"]),
    ("zyzzyva quux", ["'zyzzyva', 'quux'", "fixed at training"]),
])
def test_rag_refuses_an_empty_or_unknown_query_before_fitting(query, messages, saved,
                                                              monkeypatch, capsys):
    monkeypatch.setattr(RetgenRAG, "fit", _must_not_run)
    assert main(["rag", "--model", str(saved), "--query", query]) == 2
    err = capsys.readouterr().err
    assert all(m in err for m in messages) and len(err.strip().splitlines()) == 1


def test_rag_checks_decoding_settings_before_fitting(saved, monkeypatch, capsys):
    monkeypatch.setattr(RetgenRAG, "fit", _must_not_run)
    assert main(["rag", "--model", str(saved), "--query", "she was", "--top-p", "0"]) == 2
    assert "top_p" in capsys.readouterr().err


def test_rag_k_above_the_passages_retrieves_all_of_them_with_a_note(saved, capsys):
    assert main(["rag", "--model", str(saved), "--query", "she was", "--k", "1000",
                 "--fit-tokens", "100", "--max-tokens", "2", "--json"]) == 0
    captured = capsys.readouterr()
    assert "--k 1000 is more than the 270 training paragraphs" in captured.err
    passages = json.loads(captured.out)["passages"]
    assert sorted(p["passage"] for p in passages) == list(range(270))


@pytest.mark.parametrize("prompt,messages", [
    ("", ["the prompt is empty"]),
    ("   ", ["the prompt is empty"]),
    ("zyzzyva quixotically", ["'zyzzyva', 'quixotically'", "fixed at training"]),
])
def test_generate_refuses_an_empty_or_unknown_prompt(prompt, messages, saved, capsys):
    assert main(["generate", "--model", str(saved), "--prompt", prompt]) == 2
    err = capsys.readouterr().err
    assert all(m in err for m in messages) and len(err.strip().splitlines()) == 1


def test_generate_notes_the_prompt_words_read_as_unk(saved, capsys):
    assert main(["generate", "--model", str(saved), "--prompt", "she zyzzyva",
                 "--max-tokens", "3"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip()
    assert "note: read as <unk>" in captured.err and "'zyzzyva'" in captured.err
    assert "fixed at training" in captured.err


@pytest.mark.parametrize("layout,message", [
    ("file", "is a file; give the name of a new or empty folder"),
    ("under a file", "is a file, not a folder"),
    ("not writable", "no permission to write in"),
    ("not empty", "is not empty; pass --overwrite"),
    ("saved model", "is not empty; pass --overwrite"),
])
def test_train_refuses_a_destination_before_training(layout, message, saved, corpus_dir,
                                                     tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(RetgenLM, "fit", _must_not_run)
    out = {"file": tmp_path / "a.txt", "under a file": tmp_path / "a.txt" / "model",
           "not writable": tmp_path / "locked" / "model", "not empty": tmp_path,
           "saved model": saved}[layout]
    (tmp_path / "a.txt").write_text("not a model")
    (tmp_path / "locked").mkdir()
    real_access = os.access  # root may write anywhere: deny the locked folder by hand
    monkeypatch.setattr(os, "access", lambda path, mode: real_access(path, mode) and
                        str(path) != str(tmp_path / "locked"))
    assert main(["train", "--corpus", str(corpus_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "a.txt").read_text() == "not a model"


def test_train_overwrite_replaces_a_saved_model_and_keeps_other_files(saved, corpus_dir,
                                                                      tmp_path, capsys):
    out = tmp_path / "model"
    shutil.copytree(saved, out)
    (out / "notes.txt").write_text("mine")
    assert main(["train", "--corpus", str(corpus_dir), "--out", str(out), "--index", "flat",
                 "--resolutions", "1", "--overwrite"]) == 0
    assert RetgenLM.load(out).config.resolutions == (1,)
    assert (out / "notes.txt").read_text() == "mine"


def test_update_refuses_text_with_no_token(saved, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(saved, model)
    (tmp_path / "blank.txt").write_text("  \n\n \t\n")
    assert main(["update", "--model", str(model), "--corpus", str(tmp_path / "blank.txt")]) == 2
    err = capsys.readouterr().err
    assert "empty or whitespace only" in err and len(err.strip().splitlines()) == 1
    assert RetgenLM.load(model).n_patterns == RetgenLM.load(saved).n_patterns


def test_update_says_which_words_became_unk(saved, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(saved, model)
    (tmp_path / "new.txt").write_text("She saw a zyzzyva. The zyzzyva and the quux left.")
    assert main(["update", "--model", str(model), "--corpus", str(tmp_path / "new.txt")]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("added 1 document, ")
    assert "3 tokens became <unk>" in captured.err and "'zyzzyva', 'quux'" in captured.err
    assert "fixed at training" in captured.err


_READY = "import sys, retgen_ref.cli as cli; print('ready', flush=True); sys.exit(cli.main())"


@pytest.mark.parametrize("command", ["train", "rag"])
def test_ctrl_c_exits_130_with_one_line_and_leaves_no_damaged_model(command, saved, tmp_path):
    """SIGINT a second into the work (training on the bundled corpus takes minutes, fitting
    RAG with every passage too): one line on stderr, exit 130, no half-written model."""
    out = tmp_path / "model"
    args = {"train": ["train", "--out", str(out)],
            "rag": ["rag", "--model", str(saved), "--query", "she was", "--k", "270"]}[command]
    child = subprocess.Popen([sys.executable, "-u", "-c", _READY, *args], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout.readline() == "ready\n"   # imports done: main is starting
    try:
        child.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert err == f"retgen-ref {command}: interrupted\n"
    assert not out.exists() or RetgenLM.load(out)
