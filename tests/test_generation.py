"""Generation (retgen.md §11) and online learning with drift (§9) on a small corpus."""

from __future__ import annotations

import copy
import json
from collections import Counter

import numpy as np
import pytest

from retgen_ref.cli import main
from retgen_ref.lm import RetgenLM, load_corpus
from retgen_ref.lm.generate import Decoder
from retgen_ref.lm.ngram import UnigramLM
from retgen_ref.lm.online import encode_document


@pytest.fixture(scope="module")
def corpus(corpus_dir):
    return load_corpus(corpus_dir)


@pytest.fixture(scope="module")
def model(corpus):
    return RetgenLM(index="flat", resolutions=(1, 2, 3)).fit(corpus)


NEW_TEXT = ("Anne walked to the window and could not help smiling at the letter.\n\n"
            "The captain said nothing; he was very sure of it.")


@pytest.mark.parametrize("settings", [
    {"strategy": "greedy"},
    {"strategy": "sample", "temperature": 0.8, "top_k": 20},
    {"strategy": "sample", "top_p": 0.9},
    {"strategy": "adaptive", "temperature": 1.2},
    {"strategy": "beam", "beam_width": 3},
    {"strategy": "sample", "repetition_penalty": 1.5},
])
def test_same_seed_same_text(model, settings):
    first = model.generate("she could not", 12, seed=7, **settings)
    again = model.generate("she could not", 12, seed=7, **settings)
    assert first.tokens == again.tokens and len(first.tokens) == 12
    assert first.text == model.vocab.detokenize(first.ids)


def test_greedy_is_the_argmax_of_each_step(model):
    out = model.generate("i am", 6)
    context = list(model.encode_context("i am"))
    for token in out.ids:
        assert token == np.argmax(model.next_token_distribution(np.array(context)))
        context.append(int(token))


def test_sampling_follows_the_model_distribution(model):
    """Empirical frequencies of one-token samples match P(·|x) (chi-square-free check)."""
    dist = model.next_token_distribution("she could not")
    draws = [model.generate("she could not", 1, strategy="sample", seed=s).ids[0]
             for s in range(300)]
    top = int(np.argmax(dist))
    freq = np.mean(np.array(draws) == top)
    assert abs(freq - dist[top]) < 4 * np.sqrt(dist[top] * (1 - dist[top]) / 300)


def test_top_k_and_top_p_truncate_and_renormalise():
    dist = np.array([0.5, 0.3, 0.15, 0.05])
    np.testing.assert_allclose(Decoder(strategy="sample", top_k=2).shaped(dist, 1.0),
                               [0.625, 0.375, 0, 0])
    # the nucleus: the fewest likeliest tokens whose mass reaches top_p
    np.testing.assert_allclose(Decoder(strategy="sample", top_p=0.75).shaped(dist, 1.0),
                               [0.625, 0.375, 0, 0])
    np.testing.assert_allclose(Decoder(strategy="sample", top_p=0.85).shaped(dist, 1.0),
                               np.array([0.5, 0.3, 0.15, 0]) / 0.95)
    sharp = Decoder(strategy="sample").shaped(dist, 0.5)
    np.testing.assert_allclose(sharp, dist ** 2 / (dist ** 2).sum())


def test_repetition_penalty_divides_by_rho_to_the_count():
    dist = np.array([0.4, 0.4, 0.2])
    out = Decoder(repetition_penalty=2.0).penalised(dist, [0, 0, 2])
    expected = np.array([0.4 / 4, 0.4, 0.2 / 2])
    np.testing.assert_allclose(out, expected / expected.sum())


def test_beam_search_scores_at_least_greedy(model):
    def logp(ids):
        context, total = list(model.encode_context("it was")), 0.0
        for token in ids:
            total += np.log(model.next_token_distribution(np.array(context))[token])
            context.append(int(token))
        return total
    greedy = model.generate("it was", 5)
    beam = model.generate("it was", 5, strategy="beam", beam_width=4)
    assert logp(beam.ids) >= logp(greedy.ids) - 1e-9


def test_trace_reports_patterns_with_weights_and_next_token_probability(model):
    out = model.generate("she could not", 4, trace=True)
    assert len(out.trace) == 4
    for step, token in zip(out.trace, out.ids):
        assert step.token == model.vocab.tokens[token] and 0 < step.prob <= 1
        assert 1 <= len(step.patterns) <= 3
        for p in step.patterns:
            assert p["resolution"] in (1, 2, 3) and 0 < p["weight"] <= 1
            assert 0 <= p["next_token_prob"] <= 1
    weights = [p["weight"] for p in out.trace[0].patterns]
    assert weights == sorted(weights, reverse=True)


def test_unknown_prompt_words_are_handled_and_listed(model):
    out = model.generate("the zyzzyva quixotically zyzzyva", 3)
    assert len(out.tokens) == 3 and out.unknown_words == ["zyzzyva", "quixotically"]
    assert model.generate(["the", "zyzzyva"], 2).unknown_words == ["zyzzyva"]
    assert model.generate("she could not", 2).unknown_words == []


@pytest.mark.parametrize("prompt", ["", "   \n\t", [], np.array([], np.int64)])
def test_empty_prompt_is_a_clear_error(model, prompt):
    with pytest.raises(ValueError, match="the prompt is empty"):
        model.generate(prompt, 3)


