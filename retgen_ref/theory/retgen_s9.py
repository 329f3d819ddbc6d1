"""``retgen.md`` §9: online updates (Thm 9.1) and concept-drift adaptation (Thm 9.2).

Checked on our pattern tables with the very operations
:func:`retgen_ref.lm.online.add_streams` performs for ``RetgenLM.add_token_streams``:
:func:`~retgen_ref.lm.patterns.extract_patterns` on the new text and
:func:`~retgen_ref.lm.patterns.add_to_table` with the decay factor ``e^{−λΔt}``
(fitting a whole RetgenLM takes longer than these checks' budget; the model's update is
exactly these two calls per resolution, plus appending the new contexts to the index).
"""

from __future__ import annotations

import numpy as np

from ..lm.patterns import add_to_table, count_patterns, extract_patterns, pattern_ids
from .registry import claim, judge, loglog_evidence


def _markov_stream(rng, n: int, vocab: int = 300) -> np.ndarray:
    """A Zipf-ish first-order Markov token stream (ids 3 … vocab+2, clear of specials)."""
    trans = rng.dirichlet(np.full(vocab, 0.05), size=vocab).cumsum(axis=1)
    out = np.empty(n, np.int32)
    state = 0
    u = rng.random(n)
    for t in range(n):
        state = min(int(np.searchsorted(trans[state], u[t])), vocab - 1)
        out[t] = state + 3
    return out


def _canonical(table):
    """``table`` regrouped by :func:`count_patterns` (rows in lexicographic order), the
    form :func:`extract_patterns` builds, so a merged table compares with a rebuilt one."""
    rows = np.repeat(np.arange(len(table)), np.diff(table.offsets))
    return count_patterns(table.contexts[rows], table.next_tokens, table.next_counts)


def _table_difference(a, b) -> float:
    """0 if the two tables hold the same patterns and counts, else the largest count
    difference (or 1 if their patterns differ)."""
    if not (np.array_equal(a.contexts, b.contexts) and np.array_equal(a.offsets, b.offsets)
            and np.array_equal(a.next_tokens, b.next_tokens)):
        return 1.0
    return float(np.abs(a.next_counts - b.next_counts).max())


@claim("retgen/thm9.1",
       "Adding a document of m tokens costs O(m·ℓ·(d + log M)), independent of the corpus "
       "size N.",
       "The rows the update must touch, counted on our pattern tables for resolutions "
       "1…ℓ: patterns whose counts change (touched) and contexts appended to the index "
       "(each then embedded, O(ℓ·d), and inserted, O(d·log M) with HNSW: measured in "
       "Thm 5.2/6.2), swept over N (corpus tokens), m and ℓ = 1…8; each count must stay "
       "within m^a·ℓ^b·N^c (exponents claimed: 1, 1, 0) with constant 1 — one row per "
       "token and resolution — and the updated table must equal a rebuild on corpus + "
       "document. Unconditional: the entries our CSR merge re-sorts (table + new).",
       refuted_by=({"m_exponent": 0.8}, {"ell_exponent": 0.8}, {"n_exponent": -0.2}))
def thm9_1(rng, fast, *, m_exponent=1.0, ell_exponent=1.0, n_exponent=0.0):
    Ns = [5_000, 20_000] if fast else [5_000, 20_000, 80_000]
    ms, ells = [50, 500, 2_000], [1, 2, 4, 8]
    stream = _markov_stream(rng, max(Ns) + max(ms))
    rows, worst, worst_outside, rebuild_difference = [], None, 0.0, 0.0
    for N in Ns:
        base = stream[:N]
        for m in ms:
            doc = stream[-m:]
            touched = appended = resorted = 0
            for r in range(1, max(ells) + 1):
                table, new = extract_patterns(base, r), extract_patterns(doc, r)
                merged, added = add_to_table(table, new)
                rebuild_difference = max(rebuild_difference, _table_difference(
                    _canonical(merged), extract_patterns([base, doc], r)))
                touched += len(new)  # rows of the merged table that received counts
                appended += len(added)
                resorted += len(table.next_tokens) + len(new.next_tokens)
                if r not in ells:
                    continue
                bound = m ** m_exponent * r ** ell_exponent * N ** n_exponent
                row = {"N": N, "m": m, "ell": r, "touched_patterns": touched,
                       "appended_to_index": appended, "entries_resorted_by_merge": resorted,
                       "bound": bound}
                rows.append(row)
                if worst is None or touched / bound > worst["touched_patterns"] / worst["bound"]:
                    worst = row
                worst_outside = max(worst_outside, resorted / bound - 1)
    violation = max(worst["touched_patterns"] / worst["bound"] - 1, rebuild_difference)
    top_ell = max(ells)
    by_m = [r for r in rows if r["N"] == Ns[-1] and r["ell"] == top_ell]
    by_n = [r for r in rows if r["m"] == ms[0] and r["ell"] == top_ell]
    curves = [loglog_evidence(ms, [r["touched_patterns"] for r in by_m],
                              xlabel=f"m (N = {Ns[-1]:,}, ℓ = 1…{top_ell})",
                              ylabel="rows of the update", label="touched patterns",
                              claimed_slope=m_exponent),
              loglog_evidence(Ns, [r["touched_patterns"] for r in by_n],
                              xlabel=f"N (m = {ms[0]}, ℓ = 1…{top_ell})",
                              ylabel="rows of the update", label="touched patterns",
                              claimed_slope=n_exponent),
              loglog_evidence(Ns, [r["entries_resorted_by_merge"] for r in by_n],
                              xlabel=f"N (m = {ms[0]}, ℓ = 1…{top_ell})",
                              ylabel="rows of the update", label="entries our merge re-sorts",
                              claimed_slope=n_exponent)]
    return judge({"cases": rows, "rebuild_max_difference": rebuild_difference,
                  "loglog": curves},
                 violation, 1e-9,
                 counterexample={**worst, "rebuild_max_difference": rebuild_difference},
                 conditions="the O(m·ℓ) rows (touched patterns ≥ appended index rows, both "
                            "≤ m per resolution for every N here) are the whole update only "
                            "with an in-place hash table and an index with O(d log M) "
                            "inserts; our CSR add_to_table re-sorts all stored entries "
                            f"(entries_resorted_by_merge up to {worst_outside + 1:.0f}× m·ℓ, "
                            "growing with N)",
                 unconditional_violation=worst_outside)


