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
    (full,) = one.generator_distributions(x, [passage])
    scored = [np.exp(one.log_marginals(x, np.array([v]))[0]) for v in range(len(model.vocab))]
    np.testing.assert_allclose(scored, full, rtol=1e-9)
    assert full.sum() == pytest.approx(1, abs=1e-12) and full.min() > 0


def test_rag_token_decoding_distribution_is_the_one_token_marginal(toy):
    _, model, rag = toy
    x = model.vocab.encode(["b", "b", "a"])
    passage_ids, eta = rag.retrieve(x)
    assert len(passage_ids) == 3
    dist = rag_generation_distribution(rag, x)
    marginal = [np.exp(rag.log_marginals(x, np.array([v]))[1]) for v in range(len(model.vocab))]
    np.testing.assert_allclose(dist, marginal, rtol=1e-9)
    np.testing.assert_allclose(
        dist, eta @ np.array([rag.generator_distributions(x, [z])[0] for z in passage_ids]),
        rtol=1e-12)


def rag_generation_distribution(rag, x):
    from retgen_ref.rag.retgen_rag import _PassageConditioned
    return _PassageConditioned(rag, *rag.retrieve(x)).predict(x).distribution


def test_marginals_still_sum_to_one_when_fewer_passages_than_k_exist(toy):
    _, model, rag = toy
    few = rag.passages[:2]
    padded = RetgenRAG(model, BM25Retriever().fit(few, len(model.vocab)), few, k=4,
                       query_window=8, chunk=4)
    padded.mixture_, padded.tau_eta_ = rag.mixture_, 0.5
    assert len(padded.retrieve("a b")[0]) == 2   # two real passages, two padding slots
    x = model.vocab.encode(["a", "c"])
    seq, tok = np.exp([padded.log_marginals(x, np.array(y))
                       for y in itertools.product(range(len(model.vocab)), repeat=2)]).T
    assert seq.sum() == pytest.approx(1, abs=1e-9) and tok.sum() == pytest.approx(1, abs=1e-9)


def test_every_chunk_of_a_split_is_scored_as_its_own_query_and_output(toy):
    _, model, rag = toy
    stream = model.splits["test"]
    chunks = rag.chunk_log_probs(stream)
    # The model reads at most 2 tokens back, so the 8-token query window before a chunk is
    # all the context its tokens need: each chunk scores as (window, chunk) on its own.
    starts = range(rag.query_window, len(stream), rag.chunk)
    assert len(chunks["tokens"]) == len(starts)
    for c, start in enumerate(starts):
        stop = min(start + rag.chunk, len(stream))
        log_seq, log_tok = rag.log_marginals(stream[max(0, start - rag.query_window):start],
                                             stream[start:stop])
        assert chunks["tokens"][c] == stop - start
        assert chunks["rag_sequence"][c] == pytest.approx(log_seq, rel=1e-9)
        assert chunks["rag_token"][c] == pytest.approx(log_tok, rel=1e-9)


def test_passage_resolution_zero_is_the_passage_word_frequencies(toy):
    _, model, _ = toy
    passage = model.vocab.encode(["a", "a", "b"])
    store = PassageStore(model, passage, (0,))
    P, M = store.distributions({0: np.zeros((1, 0), np.float32)})
    expected = np.bincount(np.append(passage, 1), minlength=len(model.vocab)) / 4
    np.testing.assert_allclose(P[0], expected)
    assert M[0] == pytest.approx(4)


@pytest.fixture(scope="module")
def small(corpus_dir):
    """A model of the two-document corpus (vocabulary of about 1,300) with a BM25 RAG."""
    corpus = load_corpus(corpus_dir)
    model = RetgenLM(index="flat", resolutions=(1, 2)).fit(corpus)
    passages = corpus.paragraphs("train")
    rag = RetgenRAG(model, BM25Retriever().fit(passages, len(corpus.vocab)), passages,
                    k=3).fit()
    return model, rag


def test_generator_backs_off_to_the_model_outside_the_passage(small):
    model, rag = small
    x = model.encode_context("she could not")
    plain = model.next_token_distribution(x)
    for passage_id in range(3):
        (dist,) = rag.generator_distributions(x, [passage_id])
        assert dist.sum() == pytest.approx(1, abs=1e-12) and dist.min() > 0
        seen = np.append(rag.passages[passage_id], 1)   # its tokens and <eos>
        outside = np.setdiff1d(np.arange(len(model.vocab)), seen)
        ratio = dist[outside] / plain[outside]   # the floor's weight w_0, the same for all
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)
        assert 0 < ratio[0] < 1


def test_evaluate_scores_the_same_tokens_for_all_three(toy):
    _, model, rag = toy
    out = rag.evaluate("test")
    stream = model.splits["test"]
    assert out["tokens"] == len(stream) - rag.query_window
    assert out["chunks"] == -(-out["tokens"] // rag.chunk)
    plain = np.exp(-model.log_prob(stream)[rag.query_window:].mean())
    assert out["plain_ppl"] == pytest.approx(plain, rel=1e-12)
    assert np.isfinite(out["rag_token_ppl"]) and np.isfinite(out["rag_sequence_ppl"])


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
    with pytest.raises(ValueError, match="passage id must be >= 0"):
        rag.generator_distributions("a b", [-1])
    with pytest.raises(ValueError, match="x and y each need"):
        rag.log_marginals([], "a")
    with pytest.raises(ValueError, match="tau_grid"):
        copy.copy(rag).fit(tau_grid=())
    with pytest.raises(ValueError, match=r"passage 1: token ids must be in \[0, 5\)"):
        RetgenRAG(model, BM25Retriever().fit([[2], [9]], 10), [[2], [9]])
    P, M = np.full((2, 4), 0.5), np.ones((2, 4))
    with pytest.raises(ValueError, match="sum to 1 over each token"):
        ConfidenceMixture().fit(P, M, prior=np.full(4, 0.5), groups=np.array([0, 0, 2, 2]))
    with pytest.raises(ValueError, match="both prior and groups"):
        ConfidenceMixture().fit(P, M, prior=np.ones(4))


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
    # a word in no document (id 1 is <eos>; use a fresh collection without term 5)
    unseen = DenseRetriever(wv).fit(docs[:2])
    np.testing.assert_allclose(unseen.term_weights_[5], np.log(2))  # log N, the largest idf
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
    test_paragraphs = [p for p in corpus.paragraphs("test")
                       if first_sentence_end(p, corpus.vocab) < len(p)]
    assert len(task.queries) == len(test_paragraphs)
    for query, item, paragraph in zip(task.queries, task.relevant, test_paragraphs):
        np.testing.assert_array_equal(np.concatenate([query, task.collection[item]]), paragraph)
    # The collection: the distinct rests of the paragraphs of all three splits.
    rests = {tuple(p[first_sentence_end(p, corpus.vocab):])
             for split in ("train", "valid", "test") for p in corpus.paragraphs(split)} - {()}
    assert {tuple(item) for item in task.collection} == rests
    assert len(task.collection) == len(rests)
    # Asked for the rest itself, TF-IDF scores the relevant id best (cosine 1).
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
    assert main(["rag", "--model", str(tmp_path / "m"), "--query", "anne",
                 "--fit-tokens", "10"]) == 2
    assert "--fit-tokens must be more than" in capsys.readouterr().err
