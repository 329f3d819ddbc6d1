"""The RETGEN language model (retgen.md §3, §4, §11.1) on a small slice of the corpus."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from retgen_ref.cli import main
from retgen_ref.lm import RetgenLM, load_corpus
from retgen_ref.lm.embed import ContextEncoder
from retgen_ref.lm.kernels import target_probabilities
from retgen_ref.lm.mixing import ConfidenceMixture, ConstantMixture, mean_nll
from retgen_ref.lm.patterns import context_windows, pattern_ids


@pytest.fixture(scope="module")
def corpus(corpus_dir):
    return load_corpus(corpus_dir)


@pytest.fixture(scope="module", params=["flat", "hnsw", "ivf", "ivfpq"])
def model(request, corpus):
    return RetgenLM(index=request.param).fit(corpus)


@pytest.fixture(scope="module")
def flat_model(corpus):
    return RetgenLM(index="flat").fit(corpus)


def test_distribution_is_normalised_over_the_whole_vocabulary_with_no_zero(model):
    for context in ["", "she could not", "an utterly unseen zyzzyva", [0, 0, 1]]:
        for interpolate in (False, True):
            dist = model.next_token_distribution(context, interpolate=interpolate)
            assert dist.shape == (len(model.vocab),)
            assert abs(dist.sum() - 1) < 1e-9
            assert dist.min() > 0


def test_batch_scores_equal_one_context_at_a_time(model):
    """The batch and single-query search kernels round float32 similarities differently;
    exp(s/τ) turns that into relative differences of about 1e-6."""
    stream = model.splits["test"][:40]
    logp = model.log_prob(stream)
    for t in (0, 1, 5, 39):
        dist = model.next_token_distribution(stream[:t])
        assert np.log(dist[stream[t]]) == pytest.approx(logp[t], abs=1e-5)


def test_perplexity_is_exp_of_mean_nll_over_every_token(flat_model):
    logp = flat_model.log_prob("test")
    assert len(logp) == len(flat_model.splits["test"])
    assert flat_model.perplexity("test") == pytest.approx(np.exp(-logp.mean()))


def test_exact_match_at_small_tau_is_the_empirical_distribution(flat_model):
    """With one neighbour from the exact index, P_r is P_emp of the stored context (§11.1)."""
    level = flat_model.levels[2]
    table = level.table
    i = int(np.argmax(table.totals))
    query = flat_model.encoder.encode(table.contexts[i:i + 1])
    sims, ids = level.search(query, 1)
    dist, mass = level.distribution(sims[0], ids[0], 0.01, len(flat_model.vocab))
    tokens, counts = table.next_token_counts(i)
    expected = np.zeros(len(flat_model.vocab))
    expected[tokens] = counts / counts.sum()
    assert ids[0, 0] == i
    np.testing.assert_allclose(dist, expected, atol=1e-12)
    assert mass == pytest.approx(table.totals[i], rel=1e-4)  # s = 1 up to float32 rounding


def test_kernel_matches_the_equation_on_random_results():
    rng = np.random.default_rng(0)
    offsets = np.array([0, 2, 3, 6])
    # Row 0 ends below token 3, which starts row 1: a lookup must not run into row 1.
    tokens = np.array([0, 1, 3, 1, 2, 4], np.int32)
    counts = np.array([1.0, 3.0, 5.0, 2.0, 2.0, 1.0])
    totals = np.add.reduceat(counts, offsets[:-1])
    ids = np.array([[2, 0, -1], [1, 2, 0]])
    sims = rng.uniform(0.5, 1.0, ids.shape).astype(np.float32)
    targets = np.array([3, 2], np.int32)
    prob, mass = np.empty(2), np.empty(2)
    target_probabilities(ids, sims, 3, 0.1, offsets, tokens, counts, totals, targets, prob,
                         mass)
    for t in range(2):
        num = den = 0.0
        for j in range(3):
            p = ids[t, j]
            if p < 0:
                continue
            w = np.exp(sims[t, j] / 0.1)
            row = dict(zip(tokens[offsets[p]:offsets[p + 1]], counts[offsets[p]:offsets[p + 1]]))
            num += w * row.get(targets[t], 0.0)
            den += w * totals[p]
        assert prob[t] == pytest.approx(num / den, rel=1e-6)
        assert mass[t] == pytest.approx(den * np.exp(-1 / 0.1), rel=1e-5)


def test_fusion_inner_product_is_the_weighted_mean_of_part_cosines():
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((20, 8)).astype(np.float32)
    weights = {"positional": 2.0, "local": 1.0, "global": 0.5}
    enc = ContextEncoder(vectors, weights, decay=0.6, history=4)
    ctx = rng.integers(0, 20, (2, 3))
    hist = rng.standard_normal((2, 8)).astype(np.float32)
    e = enc.encode(ctx, hist)
    parts = {name: ContextEncoder(vectors, {name: 1.0}, decay=0.6).encode(ctx, hist)
             for name in weights}
    expected = sum(w * parts[n][0] @ parts[n][1] for n, w in weights.items()) / sum(
        weights.values())
    assert e[0] @ e[1] == pytest.approx(expected, abs=1e-5)
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-6)


def test_em_weights_beat_the_papers_formula_and_uniform_on_their_objective(flat_model):
    report = flat_model.fit_report_["mixtures"]
    assert report["em"]["valid_ppl"] <= report["paper"]["valid_ppl"] + 1e-9
    P, M = flat_model.components(flat_model.splits["valid"])
    em = ConstantMixture("em").fit(P, M)
    uniform = np.full(len(P), 1 / len(P))
    assert mean_nll(P, em.lambdas_) <= mean_nll(P, uniform)
    # EM's optimum: moving any one weight lowers the loss by less than 1e-7 nats (EM
    # approaches a weight whose optimum is 0 slowly; 1e-7 nats is 1e-5 % of perplexity).
    for r in range(len(P)):
        for step in (1e-3, -1e-3):
            lam = em.lambdas_.copy()
            lam[r] = max(lam[r] + step, 0)
            assert mean_nll(P, em.lambdas_) <= mean_nll(P, lam / lam.sum()) + 1e-7


def test_confidence_mixture_weights_sum_to_one_and_keep_the_floor():
    rng = np.random.default_rng(2)
    P = rng.uniform(0.01, 1, (4, 500))
    P[1:, ::3] = 0  # resolutions that retrieved nothing useful
    M = np.vstack([np.full(500, np.inf), rng.exponential(20, (3, 500))])
    w = ConfidenceMixture().fit(P, M).weights(M)
    assert np.allclose(w.sum(axis=0), 1)
    assert w[0].min() > 0


def test_fitted_on_valid_not_test(flat_model, corpus):
    """Changing the test split cannot change any fitted parameter."""
    shuffled = type(corpus)(corpus.name, corpus.vocab, corpus.train, corpus.valid,
                            corpus.test[::-1].copy())
    other = RetgenLM(index="flat").fit(shuffled)
    assert (other.k_, other.tau_, other.alpha_) == (flat_model.k_, flat_model.tau_,
                                                     flat_model.alpha_)


def test_save_load_gives_identical_scores_and_damage_is_refused(model, tmp_path):
    model.save(tmp_path / "m")
    loaded = RetgenLM.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.log_prob("test"), model.log_prob("test"))
    np.testing.assert_array_equal(loaded.next_token_distribution("she was", True),
                                  model.next_token_distribution("she was", True))
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    for name in (manifest["model"], manifest["indexes"]["3"]):
        damaged = tmp_path / f"bad-{name}"
        shutil.copytree(tmp_path / "m", damaged)
        data = bytearray((damaged / name).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (damaged / name).write_bytes(bytes(data))
        with pytest.raises(ValueError, match="damaged"):
            RetgenLM.load(damaged)


def test_retrieve_reports_patterns_weights_and_mixture(flat_model):
    found = flat_model.retrieve("she could not")
    assert [f.resolution for f in found] == list(flat_model.config.resolutions)
    for f in found:
        assert len(f.patterns) == len(f.weight) <= flat_model.k_
        assert f.weight.sum() == pytest.approx(1)
        assert all(len(p) == f.resolution for p in f.patterns)
    assert found[0].similarity[0] == pytest.approx(1, abs=1e-5)  # "not" itself is stored


def test_ivfpq_with_full_exact_reranking_is_the_exact_model(corpus):
    """retgen_v2 §4 with refine_k ≥ n: PQ only proposes, exact inner products decide."""
    exact = RetgenLM(index="flat", resolutions=(1, 2)).fit(corpus)
    reranked = RetgenLM(index="ivfpq", resolutions=(1, 2),
                        index_params={"nlist": 4, "nprobe": 4, "refine_k": 10 ** 6}).fit(corpus)
    assert (reranked.k_, reranked.tau_) == (exact.k_, exact.tau_)
    np.testing.assert_allclose(reranked.log_prob("test"), exact.log_prob("test"), rtol=1e-4)
    assert reranked.config.index_params["refine_k"] == 10 ** 6


@pytest.mark.parametrize("kwargs,message", [
    ({"index": "annoy"}, "choose one of"),
    ({"index": "hnsw", "index_params": {"nprobe": 4}}, "do not apply to a hnsw index"),
    ({"resolutions": (2, 2)}, "distinct"),
    ({"resolutions": (0, 1)}, "resolution"),
    ({"mixture": "median"}, "confidence"),
    ({"embedding": {"colour": 1.0}}, "unknown embedding parts"),
    ({"rerank": "yes"}, "True or False"),
    ({"policy": "genetic"}, "choose one of"),
])
def test_bad_configuration_is_a_clear_error(kwargs, message, corpus):
    with pytest.raises(ValueError, match=message):
        RetgenLM(**kwargs).fit(corpus)


def test_added_text_is_stored_and_retrieved_with_every_index(model, tmp_path):
    """§9.1 on each index kind: a context first seen in added text is found afterwards."""
    model.save(tmp_path / "m")
    online = RetgenLM.load(tmp_path / "m")
    text = "letter walked home quietly together"
    ids = online.encode_context(text)
    context = ids[:3]
    assert pattern_ids(online.levels[3].table, context[None])[0] == -1
    online.add_documents([text])
    row = pattern_ids(online.levels[3].table, context[None])[0]
    assert row >= len(model.levels[3].table)  # appended after the stored rows
    found = online.retrieve(context)[2]
    assert row in found.ids


def test_bad_streams_are_clear_errors(flat_model):
    with pytest.raises(ValueError, match="choose one of"):
        flat_model.perplexity("dev")
    with pytest.raises(ValueError, match="token ids must be in"):
        flat_model.log_prob(np.array([0, 10 ** 6]))


def test_cli_train_and_eval_on_a_folder_of_text(corpus_dir, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["train", "--corpus", str(corpus_dir), "--out", str(out), "--index",
                 "flat", "--resolutions", "1,2"]) == 0
    assert "patterns at resolutions [1, 2]" in capsys.readouterr().out
    assert main(["eval", "--model", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("test_ppl", "valid_ppl", "test_ppl_interpolated", "kn5_test_ppl",
                "kn5_valid_ppl", "unigram_test_ppl", "n_patterns", "index", "train_s",
                "eval_s"):
        assert key in result
    assert result["index"] == "flat"
    loaded = RetgenLM.load(out)
    assert result["test_ppl"] == pytest.approx(loaded.perplexity("test"))
    assert main(["eval", "--model", str(tmp_path / "missing")]) == 2
    assert "no model directory" in capsys.readouterr().err


def test_train_prefix_keeps_vocabulary_and_held_out_splits(corpus):
    cut = corpus.with_train_prefix(5000)
    assert len(cut.train) <= 5000 and cut.train[-1] == 1  # ends at a paragraph end
    np.testing.assert_array_equal(cut.train, corpus.train[:len(cut.train)])
    assert cut.vocab == corpus.vocab and cut.test is corpus.test
    with pytest.raises(ValueError, match="no whole paragraph"):
        corpus.with_train_prefix(1)


def test_contexts_before_the_split_start_are_eos():
    assert context_windows(np.array([4], np.int32), 3).tolist() == [[1, 1, 1]]