def _drift_error(n_old_steps: int, old_rate: int, new_rate: int, lam: float, tau: int,
                 formula_lam: float):
    """P(b | a) after τ unit-time updates with a → c, when earlier data said a → b.

    Old data: ``old_rate`` pairs (a, b) added at each of ``n_old_steps`` times before the
    drift (1 step = a burst at once). Returns the error measured on our decayed tables,
    the closed form W_old·e^{−λτ} / (W_old·e^{−λτ} + W_new(τ)) evaluated with decay
    ``formula_lam``, and the number of new tokens."""
    a, b, c = 10, 11, 12
    table = None
    for _ in range(n_old_steps):
        new = extract_patterns(np.tile(np.array([a, b], np.int32), old_rate), 1)
        table = new if table is None else add_to_table(table, new, np.exp(-lam))[0]
    for _ in range(tau):
        new = extract_patterns(np.tile(np.array([a, c], np.int32), new_rate), 1)
        table = add_to_table(table, new, np.exp(-lam))[0]
    row = int(pattern_ids(table, np.array([[a]], np.int32))[0])
    toks, counts = table.next_token_counts(row)
    err = float(counts[toks == b].sum() / counts.sum())
    decay = np.exp(-formula_lam * np.arange(max(n_old_steps, tau)))
    w_old = old_rate * decay[:n_old_steps].sum() * np.exp(-formula_lam * tau)
    w_new = new_rate * decay[:tau].sum()
    return err, float(w_old / (w_old + w_new)), new_rate * tau


@claim("retgen/thm9.2",
       "With weights w(t) = e^{−λt}, |P_RETGEN,t(y|x) − P_true,t(y|x)| ≤ e^{−λτ} + "
       "O(n^{−1/2}), τ the time since the drift.",
       "Deterministic streams (no sampling noise, so the O(n^{−1/2}) term is read as "
       "noise_constant·n_new^{−1/2}, n_new the tokens seen since the drift; the decay term "
       "as e^{−bound_decay·λτ}; both claimed 1): before the drift x = a is followed by b, "
       "after it by c; the error is P(b | a) after τ unit-time updates with our decayed "
       "count tables. Cases: a long stationary stream before the drift (same rate) and a "
       "large one-off burst of old data. The correction is a closed form (decay "
       "corrected_decay·λ, claimed 1) that must match the tables' error to rounding.",
       refuted_by=({"noise_constant": 2.0}, {"bound_decay": 0.5}),
       correction_broken_by=({"corrected_decay": 1.1}, {"corrected_decay": 0.9}))
def thm9_2(rng, fast, *, bound_decay=1.0, noise_constant=1.0, corrected_decay=1.0):
    cases = []
    taus = [2, 5, 10] if fast else [1, 2, 5, 10, 20]
    for name, steps, old_rate, new_rate, lam in (("stationary", 60, 10, 10, 0.2),
                                                  ("burst", 1, 10_000, 10, 0.5)):
        for tau in taus:
            err, formula, n_new = _drift_error(steps, old_rate, new_rate, lam, tau,
                                               corrected_decay * lam)
            bound = np.exp(-bound_decay * lam * tau) + noise_constant * n_new ** -0.5
            cases.append({"case": name, "lambda": lam, "tau": tau, "old_rate": old_rate,
                          "old_steps": steps, "new_rate": new_rate, "error": err,
                          "paper_bound": float(bound), "exact_formula": formula})
    worst = max(cases, key=lambda c: c["error"] - c["paper_bound"])
    return judge({"cases": cases}, worst["error"] - worst["paper_bound"], 1e-9,
                 counterexample={k: worst[k] for k in ("case", "lambda", "tau", "old_rate",
                                                       "new_rate", "error", "paper_bound")},
                 corrected="The stale mass is W_old·e^{−λτ} / (W_old·e^{−λτ} + W_new(τ)) "
                           "times |P_old − P_new|, W_old the decayed weight of pre-drift "
                           "data and W_new(τ) = Σ_{j<τ} r·e^{−λj} that of post-drift data; it "
                           "is ≤ e^{−λτ} only if W_old·(1 − e^{−λτ}) ≤ W_new(τ), e.g. "
                           "a stream of constant rate before and after the drift.",
                 corrected_violation=max(abs(c["error"] - c["exact_formula"]) for c in cases))
