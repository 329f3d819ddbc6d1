"""RAG-Sequence and RAG-Token with RETGEN as generator: exact marginals on a toy vocabulary,
the generator's two paths, p_η, the EM with latent passages, the dense retriever, the
known-item task and the ``rag`` command."""

import copy
import itertools
import json

import numpy as np
import pytest

from retgen_ref.cli import main
from retgen_ref.lm import RetgenLM, load_corpus
from retgen_ref.lm.mixing import ConfidenceMixture
from retgen_ref.rag import (BM25Retriever, DenseRetriever, PassageStore, RetgenRAG,
                            TfidfRetriever, retriever_distribution)
from retgen_ref.rag.known_item import first_sentence_end, known_item_task


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A model and a RAG over a corpus of three words: a vocabulary of 5 (with <unk>, <eos>)."""
    rng = np.random.default_rng(0)
    words = np.array(["a", "b", "c"])
    # Paragraphs with different word habits, so passages carry information.
    paragraphs = [" ".join(words[rng.choice(3, rng.integers(3, 9), p=rng.dirichlet([.5] * 3))])
                  for _ in range(120)]
    folder = tmp_path_factory.mktemp("toy")
    (folder / "toy.txt").write_text("\n".join(paragraphs) + "\n")
    corpus = load_corpus(folder)
    model = RetgenLM(index="flat", resolutions=(1, 2)).fit(corpus)
    passages = corpus.paragraphs("train")
    rag = RetgenRAG(model, BM25Retriever().fit(passages, len(corpus.vocab)), passages, k=3,
                    query_window=8, chunk=4).fit()
    return corpus, model, rag


def test_toy_vocabulary_is_tiny(toy):
    corpus, _, _ = toy
    assert len(corpus.vocab) == 5


@pytest.mark.parametrize("tau", [0.3, np.inf])
def test_both_marginals_sum_to_one_over_every_sequence_and_agree_on_one_token(toy, tau):
    _, model, fitted = toy
    rag = copy.copy(fitted)
    rag.tau_eta_ = tau
    x = model.vocab.encode(["a", "b", "b", "c"])
    V = len(model.vocab)
    for n in (1, 2, 3):
        seq, tok = np.array([np.exp(rag.log_marginals(x, np.array(y)))
                             for y in itertools.product(range(V), repeat=n)]).T
        assert seq.sum() == pytest.approx(1, abs=1e-9)
        assert tok.sum() == pytest.approx(1, abs=1e-9)
        if n == 1:
            np.testing.assert_allclose(seq, tok, rtol=1e-12)
        else:  # the passage matters, so the two marginals are different distributions
            assert np.abs(seq - tok).max() > 1e-6


def test_scoring_path_equals_the_full_generator_distribution(toy):
    corpus, model, rag = toy
    one = RetgenRAG(model, rag.retriever, rag.passages, k=1, query_window=8, chunk=4)
    one.mixture_, one.tau_eta_ = rag.mixture_, rag.tau_eta_
    x = model.vocab.encode(["c", "a", "a"])
    (passage,), (eta,) = one.retrieve(x)
    assert eta == 1.0
    full = one.generator_distribution(x, passage)
    scored = [np.exp(one.log_marginals(x, np.array([v]))[0]) for v in range(len(model.vocab))]
    np.testing.assert_allclose(scored, full, rtol=1e-9)
    assert full.sum() == pytest.approx(1, abs=1e-12) and full.min() > 0


def test_passage_resolution_zero_is_the_passage_word_frequencies(toy):
    _, model, _ = toy
    passage = model.vocab.encode(["a", "a", "b"])
    store = PassageStore(model, passage, (0,))
    P, M = store.distributions({0: np.zeros((1, 0), np.float32)})
    expected = np.bincount(np.append(passage, 1), minlength=len(model.vocab)) / 4
    np.testing.assert_allclose(P[0], expected)
    assert M[0] == pytest.approx(4)


def test_generator_backs_off_to_the_model(toy):
    _, model, rag = toy
    x = model.vocab.encode(["a", "b"])
    for passage in range(3):
        dist = rag.generator_distribution(x, passage)
        assert dist.min() > 0 and dist.sum() == pytest.approx(1, abs=1e-12)


def test_evaluate_scores_the_same_tokens_for_all_three(toy):
    _, model, rag = toy
    out = rag.evaluate("test")
    stream = model.splits["test"]
    assert out["tokens"] == len(stream) - rag.query_window
    assert out["chunks"] == -(-out["tokens"] // rag.chunk)
    plain = np.exp(-model.log_prob(stream)[rag.query_window:].mean())
    assert out["plain_ppl"] == pytest.approx(plain, rel=1e-12)
    assert np.isfinite(out["rag_token_ppl"]) and np.isfinite(out["rag_sequence_ppl"])


def test_fit_keeps_the_best_tau_on_valid(toy):
    _, _, rag = toy
    report = rag.fit_report_["tau_eta_ppl"]
    assert rag.tau_eta_ == min(report, key=report.get)


def test_retriever_distribution_is_the_top_k_softmax():
    scores = np.array([[2.0, 1.0, -np.inf], [0.5, 0.5, 0.5]])
    p = retriever_distribution(scores, tau=0.5)
    e = np.exp(np.array([2.0, 1.0]) / 0.5)
    np.testing.assert_allclose(p[0], [e[0] / e.sum(), e[1] / e.sum(), 0])
    np.testing.assert_allclose(p[1], 1 / 3)
    np.testing.assert_allclose(retriever_distribution(scores, np.inf)[0], [.5, .5, 0])
    with pytest.raises(ValueError, match="tau"):
        retriever_distribution(scores, 0)
    with pytest.raises(ValueError, match="no passage"):
        retriever_distribution(np.full((1, 2), -np.inf))


def test_em_with_latent_choices_matches_plain_em_on_copies_and_is_a_local_optimum():
    rng = np.random.default_rng(1)
    P = rng.uniform(0.01, 1, (3, 400))
    M = rng.uniform(0, 50, (3, 400))
    M[0] = np.inf
    plain = ConfidenceMixture().fit(P, M)
    # Three identical copies of every column, each chosen with prior 1/3: the same likelihood.
    copies = ConfidenceMixture().fit(np.repeat(P, 3, axis=1), np.repeat(M, 3, axis=1),
                                     prior=np.full(1200, 1 / 3),
                                     groups=np.repeat(np.arange(400), 3))
    np.testing.assert_allclose(copies.lambdas_, plain.lambdas_, rtol=1e-9, atol=1e-12)

    groups, prior = np.repeat(np.arange(100), 4), rng.dirichlet(np.ones(4), 100).ravel()

    def nll(mixture):
        joint = prior * (mixture.weights(M) * P).sum(axis=0)
        return -np.log(np.bincount(groups, joint)).mean()

    fitted = ConfidenceMixture().fit(P, M, prior=prior, groups=groups)
    for _ in range(20):  # any other λ does no better
        other = ConfidenceMixture()
        other.lambdas_ = np.clip(fitted.lambdas_ + rng.normal(0, 0.05, fitted.lambdas_.shape),
                                 1e-6, 1 - 1e-6)
        other.lambdas_[0] = 1.0
        assert nll(fitted) <= nll(other) + 1e-9


def test_rag_input_errors(toy):
    corpus, model, rag = toy
    with pytest.raises(ValueError, match="fit it on the same passages"):
        RetgenRAG(model, rag.retriever, rag.passages[:-1])
    with pytest.raises(ValueError, match="fit the RAG model first"):
        RetgenRAG(model, rag.retriever, rag.passages).retrieve("a b")
    with pytest.raises(ValueError, match="query_window"):
        rag.evaluate(np.array([2, 3, 4], np.int32))


def test_rag_token_generation_is_reproducible(toy):
    _, _, rag = toy
    first, ids, eta = rag.generate("a b", 6, strategy="sample", seed=3)
    again, _, _ = rag.generate("a b", 6, strategy="sample", seed=3)
    assert first.tokens == again.tokens and len(first.tokens) == 6
    assert eta.sum() == pytest.approx(1) and len(ids) == rag.k


def test_dense_embedding_is_the_idf_weighted_mean_of_word_vectors():
    rng = np.random.default_rng(0)
    wv = rng.standard_normal((6, 4)).astype(np.float32)
    docs = [np.array([2, 3, 3]), np.array([3, 4]), np.array([5, 0, 1])]
    dense = DenseRetriever(wv).fit(docs)
    idf = np.log(3 / np.array([1, 2, 1, 1]))  # terms 2..5
    u = idf[0] * wv[2] + 2 * idf[1] * wv[3]
    np.testing.assert_allclose(dense.embed([docs[0]])[0], u / np.linalg.norm(u), rtol=1e-5)
    assert np.all(dense.embed([np.array([0, 1])]) == 0)  # <unk>, <eos> weigh nothing
    scores, ids = dense.search(docs, 2)
    assert ids[:, 0].tolist() == [0, 1, 2]
    np.testing.assert_allclose(scores[:, 0], 1, rtol=1e-5)
    with pytest.raises(ValueError, match="weighting"):
        DenseRetriever(wv, weighting="sif")


def test_dense_hnsw_finds_what_flat_finds(corpus_dir):
    corpus = load_corpus(corpus_dir)
    model = RetgenLM(index="flat", resolutions=(1,)).fit(corpus)
    paragraphs = corpus.paragraphs("train")
    flat = DenseRetriever(model.word_vectors).fit(paragraphs)
    hnsw = DenseRetriever(model.word_vectors, index="hnsw").fit(paragraphs)
    queries = corpus.paragraphs("test")
    _, exact = flat.search(queries, 5)
    _, approx = hnsw.search(queries, 5)
    recall = np.mean([len(set(a) & set(e)) / 5 for a, e in zip(approx, exact)])
    assert recall > 0.9


def test_first_sentence_skips_title_abbreviations(corpus_dir):
    corpus = load_corpus(corpus_dir)
    ids = corpus.vocab.encode(["mr", ".", "darcy", "came", "!", "he", "sat", "."])
    assert first_sentence_end(ids, corpus.vocab) == 5
    assert first_sentence_end(ids[:4], corpus.vocab) == 4


def test_known_item_task_pairs_each_first_sentence_with_the_rest(corpus_dir):
    corpus = load_corpus(corpus_dir)
    task = known_item_task(corpus, "test")
    test_paragraphs = {tuple(p) for p in corpus.paragraphs("test")}
    for query, item in zip(task.queries, task.relevant):
        assert tuple(np.concatenate([query, task.collection[item]])) in test_paragraphs
    # Asked for the rest itself, TF-IDF scores the relevant id best (cosine 1; identical
    # rests such as '" said she.' tie with it).
    scores = TfidfRetriever().fit(task.collection, len(corpus.vocab)).scores(
        [task.collection[i] for i in task.relevant])
    own = scores[np.arange(len(scores)), task.relevant]
    np.testing.assert_allclose(own, scores.max(axis=1), rtol=1e-12)
    np.testing.assert_allclose(own, 1, rtol=1e-12)


def test_rag_cli_shows_passages_with_p_eta_and_a_continuation(corpus_dir, tmp_path, capsys):
    model = RetgenLM(index="flat", resolutions=(1, 2)).fit(load_corpus(corpus_dir))
    model.save(tmp_path / "m")
    for retriever in ("bm25", "tfidf", "dense"):
        assert main(["rag", "--model", str(tmp_path / "m"), "--query", "anne walked",
                     "--retriever", retriever, "--k", "3", "--max-tokens", "5",
                     "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert len(out["passages"]) == 3
        assert sum(p["p_eta"] for p in out["passages"]) == pytest.approx(1)
        assert out["continuation"]
    assert main(["rag", "--model", str(tmp_path / "m"), "--query", "anne walked"]) == 0
    text = capsys.readouterr().out
    assert "p_η=" in text and "anne walked >>" in text
    assert main(["rag", "--model", str(tmp_path / "m"), "--query", "anne", "--k", "0"]) == 2
    assert "k must be >= 1" in capsys.readouterr().err
