"""A learned retrieval policy: ``k``, the temperature and the diversity weight per query
(``retgen_v2.md`` §3).

The reading of §3 implemented here. For the context ``x_t`` of every position the policy
``π_θ`` reads ``q_t``, the model's query embedding at its longest resolution (standardised
by the mean and spread of the valid queries), through the MLP of §3.2,

    o_t = W_3 ReLU(W_2 ReLU(W_1 q_t + b_1) + b_2) + b_3 ∈ ℝ^{|K|+2},

whose outputs are logits over ``k ∈ K = {k ∈ tuning.KS : k ≤ k_max}`` (a categorical
choice of ``k``), a log-temperature scale ``u_t`` and a diversity weight ``λ_t = c·λ̃_t``
(``c = 1/σ_div``, ``σ_div`` the within-query spread of the diversity feature on valid, so
that a unit of the network's output ``λ̃`` moves the energies by about one unit, as a unit
of ``u`` does). For every resolution ``r`` the first ``k`` of one ``k_max`` search are
weighted by

    a_i ∝ exp( w_s,r e^{u_t} s_i − (w_d,r + λ_t) div_i^{(k)} − w_f,r log n(p_i) ),  i < k,

    P_r(y_t | x_t; k, u, λ) = Σ_i a_i P_emp(y_t | p_i),
    P(y_t | x_t; k, u, λ)   = w_0(t) P_0(y_t) + Σ_r w_r(t) P_r(y_t | x_t; k, u, λ).

``(w_s, w_d, w_f)_r`` is a fixed base: the kernel weights ``(1/τ, 0, −1)`` of the fitted
model (so ``a_i ∝ n(p_i) exp(s_i e^{u}/τ)``: ``e^{u}`` rescales ``1/τ``, ``τ(q) = τ e^{−u}``),
or the weights of a fitted :class:`~retgen_ref.v2.rerank.EnergyReranker`. ``div^{(k)}`` is
the reranker's diversity feature computed among the first ``k`` results, so it depends on
``k``. The mixture weights ``w_r(t)`` (row 0: the unigram floor) are held at the fitted
model's values (its ``k_``, ``tau_``). With ``k = k_``, ``u = λ = 0`` this is exactly the
base model (the fitted RETGEN model, or the reranked one).

Reward. §3.3 calls the reward "negative energy", but the energy of Definition 3.1 scores
the retrieved set, not the prediction: maximising it rewards retrieving similar, frequent,
redundant patterns whatever the next token is, and has no reason to improve perplexity.
The reward used is the quantity the model is judged by, the log-likelihood of the token
that follows, ``R_t = log P(y_t | x_t; k_t, u_t, λ_t)``.

Training (valid split only; its last ``holdout`` positions are held out, contiguous):

``method="reinforce"`` (§3.3)
    a stochastic policy ``k ~ Cat(softmax(logits))``, ``u ~ N(μ_u, σ²)``,
    ``λ̃ ~ N(μ_λ̃, σ²)`` with fixed ``σ``; ascent along ``(R − b) ∇_θ log π(a | q)`` with
    the baseline ``b_t = R_t(deterministic action)``, the reward of the policy's own
    action at ``q_t``: it depends on ``q_t`` and ``θ`` but not on the sampled action, so the
    estimate stays unbiased, and it removes the large per-token variation of
    ``log P(y_t)`` that a running mean would leave in.
``method="direct"``
    the exact gradient of ``J(θ) = mean_t Σ_{k∈K} π(k | q_t) log P(y_t | k, u_t, λ_t)``
    (the expectation over ``k`` summed, ``u`` and ``λ`` deterministic; they enter the
    softmax smoothly: ``∂P_r/∂u = Σ_i a_i (P_emp,i − P_r) w_s e^{u} s_i``,
    ``∂P_r/∂λ = −Σ_i a_i (P_emp,i − P_r) div_i``).

Both use Adam on mini-batches. The policy starts at the fitted parameters (last layer 0;
its bias gives ``k_`` the mass ``init_mass``, ``u = λ = 0``). After every epoch the
deterministic policy (``k = argmax logits``, ``u = μ_u``, ``λ = μ_λ``: also how it acts)
is scored on the held-out part; the best epoch, the start included, is kept, and
training stops after ``patience`` epochs without improvement. The test split is never
looked at.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_int, check_positive_float
from ..lm.tuning import KS
from .rerank import masked_softmax, retrieval_features
from .reweighting import Reweighting

METHODS = ("reinforce", "direct")
U_LIMIT = 10.0          # |u| is clipped here (τ changes by at most e^10); no gradient past it
FORMAT_VERSION = 1
_ARRAYS = ("W1", "b1", "W2", "b2", "W3", "b3", "x_mean", "x_scale", "base")


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class _Level:
    """One resolution's retrieval for every position, first ``max(K)`` columns, float64."""

    def __init__(self, model, r, sims, ids, stream, ks, base):
        feat = retrieval_features(model, r, sims, ids, ks[-1], stream)
        self.mask, self.T = feat.mask, feat.target_probs
        self.S = base[0] * feat.sims              # w_s s_i
        self.F = -base[2] * feat.log_counts       # −w_f log n_i
        self.w_d = float(base[1])
        self.div = {k: retrieval_features(model, r, sims, ids, k).div for k in ks[:-1]}
        self.div[ks[-1]] = feat.div


