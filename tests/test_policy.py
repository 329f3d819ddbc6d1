"""The learned retrieval policy of ``retgen_v2.md`` §3 (:mod:`retgen_ref.v2.policy`)."""

import copy
import dataclasses
import json

import numpy as np
import pytest

from retgen_ref.lm import RetgenLM, load_corpus
from retgen_ref.v2 import EnergyReranker
from retgen_ref.v2.policy import RetrievalPolicy, _Data


@pytest.fixture(scope="module")
def model(corpus_dir):
    return RetgenLM(index="flat", resolutions=(1, 2, 3)).fit(load_corpus(corpus_dir))


@pytest.fixture(scope="module")
def reranker(model):
    return EnergyReranker(max_iterations=30).fit(model)


@pytest.fixture(scope="module")
def policy(model):
    return RetrievalPolicy(epochs=6, batch=256, lr=3e-3).fit(model)


def _scrambled(model, seed=1, scale=0.5):
    """An initial policy with random last layer and bias: every k gets chosen somewhere."""
    policy = RetrievalPolicy(epochs=0, seed=seed).fit(model)
    rng = np.random.default_rng(seed)
    policy.theta_["W3"] = rng.normal(scale=scale, size=policy.theta_["W3"].shape)
    policy.theta_["b3"] = rng.normal(scale=scale, size=policy.theta_["b3"].shape)
    return policy


def test_initial_policy_is_the_fitted_model(model):
    policy = RetrievalPolicy(epochs=0).fit(model)
    queries = model.context_queries(model.splits["valid"], max(model.levels))
    k, u, lam = policy.act(queries)
    assert np.all(k == model.k_) and np.all(u == 0) and np.all(lam == 0)
    for split in ("valid", "test"):
        np.testing.assert_allclose(policy.log_prob(model, split), model.log_prob(split),
                                   rtol=1e-9, atol=1e-12)
    assert policy.report_["valid_nll_before"] == pytest.approx(
        -model.log_prob("valid").mean(), rel=1e-9)


def test_initial_policy_on_a_reranker_is_the_reranker(model, reranker):
    assert not np.allclose(reranker.weights_, reranker.init_weights_)
    policy = RetrievalPolicy(epochs=0).fit(model, reranker)
    np.testing.assert_array_equal(policy.base_, reranker.weights_)
    for split in ("valid", "test"):
        np.testing.assert_allclose(policy.log_prob(model, split),
                                   reranker.log_prob(model, split), rtol=1e-9, atol=1e-12)


def test_direct_gradient_matches_finite_differences(model):
    policy = _scrambled(model, scale=0.3)
    data = _Data(model, model.splits["valid"], policy.ks_, policy.base_, max(model.levels))
    rows = np.arange(0, len(model.splits["valid"]), 5)
    _, d_out, cache = policy._objective_gradient(data, rows)
    grads = policy._backward(cache, d_out)
    rng = np.random.default_rng(0)
    eps = 1e-6
    for name, grad in grads.items():
        for idx in [tuple(rng.integers(0, n) for n in grad.shape) for _ in range(4)]:
            theta = policy.theta_[name]
            kept = theta[idx]
            theta[idx] = kept + eps
            plus = policy._objective_gradient(data, rows)[0]
            theta[idx] = kept - eps
            minus = policy._objective_gradient(data, rows)[0]
            theta[idx] = kept
            assert grad[idx] == pytest.approx((plus - minus) / (2 * eps), rel=1e-5, abs=1e-8), \
                (name, idx)
    # u and λ move the objective: the analytic path through the softmax is exercised
    assert np.abs(grads["b3"][-2:]).min() > 1e-6


@pytest.mark.parametrize("method", ["direct", "reinforce"])
def test_fit_does_not_worsen_the_held_out_nll(model, policy, method):
    fitted = policy if method == "direct" else \
        RetrievalPolicy("reinforce", epochs=4, batch=256, lr=3e-3).fit(model)
    report = fitted.report_
    assert report["held_out_nll_after"] <= report["held_out_nll_before"]
    assert 1 <= report["epochs"] <= (6 if method == "direct" else 4)
    assert sum(report["k_histogram"].values()) == len(model.splits["valid"])
    # the training loop's likelihood and log_prob (through weights()) agree
    log_p = fitted.log_prob(model, "valid")
    assert -log_p.mean() == pytest.approx(report["valid_nll_after"], rel=1e-9)
    assert -log_p[-report["n_held_out"]:].mean() == pytest.approx(
        report["held_out_nll_after"], rel=1e-9)