def test_prompt_of_only_unknown_words_is_refused_naming_them(model):
    with pytest.raises(ValueError, match="'zyzzyva', 'quixotically'.*fixed at training"):
        model.generate("Zyzzyva quixotically", 3)
    with pytest.raises(ValueError, match="'zyzzyva'"):
        model.generate(["zyzzyva"], 3, strategy="beam")


def test_bad_decoding_settings_are_clear_errors(model):
    for settings, message in [({"strategy": "nucleus"}, "choose one of"),
                              ({"top_p": 0}, "top_p"), ({"temperature": 0}, "temperature"),
                              ({"repetition_penalty": 0.5}, "repetition_penalty")]:
        with pytest.raises(ValueError, match=message):
            model.generate("she", 2, **settings)


def test_adding_a_then_b_equals_indexing_a_and_b_together(model, corpus):
    """§9.1 with the exact index: same distributions as a store built from A and B."""
    online = copy.deepcopy(model)
    summary = online.add_documents([NEW_TEXT])
    assert summary["tokens"] > 0 and sum(summary["new_patterns"].values()) > 0
    b = encode_document(model.vocab, NEW_TEXT)
    batch = copy.deepcopy(model)
    batch._build_levels([corpus.train, b])
    batch.unigram = UnigramLM().fit(np.concatenate([corpus.train, b]), len(model.vocab))
    for context in ("anne walked to the", "he was very", "she could not", "the captain"):
        np.testing.assert_allclose(online.next_token_distribution(context),
                                   batch.next_token_distribution(context), rtol=1e-6)
    assert online.n_patterns == batch.n_patterns


def test_decayed_weight_of_pre_drift_data_is_exactly_exp_minus_lambda_tau(corpus):
    """§9.2: text added at time τ weighs 1; every count made at time 0 weighs e^{−λτ}."""
    lam, tau = 0.3, 2.5
    model = RetgenLM(index="flat", resolutions=(1, 2), decay_rate=lam).fit(corpus)
    before = {r: copy.deepcopy(level.table) for r, level in model.levels.items()}
    model.add_documents([NEW_TEXT], timestamp=tau)
    b = encode_document(model.vocab, NEW_TEXT).tolist()
    for r, level in model.levels.items():
        padded = [1] * r + b
        new_counts = Counter((tuple(padded[t:t + r]), padded[t + r]) for t in range(len(b)))
        old = before[r]
        for i in range(len(old)):  # stored rows keep their place
            context = tuple(old.contexts[i].tolist())
            now = dict(zip(*level.table.next_token_counts(i)))
            for y, count in zip(*old.next_token_counts(i)):
                expected = count * np.exp(-lam * tau) + new_counts[(context, int(y))]
                assert now[y] == pytest.approx(expected, rel=1e-12)
                if (context, int(y)) not in new_counts:
                    assert now[y] / count == pytest.approx(np.exp(-lam * tau), rel=1e-15)
    with pytest.raises(ValueError, match="time order"):
        model.add_documents([NEW_TEXT], timestamp=1.0)


def test_empty_update_is_refused_and_letting_time_pass_is_not(model):
    with pytest.raises(ValueError, match="no documents to add"):
        model.add_documents([])
    with pytest.raises(ValueError, match="every document given is empty or whitespace only"):
        model.add_documents(["", "  \n\n \t"])
    with pytest.raises(ValueError, match="every document given is empty or whitespace only"):
        model.add_token_streams([np.array([], np.int32)])
    with pytest.raises(ValueError, match="timestamp nan must be a finite number"):
        model.add_documents([NEW_TEXT], timestamp=float("nan"))
    later = copy.deepcopy(model)
    assert later.add_documents([], timestamp=1.0)["documents"] == 0  # §9.2: only the clock
    assert later.clock_ == 1.0


def test_update_reports_the_tokens_read_as_unk(model):
    online = copy.deepcopy(model)
    summary = online.add_documents(["She saw a zyzzyva.\n\nThe zyzzyva and the quux left."])
    assert summary["unknown_tokens"] == 3 and summary["unknown_words"] == ["zyzzyva", "quux"]
    assert online.add_documents([NEW_TEXT])["unknown_tokens"] == int(
        (encode_document(model.vocab, NEW_TEXT) == 0).sum())


def test_update_and_generate_cli(model, corpus_dir, tmp_path, capsys):
    model.save(tmp_path / "m")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "new.txt").write_text(NEW_TEXT)
    assert main(["update", "--model", str(tmp_path / "m"), "--corpus", str(extra)]) == 0
    assert "new patterns" in capsys.readouterr().out
    assert RetgenLM.load(tmp_path / "m").n_patterns > model.n_patterns
    assert main(["generate", "--model", str(tmp_path / "m"), "--prompt", "anne walked",
                 "--max-tokens", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"text", "tokens", "trace"} and len(out["tokens"]) == 5
    assert set(out["trace"][0]) == {"token", "prob", "patterns"}
    assert {"text", "resolution", "weight"} <= set(out["trace"][0]["patterns"][0])
    assert main(["generate", "--model", str(tmp_path / "m"), "--prompt", "walked",
                 "--max-tokens", "3", "--trace"]) == 0
    assert "P(tok|p)=" in capsys.readouterr().out
