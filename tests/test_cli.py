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
    (["generate", "--model", "nowhere", "--prompt", "she", "--strategy", "beam",
      "--beam-width", "0"], "--beam-width must be >= 1"),
    (["generate", "--model", "nowhere", "--prompt", "she", "--strategy", "sample",
      "--top-p", "0"], "--top-p must be in (0, 1], got 0"),
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
    assert main(["rag", "--model", str(saved), "--query", "she was", "--strategy", "sample",
                 "--top-p", "0"]) == 2
    assert "--top-p must be in (0, 1]" in capsys.readouterr().err


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



# -- a CLI that explains itself --------------------------------------------------------------

from retgen_ref import cli  # noqa: E402


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    return capsys.readouterr().out


def _summaries(text: str) -> dict[str, str]:
    """Command → its summary in ``retgen-ref --help``, wrapped lines joined."""
    found, current = {}, None
    for line in text.split("positional arguments:")[1].split("options:")[0].splitlines():
        m = re.match(r"^    (\w+)\s+(.*)$", line)
        if m:
            current = m[1]
            found[current] = m[2].strip()
        elif current and line.startswith(" " * 10):
            found[current] += " " + line.strip()
    return found


def test_the_overview_gives_every_command_a_whole_summary(capsys):
    """No summary is the start of a longer sentence cut where the docstring's first line
    ends (``rag``'s used to read "... and continue the")."""
    summaries = _summaries(_help(["--help"], capsys))
    assert sorted(summaries) == sorted(cli.SUMMARIES)
    for name, summary in summaries.items():
        description = " ".join(_help([name, "--help"], capsys).split())
        assert summary == cli.SUMMARIES[name]
        assert not description.startswith(summary + " "), name
        assert not re.search(r"\b(the|and|a|or|of|with|to)$", summary), (name, summary)


@pytest.mark.parametrize("command", sorted(cli.SUMMARIES))
def test_every_command_help_has_its_full_description_and_an_example(command, capsys):
    import inspect
    text = _help([command, "--help"], capsys)
    func = getattr(cli, {"eval": "evaluate"}.get(command, command))
    assert inspect.cleandoc(func.__doc__) in text  # the whole docstring, as written
    examples = text.split("examples:\n")[1]
    assert f"  retgen-ref {command}" in examples