@pytest.mark.parametrize("method", ["direct", "reinforce"])
def test_fit_is_deterministic(model, method):
    a = RetrievalPolicy(method, epochs=2, batch=256, patience=2).fit(model)
    b = RetrievalPolicy(method, epochs=2, batch=256, patience=2).fit(model)
    for name in a.theta_:
        np.testing.assert_array_equal(a.theta_[name], b.theta_[name])
    assert a.report_ == b.report_


def test_weights_sum_to_one_and_stop_at_k(model):
    policy = _scrambled(model)
    stream = model.splits["valid"][:300]
    queries = model.context_queries(stream, max(model.levels))
    k, _, _ = policy.act(queries)
    assert len(np.unique(k)) >= 3
    hits = model.search_stream(stream, model.config.k_max)
    for r, (sims, ids) in hits.items():
        ids = ids.copy()
        ids[::7, 2:] = -1  # some queries with fewer neighbours
        ids[5, :] = -1     # and one with none
        a = policy.weights(model, r, sims, ids, queries)
        assert a.shape == ids.shape and a.dtype == np.float64
        past_k = np.arange(ids.shape[1]) >= k[:, None]
        assert np.all(a[past_k] == 0) and np.all(a[ids < 0] == 0) and np.all(a >= 0)
        has = (ids[:, 0] >= 0)
        np.testing.assert_allclose(a[has].sum(axis=1), 1.0, rtol=1e-12)
        assert a[5].sum() == 0


def test_state_round_trip(model, reranker):
    fitted = RetrievalPolicy(epochs=1, batch=256).fit(model, reranker)
    params, arrays = fitted.state()
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    again = RetrievalPolicy.from_state(json.loads(json.dumps(params)),
                                       {name: np.array(v) for name, v in arrays.items()})
    np.testing.assert_array_equal(again.log_prob(model, "test"), fitted.log_prob(model, "test"))
    assert again.report_ == fitted.report_


def test_bad_use_is_a_clear_error(model, policy):
    fresh = RetrievalPolicy()
    with pytest.raises(ValueError, match="not fitted"):
        fresh.log_prob(model, "valid")
    with pytest.raises(ValueError, match="not fitted"):
        fresh.act(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="not fitted"):
        fresh.state()
    with pytest.raises(ValueError, match="not fitted"):
        RetrievalPolicy().fit(RetgenLM())
    with pytest.raises(ValueError, match="method"):
        RetrievalPolicy("ppo")
    with pytest.raises(ValueError, match="hidden"):
        RetrievalPolicy(hidden=0)
    with pytest.raises(ValueError, match="lr"):
        RetrievalPolicy(lr=-1.0)
    with pytest.raises(ValueError, match="holdout"):
        RetrievalPolicy(holdout=1.5)
    with pytest.raises(ValueError, match="init_mass"):
        RetrievalPolicy(init_mass=1.0)
    other = copy.copy(model)
    other.levels = {r: level for r, level in model.levels.items() if r < 3}
    with pytest.raises(ValueError, match="refit the policy"):
        policy.log_prob(other, "valid")
    other = copy.copy(model)
    other.config = dataclasses.replace(model.config, k_max=64)
    with pytest.raises(ValueError, match="k_max"):
        policy.perplexity(other, "test")
    queries = model.context_queries(model.splits["valid"][:10], max(model.levels))
    with pytest.raises(ValueError, match="queries have shape"):
        policy.act(queries[:, :5])
    sims, ids = model.search_stream(model.splits["valid"][:10], 16)[1]
    with pytest.raises(ValueError, match="k=model.config.k_max"):
        policy.weights(model, 1, sims, ids, queries)
    params, arrays = policy.state()
    with pytest.raises(ValueError, match="format"):
        RetrievalPolicy.from_state({**params, "format": 99}, arrays)
    with pytest.raises(ValueError, match="lacks"):
        RetrievalPolicy.from_state(params, {k: v for k, v in arrays.items() if k != "W2"})
