"""What ``retgen-ref demo`` shows: the RETGEN LM on the bundled corpus, attention as retrieval."""

from __future__ import annotations

import numpy as np

from .attention import dropped_mass, retrieval_attention, softmax_attention, topk_error_bound

PROMPTS = ("it is a truth universally", "she could not help", "i am sure", "mr.")


def lm_demo(train_tokens: int, seed: int, progress=None) -> None:
    """Train RETGEN on (a prefix of) the Austen training split, print perplexities and
    a few next-token predictions with the stored patterns they were retrieved from."""
    from .lm import RetgenLM, load_corpus

    corpus = load_corpus("austen")
    if train_tokens:
        corpus = corpus.with_train_prefix(train_tokens)
    print(f"RETGEN language model (retgen.md §11.1) on {corpus.name}")
    model = RetgenLM(seed=seed).fit(corpus, progress=progress)
    result = model.evaluate()
    print(f"{model.n_patterns:,} patterns at resolutions {list(model.levels)} in "
          f"{model.config.index} indexes, built and fitted on valid in "
          f"{model.train_seconds_:.0f} s (k={model.k_}, tau={model.tau_})\n")
    print(f"{'model':<30} {'valid ppl':>10} {'test ppl':>10}")
    for name, key in (("RETGEN", ""), ("RETGEN + KN-5 (interpolated)", "_interpolated")):
        print(f"{name:<30} {result['valid_ppl' + key]:>10.2f} {result['test_ppl' + key]:>10.2f}")
    for name, key in (("Kneser-Ney 5-gram", "kn5"), ("unigram (add-one)", "unigram")):
        print(f"{name:<30} {result[key + '_valid_ppl']:>10.2f} {result[key + '_test_ppl']:>10.2f}")
    print("\nNext-token predictions and the patterns behind them (top 3 per resolution):")
    for prompt in PROMPTS:
        dist = model.next_token_distribution(prompt)
        top = np.argsort(dist)[::-1][:3]
        guesses = ", ".join(f"{model.vocab.tokens[i]!r} {dist[i]:.2f}" for i in top)
        print(f"\n  {prompt!r} -> {guesses}")
        for found in model.retrieve(prompt):
            patterns = "; ".join(
                f"{' '.join(model.vocab.decode(p))!r} s={s:.2f} w={w:.2f}"
                for p, s, w in list(zip(found.patterns, found.similarity, found.weight))[:3])
            print(f"    r={found.resolution} (mixture weight {found.mixture_weight:.2f}): {patterns}")
    generation_demo(model, seed)


def generation_demo(model, seed: int, prompt: str = "she could not help",
                    traced: int = 6) -> None:
    """A sampled continuation (top-p 0.9, repetition penalty 1.3) with its trace (§11)."""
    out = model.generate(prompt, 30, trace=True, strategy="sample", top_p=0.9,
                         repetition_penalty=1.3, seed=seed)
    print(f"\nGenerated (top-p 0.9, repetition penalty 1.3, seed {seed}):\n  {prompt} {out.text}")
    print(f"\nRetrieval trace of the first {traced} tokens (top patterns: resolution, share "
          "of P, P(token | pattern)):")
    for step in out.trace[:traced]:
        patterns = "; ".join(f"r={p['resolution']} {p['text']!r} {p['weight']:.2f} "
                             f"{p['next_token_prob']:.2f}" for p in step.patterns)
        print(f"  {step.token!r:>12} p={step.prob:.2f}  {patterns}")


def attention_demo(n: int, nq: int, seed: int) -> None:
    """Attention as retrieval on a random head: the duality, then top-k error vs its bound."""
    rng = np.random.default_rng(seed)
    d = dv = 64
    # Keys in 32 clusters and queries near them: attention concentrates on a few keys,
    # as in a trained head, instead of spreading evenly as with isotropic noise.
    centres = 2.0 * rng.standard_normal((32, d))
    K = centres[rng.integers(0, 32, n)] + rng.standard_normal((n, d))
    Q = centres[rng.integers(0, 32, nq)] + rng.standard_normal((nq, d))
    V = rng.standard_normal((n, dv))

    exact = softmax_attention(Q, K, V)
    full = retrieval_attention(Q, K, V).output
    print(f"Attention as retrieval (retgen.md §2): one head, n={n} keys, d={d}, {nq} queries\n")
    print("Theorem 2.1, every key scored (tau = sqrt(d)):")
    print(f"  max |softmax_attention - retrieval_attention| = {np.abs(exact - full).max():.1e}\n")
    print("Top-k retrieval through a FlatIndex, softmax renormalised over the k keys;")
    print("eps = dropped softmax mass, bound = 2 eps max|v_i|  (worst query of the batch):\n")
    print(f"{'k':>6}  {'max eps':>9}  {'max |A - A_k|':>13}  {'max bound':>9}  {'max (error - bound)':>19}")
    for k in (1, 4, 16, 64, 256, 1024):
        if k > n:
            break
        result = retrieval_attention(Q, K, V, k=k)
        eps = dropped_mass(Q, K, result.ids)
        err = np.linalg.norm(exact - result.output, axis=1)
        bound = topk_error_bound(eps, V)
        excess = np.max(err - bound)
        print(f"{k:>6}  {eps.max():>9.2e}  {err.max():>13.2e}  {bound.max():>9.2e}  {excess:>19.1e}")
    print("\nerror - bound <= 0 for every query, up to float64 rounding (~1e-15) once eps is")
    print("below it. `retgen-ref` checks this and more in `make test`.")