@pytest.mark.parametrize("args,flag,python_name", [
    (["generate", "--model", "nowhere", "--prompt", "she", "--strategy", "adaptive",
      "--temperature", "0.2"], "--low-temperature must be in (0, --temperature]",
     "low_temperature"),
    (["generate", "--model", "nowhere", "--prompt", "she", "--strategy", "adaptive",
      "--low-temperature", "2"], "--low-temperature must be in (0, --temperature] = (0, 1], "
                                  "got 2", "low_temperature"),
    (["generate", "--model", "nowhere", "--prompt", "she", "--strategy", "sample",
      "--repetition-penalty", "0.5"], "--repetition-penalty must be >= 1", "repetition_penalty"),
    (["rag", "--model", "nowhere", "--query", "she", "--strategy", "sample", "--top-p", "2"],
     "--top-p must be in (0, 1], got 2", "top_p"),
    (["generate", "--model", "nowhere", "--prompt", "she", "--max-tokens", "0"],
     "--max-tokens must be >= 1", "max_tokens"),
])
def test_errors_name_the_flag_the_user_typed(args, flag, python_name, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert flag in err and python_name not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    (["--decay-rate", "-1"], "--decay-rate -1.0 must be a finite number >= 0"),
    (["--index", "ivf", "--index-param", "nprobe=0"], "--index-param nprobe=0: nprobe must be "
                                                      ">= 1, got 0"),
    (["--index", "hnsw", "--index-param", "M=1"], "--index-param M=1: M must be >= 2"),
    (["--index", "hnsw", "--index-param", "nlist=4"], "--index-param nlist=4 does not apply "
                                                      "to --index hnsw, which takes M, "),
])
def test_train_settings_are_refused_in_flags_before_the_corpus_is_read(
        args, message, corpus_dir, tmp_path, monkeypatch, capsys):
    import retgen_ref.lm as lm
    monkeypatch.setattr(lm, "load_corpus", _must_not_run)
    monkeypatch.setattr(RetgenLM, "fit", _must_not_run)
    assert main(["train", "--corpus", str(corpus_dir), "--out", str(tmp_path / "m"),
                 *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "decay_rate" not in err and "index_params" not in err
    assert not (tmp_path / "m").exists()


def test_bad_resolutions_are_refused_by_the_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--out", "m", "--resolutions", "0,1"])
    assert exc.value.code == 2
    assert "argument --resolutions: '0,1': give distinct context lengths >= 1" in \
        capsys.readouterr().err


def test_library_parameter_names_in_errors_become_flags():
    flags = {"max_tokens": "--max-tokens", "decay_rate": "--decay-rate", "k": "--k"}
    assert cli._in_flags("max_tokens must be >= 1, got 0", flags) == \
        "--max-tokens must be >= 1, got 0"
    assert cli._in_flags("decay_rate=-1.0 must be >= 0", flags) == "--decay-rate -1.0 must be >= 0"
    assert cli._in_flags("no such file: /tmp/max_tokens/x", flags) == \
        "no such file: /tmp/max_tokens/x"
    assert cli._in_flags("k must be >= 1 for a k-NN", flags) == "k must be >= 1 for a k-NN"


@pytest.mark.parametrize("options,ignored", [
    (["--temperature", "0"], "--temperature does not apply to --strategy greedy; ignored"),
    (["--top-p", "0", "--beam-width", "0"],
     "--top-p, --beam-width do not apply to --strategy greedy; ignored"),
])
def test_options_greedy_decoding_does_not_use_are_ignored_with_a_note(options, ignored, saved,
                                                                      capsys):
    base = ["generate", "--model", str(saved), "--prompt", "she was", "--max-tokens", "4"]
    assert main(base) == 0
    plain = capsys.readouterr()
    assert main(base + options) == 0
    captured = capsys.readouterr()
    assert captured.out == plain.out
    assert f"retgen-ref generate: note: {ignored}" in captured.err


def test_beam_search_ignores_the_sampling_options(saved, capsys):
    base = ["generate", "--model", str(saved), "--prompt", "she was", "--max-tokens", "3",
            "--strategy", "beam", "--beam-width", "2"]
    assert main(base) == 0
    plain = capsys.readouterr().out
    assert main(base + ["--temperature", "0", "--top-k", "-1", "--seed", "5"]) == 0
    captured = capsys.readouterr()
    assert captured.out == plain
    assert "--temperature, --top-k, --seed do not apply to --strategy beam" in captured.err


@pytest.mark.parametrize("args", [
    ["verify", "--list"],  # more than stdout's buffer: the pipe breaks while printing
    ["demo", "--part", "attention", "--keys", "64", "--queries", "2"],  # less: at the flush
])
def test_a_closed_stdout_ends_quietly(args):
    """``retgen-ref verify --list | head``: the reader is gone before the first write (its
    end of the pipe closed at once), so every run meets the broken pipe: while printing
    (long output) or when stdout is flushed at the end (short output)."""
    read, write = os.pipe()
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as usual
    child = subprocess.Popen([sys.executable, "-m", "retgen_ref", *args], env=buffered,
                             stdout=write, stderr=subprocess.PIPE, text=True)
    os.close(write)
    os.close(read)
    _, err = child.communicate(timeout=120)
    assert err == "" and child.returncode == 141


def test_verify_by_id_shows_the_evidence_in_text_mode(capsys):
    from retgen_ref.theory import run_claim
    assert main(["verify", "--id", "retgen/thm4.1", "--fast"]) == 0
    out = capsys.readouterr().out
    row = run_claim("retgen/thm4.1", fast=True)
    assert "retgen/thm4.1: holds" in out and "  evidence:" in out
    for key in row["evidence"]:
        assert f"    {key} = " in out or f"    {key}:" in out or f"    {key} (" in out
    assert "reading tested:" in out and "statement:" in out


def test_verify_by_id_shows_a_sweep_as_a_table_and_a_false_claims_correction(capsys):
    assert main(["verify", "--id", "retgen/thm2.2", "--fast"]) == 0
    out = capsys.readouterr().out
    assert "counterexample: " in out and "corrected (verified): " in out
    assert main(["verify", "--id", "retgen/thm2.1", "--fast"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "max_rel_diff" in line)
    assert header.split() == ["n", "d", "query_scale", "max_rel_diff"]


def test_rag_counts_in_the_singular(saved, capsys):
    assert main(["rag", "--model", str(saved), "--query", "she was", "--k", "1",
                 "--fit-tokens", "100", "--max-tokens", "2"]) == 0
    assert "bm25: 1 passage of 270 training paragraphs;" in capsys.readouterr().out
