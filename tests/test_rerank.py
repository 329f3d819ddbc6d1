"""The energy-based reranker of ``retgen_v2.md`` §5 (:mod:`retgen_ref.v2.rerank`)."""

import numpy as np
import pytest

from retgen_ref.lm import RetgenLM, load_corpus
from retgen_ref.v2 import EnergyReranker, neighbour_features
from retgen_ref.v2.rerank import nll_and_gradient


@pytest.fixture(scope="module")
def model(corpus_dir):
    return RetgenLM(index="flat", resolutions=(1, 2, 3)).fit(load_corpus(corpus_dir))


@pytest.fixture(scope="module")
def reranker(model):
    return EnergyReranker().fit(model)


def test_kernel_weights_are_the_initial_energy(model):
    reranker = EnergyReranker(max_iterations=1)
    reranker.fit(model)
    assert reranker.report_["valid_nll_before"] == pytest.approx(
        -model.log_prob("valid").mean(), rel=1e-9)
    reranker.weights_ = reranker.init_weights_
    for split in ("valid", "test"):
        assert reranker.perplexity(model, split) == pytest.approx(model.perplexity(split),
                                                                  rel=1e-9)
    np.testing.assert_allclose(reranker.log_prob(model, "valid"), model.log_prob("valid"),
                               rtol=1e-9, atol=1e-12)


def test_features_match_their_definitions(model):
    stream = model.splits["valid"][:40]
    hits = model.search_stream(stream, model.k_)
    feats = neighbour_features(model, stream, hits, model.k_)
    for r, feat in feats.items():
        level = model.levels[r]
        t = int(np.argmax(feat.mask.sum(axis=1)))
        ids = hits[r][1][t, :model.k_][feat.mask[t]]
        e = model.encoder.encode(level.table.contexts[ids]).astype(np.float64)
        if len(ids) > 1:
            cos = e @ e.T
            expected = (cos.sum(axis=1) - np.diag(cos)) / (len(ids) - 1)
            np.testing.assert_allclose(feat.div[t][feat.mask[t]], expected, atol=1e-5)
        by_hand = []  # P_emp(y | p) straight from each pattern's (token, count) row
        for i in ids:
            row = dict(zip(*level.table.next_token_counts(i)))
            by_hand.append(row.get(stream[t], 0.0) / sum(row.values()))
        np.testing.assert_allclose(feat.target_probs[t][feat.mask[t]], by_hand)
        assert np.any(feat.target_probs[feat.mask] > 0)
        np.testing.assert_allclose(np.exp(feat.log_counts[t][feat.mask[t]]), level.totals[ids])


def test_gradient_matches_finite_differences(model):
    reranker = EnergyReranker()
    stream = model.splits["valid"]
    phis, features, mixture, floor = reranker._data(model, stream)
    rng = np.random.default_rng(0)
    w0 = np.tile([1 / model.tau_, 0.0, -1.0], (len(phis), 1))
    w = w0 + rng.normal(scale=[2.0, 1.0, 0.3], size=w0.shape)
    loss, grad = nll_and_gradient(w, phis, features, mixture, floor, w0, 0.01)
    eps = 1e-6
    numeric = np.zeros_like(w)
    for idx in np.ndindex(*w.shape):
        step = np.zeros_like(w)
        step[idx] = eps
        plus, _ = nll_and_gradient(w + step, phis, features, mixture, floor, w0, 0.01)
        minus, _ = nll_and_gradient(w - step, phis, features, mixture, floor, w0, 0.01)
        numeric[idx] = (plus - minus) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def test_valid_nll_does_not_increase_and_report_is_consistent(model, reranker):
    report = reranker.report_
    assert report["valid_nll_after"] <= report["valid_nll_before"] + 1e-12
    assert report["iterations"] >= 1
    assert -reranker.log_prob(model, "valid").mean() == pytest.approx(
        report["valid_nll_after"], rel=1e-9)
    assert set(report["weights"]) == {str(r) for r in model.levels}  # JSON keys


def test_fit_is_deterministic(model, reranker):
    again = EnergyReranker().fit(model)
    np.testing.assert_array_equal(again.weights_, reranker.weights_)


def test_bad_use_is_a_clear_error(model):
    with pytest.raises(ValueError, match="not fitted"):
        EnergyReranker().log_prob(model, "valid")
    with pytest.raises(ValueError, match="rho"):
        EnergyReranker(rho=-1.0)
    with pytest.raises(ValueError, match="not fitted"):
        EnergyReranker().fit(RetgenLM())


@pytest.fixture(scope="module")
def reranked_model(corpus_dir):
    """The same model with the reranker learned in ``fit`` and used by every score."""
    return RetgenLM(index="flat", resolutions=(1, 2, 3), rerank=True).fit(
        load_corpus(corpus_dir))


def test_a_model_fitted_with_rerank_scores_with_its_reranker(reranked_model, reranker, model):
    np.testing.assert_array_equal(reranked_model.reweighting_.weights_, reranker.weights_)
    np.testing.assert_allclose(reranked_model.log_prob("test"), reranker.log_prob(model, "test"),
                               rtol=1e-12)
    result = reranked_model.evaluate()
    assert result["valid_ppl"] < result["valid_ppl_kernel"] == pytest.approx(
        model.perplexity("valid"), rel=1e-12)


def test_reranked_prediction_equals_the_batch_score(reranked_model):
    """``predict`` (one context, the reranked weights of its own search) agrees with
    ``log_prob`` of the stream, and its trace shows the weights it used."""
    stream = reranked_model.splits["test"][:40]
    logp = reranked_model.log_prob(stream)
    for t in (0, 1, 5, 39):
        prediction = reranked_model.predict(stream[:t])
        assert prediction.distribution.sum() == pytest.approx(1, abs=1e-9)
        assert np.log(prediction.distribution[stream[t]]) == pytest.approx(logp[t], abs=1e-5)
        for found in prediction.retrieved:
            assert found.weight.sum() == pytest.approx(1)
            assert len(found.weight) <= reranked_model.k_


def test_reranked_model_round_trips_and_generates(reranked_model, tmp_path):
    reranked_model.save(tmp_path / "m")
    loaded = RetgenLM.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.log_prob("test"), reranked_model.log_prob("test"))
    assert loaded.reweighting_.report_ == reranked_model.reweighting_.report_
    first = loaded.generate("she could not", max_tokens=8, strategy="sample", seed=3, trace=True)
    again = reranked_model.generate("she could not", max_tokens=8, strategy="sample", seed=3)
    assert first.tokens == again.tokens and len(first.trace) == 8