class _Data:
    """Everything the training loop needs about a token stream (valid)."""

    def __init__(self, model, stream, ks, base, r_max):
        hits = model.search_stream(stream, model.config.k_max)
        P, M = model.components(stream, hits)
        self.mix, self.floor = model.mixture_.weights(M), P[0]
        self.X = model.context_queries(stream, r_max).astype(np.float64)
        self.levels = [_Level(model, r, *hits[r], stream, ks, base[i])
                       for i, r in enumerate(model.levels)]


class RetrievalPolicy(Reweighting):
    """Per-query ``k``, temperature and diversity weight over a fitted RETGEN model (§3).

    Parameters
    ----------
    method : ``"direct"`` (exact gradient of the expected log-likelihood) or
        ``"reinforce"`` (§3.3's policy gradient); see the module docstring.
    hidden : width of the two hidden layers.
    epochs : most passes over the training part of valid.
    batch, lr : mini-batch size and Adam step size.
    seed : everything random (initial weights, batches, REINFORCE draws).
    sigma : standard deviation of the REINFORCE Gaussians over ``u`` and ``λ̃``.
    patience : stop after this many epochs without a better held-out NLL.
    holdout : fraction of valid (its end) held out for early stopping and selection.
    init_mass : probability the initial policy gives the fitted ``k_``.

    Attributes
    ----------
    ks_ : the choices of ``k``. base_ : (R, 3) ``(w_s, w_d, w_f)`` per resolution.
    report_ : valid NLL / perplexity before and after on the train and held-out parts,
        epochs, the selected epoch, the histogram of the chosen ``k`` on valid, and the
        mean ``u`` and ``λ`` there.

    Examples
    --------
    With a fitted :class:`~retgen_ref.lm.RetgenLM` ``model`` (``tests/test_policy.py``
    runs this on a small one)::

        policy = RetrievalPolicy().fit(model)              # or fit(model, reranker)
        policy.perplexity(model, "test")
        k, u, lam = policy.act(model.context_queries(stream, max(model.levels)))
    """

    def __init__(self, method: str = "direct", hidden: int = 64, epochs: int = 30,
                 batch: int = 512, lr: float = 1e-3, seed: int = 0, sigma: float = 0.1,
                 patience: int = 5, holdout: float = 0.1, init_mass: float = 0.9):
        if method not in METHODS:
            raise ValueError(f"method={method!r}; choose one of {METHODS}")
        self.method = method
        self.hidden = check_int(hidden, "hidden")
        self.epochs = check_int(epochs, "epochs", minimum=0)
        self.batch = check_int(batch, "batch")
        self.lr = check_positive_float(lr, "lr")
        self.seed = check_int(seed, "seed", minimum=0)
        self.sigma = check_positive_float(sigma, "sigma")
        self.patience = check_int(patience, "patience")
        self.holdout = check_positive_float(holdout, "holdout")
        if self.holdout >= 1:
            raise ValueError(f"holdout={holdout} must be a fraction in (0, 1), e.g. 0.1")
        self.init_mass = check_positive_float(init_mass, "init_mass")
        if self.init_mass >= 1:
            raise ValueError(f"init_mass={init_mass} must be a probability in (0, 1)")

    # -- the network ----------------------------------------------------------------------
    def _forward(self, X: np.ndarray, theta: dict | None = None):
        t = self.theta_ if theta is None else theta
        x = (X - t["x_mean"]) / t["x_scale"]
        h1 = np.maximum(x @ t["W1"] + t["b1"], 0.0)
        h2 = np.maximum(h1 @ t["W2"] + t["b2"], 0.0)
        return h2 @ t["W3"] + t["b3"], (x, h1, h2)

    def _backward(self, cache, d_out: np.ndarray) -> dict:
        x, h1, h2 = cache
        t = self.theta_
        d_h2 = (d_out @ t["W3"].T) * (h2 > 0)
        d_h1 = (d_h2 @ t["W2"].T) * (h1 > 0)
        return {"W3": h2.T @ d_out, "b3": d_out.sum(0), "W2": h1.T @ d_h2, "b2": d_h2.sum(0),
                "W1": x.T @ d_h1, "b1": d_h1.sum(0)}

    def _heads(self, out: np.ndarray):
        """``(logits, u clipped, λ, λ̃ raw, u raw)`` from the network's output."""
        nk = len(self.ks_)
        u_raw, lam_raw = out[:, nk], out[:, nk + 1]
        return out[:, :nk], np.clip(u_raw, -U_LIMIT, U_LIMIT), self.lam_scale_ * lam_raw, \
            lam_raw, u_raw

    def act(self, queries) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Deterministic action ``(k, u, λ)``, each ``(n,)``, for query embeddings ``(n, d)``
        at the model's longest resolution: ``k = argmax logits``, ``u = μ_u``, ``λ = μ_λ``."""
        self._check_fitted()
        q = np.asarray(queries, dtype=np.float64)
        if q.ndim != 2 or q.shape[1] != len(self.theta_["x_mean"]):
            raise ValueError(f"queries have shape {q.shape}; need (n, "
                             f"{len(self.theta_['x_mean'])}), the model's query embeddings "
                             f"at resolution {self.resolutions_[-1]}")
        if not np.isfinite(q).all():
            raise ValueError("queries contain NaN or infinity")
        logits, u, lam, _, _ = self._heads(self._forward(q)[0])
        return np.asarray(self.ks_)[logits.argmax(axis=1)], u, lam

    # -- likelihood of the training data under a given action --------------------------------
    def _loglik(self, data: _Data, rows, k: int, u, lam, grad: bool = False):
        """``log P(y_t | k, u_t, λ_t)`` for ``rows`` (and its derivatives in ``u``, ``λ``)."""
        eu = np.exp(u)[:, None]
        prob = data.mix[0, rows] * data.floor[rows]
        d_u, d_lam = np.zeros(len(rows)), np.zeros(len(rows))
        for i, f in enumerate(data.levels):
            S, D, T = f.S[rows, :k], f.div[k][rows], f.T[rows, :k]
            a = masked_softmax(eu * S - (f.w_d + lam)[:, None] * D + f.F[rows, :k],
                                   f.mask[rows, :k])
            P_r = (a * T).sum(axis=1)
            w = data.mix[i + 1, rows]
            prob = prob + w * P_r
            if grad:
                g = a * (T - P_r[:, None])
                d_u += w * (g * S).sum(axis=1) * eu[:, 0]
                d_lam -= w * (g * D).sum(axis=1)
        return np.log(prob), d_u / prob, d_lam / prob

    def _loglik_actions(self, data: _Data, rows, k_index, u, lam) -> np.ndarray:
        """``log P(y_t | k_t, u_t, λ_t)`` with a different ``k`` per row."""
        out = np.empty(len(rows))
        for j in np.unique(k_index):
            sel = k_index == j
            out[sel] = self._loglik(data, rows[sel], self.ks_[j], u[sel], lam[sel])[0]
        return out

    def _nll(self, data: _Data, rows) -> float:
        """Mean NLL of the deterministic policy on ``rows``."""
        logits, u, lam, _, _ = self._heads(self._forward(data.X[rows])[0])
        return float(-self._loglik_actions(data, rows, logits.argmax(axis=1), u, lam).mean())

    def _objective_gradient(self, data: _Data, rows):
        """``(−J, ∂(−J)/∂out)`` of the direct method on ``rows``; ``out`` the network output."""
        out, cache = self._forward(data.X[rows])
        logits, u, lam, _, u_raw = self._heads(out)
        pi = _softmax(logits)
        L, G_u, G_lam = (np.empty((len(rows), len(self.ks_))) for _ in range(3))
        for j, k in enumerate(self.ks_):
            L[:, j], G_u[:, j], G_lam[:, j] = self._loglik(data, rows, k, u, lam, grad=True)
        J = (pi * L).sum(axis=1)
        d_out = np.empty_like(out)
        d_out[:, :len(self.ks_)] = pi * (L - J[:, None])
        d_out[:, -2] = (pi * G_u).sum(axis=1) * (np.abs(u_raw) < U_LIMIT)
        d_out[:, -1] = (pi * G_lam).sum(axis=1) * self.lam_scale_
        return float(-J.mean()), -d_out / len(rows), cache

    def _reinforce_gradient(self, data: _Data, rows, rng):
        """Score-function estimate of ``∂(−E R)/∂out`` with the deterministic-action baseline."""
        out, cache = self._forward(data.X[rows])
        logits, u, lam, lam_raw, u_raw = self._heads(out)
        pi = _softmax(logits)
        n, nk = pi.shape
        k_index = np.minimum((rng.random(n)[:, None] > np.cumsum(pi, axis=1)).sum(axis=1),
                             nk - 1)
        eps = rng.standard_normal((n, 2)) * self.sigma
        reward = self._loglik_actions(data, rows, k_index,
                                      np.clip(u_raw + eps[:, 0], -U_LIMIT, U_LIMIT),
                                      self.lam_scale_ * (lam_raw + eps[:, 1]))
        baseline = self._loglik_actions(data, rows, logits.argmax(axis=1), u, lam)
        adv = reward - baseline
        d_out = np.empty_like(out)
        d_out[:, :nk] = adv[:, None] * (np.eye(nk)[k_index] - pi)
        d_out[:, nk:] = adv[:, None] * eps / self.sigma ** 2
        return float(-reward.mean()), -d_out / n, cache

    # -- fitting ----------------------------------------------------------------------------
    def _init_theta(self, d: int, rng, X: np.ndarray, k_fitted: int) -> dict:
        h, nk = self.hidden, len(self.ks_)
        b3 = np.zeros(nk + 2)
        if nk > 1:
            b3[self.ks_.index(k_fitted)] = np.log(self.init_mass * (nk - 1) / (1 - self.init_mass))
        scale = X.std(axis=0)
        return {"W1": rng.standard_normal((d, h)) * np.sqrt(2.0 / d), "b1": np.zeros(h),
                "W2": rng.standard_normal((h, h)) * np.sqrt(2.0 / h), "b2": np.zeros(h),
                "W3": np.zeros((h, nk + 2)), "b3": b3,
                "x_mean": X.mean(axis=0), "x_scale": np.where(scale > 1e-12, scale, 1.0)}

    def fit(self, model, reranker=None) -> "RetrievalPolicy":
        """Learn the policy on ``model``'s valid split, on the kernel base or ``reranker``'s."""
        if not hasattr(model, "mixture_"):
            raise ValueError("the model is not fitted; call model.fit(corpus) first")
        self.resolutions_, self.k_max_ = tuple(model.levels), int(model.config.k_max)
        self.k_, self.tau_ = int(model.k_), float(model.tau_)
        self.ks_ = [k for k in KS if k <= self.k_max_]
        if not self.ks_:
            raise ValueError(f"k_max={self.k_max_} is below every k of the grid {KS}")
        if self.k_ not in self.ks_:
            raise ValueError(f"the model's k_={self.k_} is not in the grid {self.ks_}")
        if reranker is None:
            base = np.tile([1.0 / self.tau_, 0.0, -1.0], (len(self.resolutions_), 1))
        else:
            if not hasattr(reranker, "weights_"):
                raise ValueError("the reranker is not fitted; call reranker.fit(model) first")
            if tuple(reranker.resolutions_) != self.resolutions_ or reranker.k_ != self.k_:
                raise ValueError(f"the reranker was fitted on resolutions "
                                 f"{reranker.resolutions_} with k={reranker.k_}; this model "
                                 f"has {self.resolutions_}, k={self.k_}; refit the reranker")
            base = np.array(reranker.weights_, dtype=np.float64)
        self.base_, self.reranked_ = base, reranker is not None
        valid = model.splits["valid"]
        n_hold = int(round(self.holdout * len(valid)))
        if n_hold < 1 or n_hold >= len(valid):
            raise ValueError(f"holdout={self.holdout} of {len(valid)} valid tokens leaves no "
                             "training or no held-out positions; change holdout")
        data = _Data(model, valid, self.ks_, base, self.resolutions_[-1])
        train, held = np.arange(len(valid) - n_hold), np.arange(len(valid) - n_hold, len(valid))
        self.lam_scale_ = self._lambda_scale(data, train)
        rng = np.random.default_rng(self.seed)
        self.theta_ = self._init_theta(data.X.shape[1], rng, data.X[train], self.k_)
        every = np.arange(len(valid))
        before = {"train": self._nll(data, train), "held_out": self._nll(data, held),
                  "valid": self._nll(data, every)}
        history = [{"epoch": 0, "held_out_nll": before["held_out"]}]
        best, best_theta, waited = before["held_out"], self._copy_theta(), 0
        adam = {name: (np.zeros_like(v), np.zeros_like(v)) for name, v in self.theta_.items()
                if name[0] in "Wb"}
        step = 0
        for epoch in range(1, self.epochs + 1):
            order, losses = rng.permutation(train), []
            for lo in range(0, len(train), self.batch):
                rows = np.sort(order[lo:lo + self.batch])
                if self.method == "direct":
                    loss, d_out, cache = self._objective_gradient(data, rows)
                else:
                    loss, d_out, cache = self._reinforce_gradient(data, rows, rng)
                losses.append(loss)
                step += 1
                self._adam(self._backward(cache, d_out), adam, step)
            held_nll = self._nll(data, held)
            history.append({"epoch": epoch, "held_out_nll": held_nll,
                            "train_objective": float(np.mean(losses))})
            if held_nll < best:
                best, best_theta, waited = held_nll, self._copy_theta(), 0
            else:
                waited += 1
                if waited >= self.patience:
                    break
        self.theta_ = best_theta
        self.report_ = self._report(data, train, held, before, history, best)
        return self

    def _lambda_scale(self, data: _Data, rows) -> float:
        """``c = 1/σ_div``: root mean within-query variance of ``div`` over ``K`` and levels."""
        total, count = 0.0, 0
        for f in data.levels:
            for k, div in f.div.items():
                D, m = div[rows], f.mask[rows, :k]
                n = m.sum(axis=1, keepdims=True)
                mean = (D * m).sum(axis=1, keepdims=True) / np.maximum(n, 1)
                total += float((((D - mean) ** 2) * m).sum())
                count += int(m.sum())
        sd = np.sqrt(total / max(count, 1))
        return float(1.0 / sd) if sd > 1e-12 else 1.0

    def _copy_theta(self) -> dict:
        return {name: v.copy() for name, v in self.theta_.items()}

    def _adam(self, grads: dict, state: dict, step: int, b1=0.9, b2=0.999, eps=1e-8) -> None:
        for name, g in grads.items():
            m, v = state[name]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            self.theta_[name] -= (self.lr * (m / (1 - b1 ** step))
                                  / (np.sqrt(v / (1 - b2 ** step)) + eps))

    def _report(self, data, train, held, before, history, best) -> dict:
        every = np.arange(len(data.X))
        after = {"train": self._nll(data, train), "held_out": best,
                 "valid": self._nll(data, every)}
        k, u, lam = self.act(data.X)
        out = {"method": self.method, "reranked": self.reranked_,
               "epochs": len(history) - 1,
               "best_epoch": int(min(history, key=lambda h: h["held_out_nll"])["epoch"]),
               "history": history, "lambda_scale": self.lam_scale_,
               "k_histogram": {str(kk): int((k == kk).sum()) for kk in self.ks_},
               "mean_u": float(u.mean()), "mean_lambda": float(lam.mean()),
               "n_train": int(len(train)), "n_held_out": int(len(held))}
        for part in ("train", "held_out", "valid"):
            out[f"{part}_nll_before"], out[f"{part}_nll_after"] = before[part], after[part]
            out[f"{part}_ppl_before"] = float(np.exp(before[part]))
            out[f"{part}_ppl_after"] = float(np.exp(after[part]))
        return out

    # -- using it ---------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "theta_"):
            raise ValueError("this policy is not fitted; call fit(model) or from_state(...)")

    def _check_model(self, model) -> None:
        self._check_fitted()
        if not hasattr(model, "mixture_"):
            raise ValueError("the model is not fitted; call model.fit(corpus) first")
        found = (tuple(model.levels), int(model.config.k_max), int(model.k_), float(model.tau_))
        if found != (self.resolutions_, self.k_max_, self.k_, self.tau_):
            raise ValueError(f"the policy was fitted on a model with resolutions "
                             f"{self.resolutions_}, k_max={self.k_max_}, k={self.k_}, "
                             f"tau={self.tau_}; this one has {found[0]}, k_max={found[1]}, "
                             f"k={found[2]}, tau={found[3]}; refit the policy on it")

    def _weights(self, model, r, sims, ids, k, u, lam) -> np.ndarray:
        i = self.resolutions_.index(r)
        w_s, w_d, w_f = self.base_[i]
        m = ids.shape[1]
        mask = (ids >= 0) & (np.arange(m) < k[:, None])
        safe = np.where(mask, ids, 0).astype(np.int64)
        s = np.where(mask, sims, 0.0).astype(np.float64)
        log_n = np.where(mask, np.log(np.maximum(model.levels[r].totals[safe], 1e-300)), 0.0)
        div = np.zeros((len(ids), m))
        for kk in np.unique(k):
            sel = k == kk
            div[sel, :kk] = retrieval_features(model, r, sims[sel], ids[sel], kk).div
        z = (w_s * np.exp(u))[:, None] * s - (w_d + lam)[:, None] * div - w_f * log_n
        return masked_softmax(z, mask)

    def weights(self, model, r: int, sims, ids, queries_longest) -> np.ndarray:
        """Weights ``a_i`` ``(n, m)`` of the retrieved patterns of resolution ``r``.

        ``sims``/``ids`` ``(n, m)`` are a search of that resolution with ``m ≥ max(ks_)``
        (``-1`` ids for missing neighbours), ``queries_longest`` ``(n, d)`` the query
        embeddings at the longest resolution. Columns ``≥ k(q)`` and missing neighbours get
        0; a row with any neighbour sums to 1.
        """
        self._check_model(model)
        if r not in self.resolutions_:
            raise ValueError(f"resolution {r} is not one of {self.resolutions_}")
        sims, ids = np.asarray(sims), np.asarray(ids)
        if sims.shape != ids.shape or ids.ndim != 2 or ids.shape[1] < self.ks_[-1]:
            raise ValueError(f"sims {sims.shape} and ids {ids.shape} must be the same (n, m) "
                             f"with m >= {self.ks_[-1]}: search with k=model.config.k_max")
        k, u, lam = self.act(queries_longest)
        if len(k) != len(ids):
            raise ValueError(f"{len(k)} queries for {len(ids)} rows of search results")
        return self._weights(model, r, sims, ids, k, u, lam)

    @property
    def search_k_(self) -> int:
        """Patterns each resolution must retrieve for :meth:`weights`: the model's ``k_max``
        (the policy was trained on prefixes of one ``k_max`` search, as :mod:`.tuning` is)."""
        return self.k_max_

    # -- persistence --------------------------------------------------------------------------
    def state(self) -> tuple[dict, dict]:
        """``(params, arrays)``: JSON-able settings and report, and the plain weight arrays."""
        self._check_fitted()
        params = {"format": FORMAT_VERSION, "method": self.method, "hidden": self.hidden,
                  "epochs": self.epochs, "batch": self.batch, "lr": self.lr, "seed": self.seed,
                  "sigma": self.sigma, "patience": self.patience, "holdout": self.holdout,
                  "init_mass": self.init_mass, "resolutions": list(self.resolutions_),
                  "k_max": self.k_max_, "k": self.k_, "tau": self.tau_, "ks": list(self.ks_),
                  "lambda_scale": self.lam_scale_, "reranked": self.reranked_,
                  "report": self.report_}
        arrays = {name: self.theta_[name].copy() for name in _ARRAYS if name != "base"}
        arrays["base"] = self.base_.copy()
        return params, arrays

    @classmethod
    def from_state(cls, params: dict, arrays: dict) -> "RetrievalPolicy":
        """Inverse of :meth:`state` (plain arrays and JSON values, no pickle)."""
        try:
            if params.get("format") != FORMAT_VERSION:
                raise ValueError(f"policy state format {params.get('format')!r}; this version "
                                 f"reads {FORMAT_VERSION}")
            policy = cls(**{key: params[key] for key in (
                "method", "hidden", "epochs", "batch", "lr", "seed", "sigma", "patience",
                "holdout", "init_mass")})
            policy.resolutions_ = tuple(int(r) for r in params["resolutions"])
            policy.k_max_, policy.k_ = int(params["k_max"]), int(params["k"])
            policy.tau_, policy.ks_ = float(params["tau"]), [int(k) for k in params["ks"]]
            policy.lam_scale_, policy.reranked_ = float(params["lambda_scale"]), \
                bool(params["reranked"])
            policy.report_ = params["report"]
            theta = {name: np.array(arrays[name], dtype=np.float64) for name in _ARRAYS}
        except KeyError as missing:
            raise ValueError(f"policy state lacks {missing}; pass what state() returned") from None
        policy.base_ = theta.pop("base")
        d, h, nk = len(theta["x_mean"]), policy.hidden, len(policy.ks_)
        shapes = {"W1": (d, h), "b1": (h,), "W2": (h, h), "b2": (h,), "W3": (h, nk + 2),
                  "b3": (nk + 2,), "x_scale": (d,), "x_mean": (d,)}
        bad = [name for name, shape in shapes.items() if theta[name].shape != shape]
        if bad or policy.base_.shape != (len(policy.resolutions_), 3):
            raise ValueError(f"policy state arrays {bad or ['base']} have the wrong shape")
        policy.theta_ = theta
        return policy
