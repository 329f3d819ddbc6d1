"""``rag_overview.md``: the code of "Mathematical Frameworks" and "Code Implementation" — a
cosine-similarity example, TF-IDF retrieval scored with ``linear_kernel``, and two Keras
snippets (an attention layer over embeddings, a seq2seq model with attention).

Nothing here imports scikit-learn, Keras or TensorFlow: the example is recomputed exactly
and with :class:`~retgen_ref.index.FlatIndex`; TF-IDF with the note's weighting
(:mod:`retgen_ref.rag`) and with scikit-learn's default one written out in NumPy; the Keras
layers as NumPy re-implementations of their documented semantics, checked against the
project's :func:`~retgen_ref.attention.softmax_attention`.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..attention import softmax_attention
from ..index import FlatIndex
from ..rag import TfidfRetriever, term_matrix
from .rag_foundations import _cosine_matrix, _tfidf, _zipf_docs
from .rag_notes_part5 import _softmax
from .registry import claim, judge

_QUERY, _DOCUMENT = (1, 2, 3), (4, 5, 6)   # the note's vectors


@claim("rag_overview/cosine-example",
       "cosine_similarity([query_vector], [document_vector])[0][0] with query_vector = "
       "[1, 2, 3] and document_vector = [4, 5, 6] is the cosine similarity of the two "
       "vectors, 0.9746 (the note prints the code; the value is what it computes).",
       "The score recomputed two ways: exactly, q·d/√(‖q‖²‖d‖²) = 32/√1078 in integer "
       "arithmetic (Fraction), and by the project's FlatIndex('cosine') in float32; the "
       "claimed score must match to its 4 decimals (half a unit of the last one, 5e-5). "
       "Mutants: the raw dot product q·d = 32 (what linear_kernel gives for unnormalised "
       "vectors), the Euclidean similarity 1/(1 + ‖q − d‖) = 0.1614, and half the score.",
       refuted_by=({"score": 32.0}, {"score": 0.1614}, {"score": 0.4873}))
def cosine_example(rng, fast, *, score=0.9746):
    """|claimed − exact| and the float32 route's error, against 5e-5."""
    q, d = np.array(_QUERY), np.array(_DOCUMENT)
    squared = Fraction(int(q @ d) ** 2, int(q @ q) * int(d @ d))          # cos² = 1024/1078
    exact = math.sqrt(squared)
    index = FlatIndex(3, "cosine")
    index.add(d[None].astype(np.float32))
    route = float(index.search(q[None].astype(np.float32), 1)[0][0, 0])
    values = {"exact": exact, "cos_squared": str(squared), "FlatIndex_cosine": route,
              "dot_product": int(q @ d),
              "euclidean_similarity": 1 / (1 + math.sqrt(((q - d) ** 2).sum()))}
    return judge(values, max(abs(score - exact), abs(route - exact)), 5e-5,
                 counterexample={"claimed": score, "exact": exact})


def _sklearn_tfidf(counts: np.ndarray, corpus: np.ndarray) -> np.ndarray:
    """TfidfVectorizer's default weighting before its normalisation: raw counts times
    ``idf = ln((1 + N) / (1 + df)) + 1`` (smooth_idf=True)."""
    df = (corpus > 0).sum(axis=0)
    return counts * (np.log((1 + len(corpus)) / (1 + df)) + 1)


def _normalised(rows: np.ndarray, p) -> np.ndarray:
    """Rows divided by their ℓ_p norm (``p=None``: unchanged)."""
    return rows if p is None else rows / np.linalg.norm(rows, ord=p, axis=1, keepdims=True)


@claim("rag_overview/tfidf-linear-kernel",
       "corpus_tfidf = TfidfVectorizer().fit_transform(corpus); query_tfidf = "
       "vectorizer.transform([query]); linear_kernel(query_tfidf, corpus_tfidf) gives the "
       "query's cosine similarity to every document ('a simple retrieval model using "
       "TF-IDF and cosine similarity').",
       "linear_kernel is the plain dot product; it equals the cosine only for rows of unit "
       "L2 norm, which TfidfVectorizer returns by default (norm='l2'). Recomputed without "
       "scikit-learn on a Zipf corpus of token ids, with two weightings, the note's "
       "(rag_math_foundations: tf = f/|d|, idf = log(N/df)) and TfidfVectorizer's default "
       "(raw counts, idf = ln((1+N)/(1+df)) + 1): dot products of rows normalised in the "
       "ℓ_p norm, p = row_norm, against the cosine of the unnormalised rows (another "
       "computation), and the project's TfidfRetriever.scores against the same cosine. The "
       "unconditional variant: rows not normalised (norm=None).",
       refuted_by=({"row_norm": 1.0}, {"row_norm": None}))
def tfidf_linear_kernel(rng, fast, *, row_norm=2.0):
    """Worst |linear kernel − cosine| (scores in [0, 1])."""
    n_docs, n_terms, nq = (150, 400, 20) if fast else (1_000, 2_000, 100)
    docs = _zipf_docs(rng, n_docs, n_terms)
    counts = term_matrix(docs, n_terms).toarray()
    df = (counts > 0).sum(axis=0)
    informative = np.flatnonzero((df > 0) & (df < n_docs))  # idf > 0 in the note's weighting
    queries = [rng.choice(informative, size=5) for _ in range(nq)]
    seen = df > 0                                           # where idf is defined
    counts, q_counts = counts[:, seen], term_matrix(queries, n_terms).toarray()[:, seen]

    def gap(weigh, p):
        Q, D = weigh(q_counts, counts), weigh(counts, counts)
        return float(np.abs(_normalised(Q, p) @ _normalised(D, p).T
                            - _cosine_matrix(Q, D)).max())

    weightings = {"note_tfidf": _tfidf, "tfidfvectorizer_default": _sklearn_tfidf}
    gaps = {name: gap(weigh, row_norm) for name, weigh in weightings.items()}
    raw = {name: gap(weigh, None) for name, weigh in weightings.items()}
    library = TfidfRetriever().fit(docs, n_terms).scores(queries)
    cos = _cosine_matrix(_tfidf(q_counts, counts), _tfidf(counts))
    gaps["TfidfRetriever_scores"] = float(np.abs(library - cos).max())
    worst = max(gaps, key=gaps.get)
    return judge({"linear_kernel_minus_cosine": gaps,
                  "unnormalised_linear_kernel_minus_cosine": raw, "row_norm": row_norm},
                 gaps[worst], 1e-12,
                 counterexample={"route": worst, "max_abs_gap": gaps[worst],
                                 "row_norm": row_norm},
                 conditions="the TF-IDF rows have unit L2 norm, as TfidfVectorizer returns "
                            "them by default (norm='l2'), which the snippet relies on; with "
                            "norm=None (or 'l1') linear_kernel is a dot product, not the "
                            "cosine",
                 unconditional_violation=max(raw.values()))


def _keras_embedding(table: np.ndarray, inputs: np.ndarray):
    """``keras.layers.Embedding``: the input cast to int32 (truncated toward 0), then
    ``table[ids]``, shape ``inputs.shape + (output_dim,)``; also the fraction of ids
    outside ``[0, input_dim)`` (clipped here; Keras would fail or read garbage)."""
    ids = np.trunc(inputs).astype(np.int64)
    outside = (ids < 0) | (ids >= len(table))
    return table[np.clip(ids, 0, len(table) - 1)], float(outside.mean())


def _keras_attention(query: np.ndarray, value: np.ndarray):
    """``tf.keras.layers.Attention()([query, value])`` with its defaults (use_scale=False,
    score_mode='dot', key = value): ``softmax(query·valueᵀ)·value`` over the last two
    axes (leading axes batched, as tf.matmul); returns the output and the weights."""
    weights = _softmax(np.matmul(query, np.swapaxes(value, -1, -2)))
    return weights @ value, weights


def _project_attention(query, key, value, scale_exponent: float) -> np.ndarray:
    """The project's softmax_attention per batch row, scores scaled by 1/dim^exponent."""
    return np.stack([softmax_attention(q, k, v, scale=q.shape[-1] ** -scale_exponent)
                     for q, k, v in zip(query, key, value)])


@claim("rag_overview/keras-attention",
       "inputs = Input(shape=(sequence_length, embedding_dim)); query_seq = "
       "Embedding(vocab_size, embedding_dim)(inputs); key_seq = Embedding(vocab_size, "
       "embedding_dim)(inputs); attention_result = Attention()([query_seq, key_seq]): "
       "attention of the query sequence over the key sequence.",
       "A NumPy re-implementation of what the layers compute (Keras's documented "
       "semantics: Embedding casts its input to int32 and appends an axis of output_dim; "
       "Attention()([q, v]) = softmax(q·vᵀ)·v over the last two axes, key = value, no "
       "scaling), run on the snippet's input: real-valued features of shape (batch, "
       "sequence_length, embedding_dim) = (2, 7, 5), vocab_size = 50. Claimed: the "
       "attended sequences have rank output_rank (3: batch, position, feature) and each "
       "query attends over attended_axis = 'sequence_length' keys; measured: the rank and "
       "the length of the softmax axis. The correction (integer ids of shape (batch, "
       "sequence_length)) is checked against the project's softmax_attention with the "
       "scores scaled by 1/embedding_dim^corrected_scale_exponent and the value "
       "corrected_value.",
       refuted_by=({"output_rank": 4}, {"attended_axis": "embedding_dim"}),
       correction_broken_by=({"corrected_scale_exponent": 0.5}, {"corrected_value": "query"}))
def keras_attention(rng, fast, *, output_rank=3, attended_axis="sequence_length",
                    corrected_scale_exponent=0.0, corrected_value="key"):
    """Worst mismatch of rank / attended length (integers) and of the corrected output."""
    B, L, E, vocab = 2, 7, 5, 50
    lengths = {"sequence_length": L, "embedding_dim": E}
    tables = rng.standard_normal((2, vocab, E))
    features = rng.standard_normal((B, L, E))                  # what Input(shape=(L, E)) holds
    (q, outside), (k, _) = (_keras_embedding(t, features) for t in tables)
    out, weights = _keras_attention(q, k)
    violation = max(abs(out.ndim - output_rank), abs(weights.shape[-1] - lengths[attended_axis]))
    ids = rng.integers(0, vocab, (B, L))                       # Input(shape=(L,), dtype=int32)
    (q2, _), (k2, _) = (_keras_embedding(t, ids) for t in tables)
    out2, weights2 = _keras_attention(q2, k2)
    project = _project_attention(q2, k2, {"key": k2, "query": q2}[corrected_value],
                                 corrected_scale_exponent)
    corrected = max(abs(out2.ndim - 3), abs(weights2.shape[-1] - L),
                    float(np.abs(project - out2).max() / np.abs(out2).max()))
    snippet = {"input_shape": list(features.shape), "query_seq_shape": list(q.shape),
               "attention_result_shape": list(out.shape),
               "softmax_axis_length": weights.shape[-1],
               "features_truncated_to_id_0": float((np.trunc(features) == 0).mean()),
               "ids_outside_vocabulary": outside}
    return judge({"snippet": snippet, "corrected_attention_shape": list(out2.shape)},
                 violation, 1e-9, counterexample=snippet,
                 corrected="Embedding takes integer token ids: with inputs = "
                           "Input(shape=(sequence_length,), dtype='int32') query_seq and "
                           "key_seq are (batch, sequence_length, embedding_dim) and "
                           "Attention()([query_seq, key_seq]) = softmax(q·kᵀ)·k, unscaled "
                           "dot-product attention over the sequence_length positions with "
                           "key_seq as both key and value. As printed, the float features "
                           "are truncated to ids (most to 0, negatives out of range) and "
                           "each position gets an (embedding_dim × embedding_dim) matrix, so "
                           "the softmax runs over the embedding axis, not over positions.",
                 corrected_violation=corrected)


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-a))


def _keras_lstm(x: np.ndarray, weights, initial_state=None, return_sequences=False,
                return_state=False) -> list:
    """``keras.layers.LSTM`` (gates i, f, c, o; sigmoid / tanh) on ``x`` (batch, T, E).

    Returns the list Keras returns: the output (every hidden state if
    ``return_sequences``, else the last one), followed by ``state_h, state_c`` if
    ``return_state``.
    """
    W, U, b = weights
    H = U.shape[0]
    h, c = (np.zeros((len(x), H)), np.zeros((len(x), H))) if initial_state is None \
        else initial_state
    hs = []
    for t in range(x.shape[1]):
        z = x[:, t] @ W + h @ U + b
        i, f, g, o = np.split(z, 4, axis=1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        hs.append(h)
    out = np.stack(hs, axis=1) if return_sequences else h
    return [out, h, c] if return_state else [out]


@claim("rag_overview/keras-seq2seq",
       "encoder_lstm, encoder_state = LSTM(hidden_units, return_state=True)(encoder_embedding); "
       "decoder_outputs, _ = decoder_lstm(decoder_embedding, initial_state=encoder_state); "
       "attention_layer = Attention()([decoder_outputs, encoder_outputs]); decoder_concat = "
       "tf.concat([decoder_outputs, attention_layer], axis=-1): a seq2seq model whose "
       "decoder attends over the encoder's outputs.",
       "A NumPy re-implementation with Keras's documented semantics (LSTM(return_state=True) "
       "returns [output, state_h, state_c]; without return_sequences the output is the last "
       "hidden state only; Attention as in rag_overview/keras-attention): batch 2, "
       "encoder_input_length 6, decoder_input_length 4, embedding_dim 5, hidden_units 3. "
       "Claimed: LSTM(return_state=True) returns lstm_returns = 2 tensors (output, state) and "
       "the decoder attends over attended_positions = 'encoder_input_length' encoder "
       "outputs. Measured: the tensors returned, and the positions the snippet's encoder "
       "offers (encoder_outputs is never defined; its only output, encoder_lstm, is the "
       "last state, one position: the attention weights are then all 1). The correction "
       "is run too: weights over every encoder position that vary with the decoder step, "
       "the project's softmax_attention as a second route, and a concatenation of width "
       "corrected_concat_factor × hidden_units.",
       refuted_by=({"lstm_returns": 3}, {"attended_positions": "1"}),
       correction_broken_by=({"corrected_lstm_returns": 2}, {"corrected_concat_factor": 1}))
def keras_seq2seq(rng, fast, *, lstm_returns=2, attended_positions="encoder_input_length",
                  corrected_lstm_returns=3, corrected_concat_factor=2):
    """Worst mismatch of counts (integers) and of the corrected attention (relative)."""
    B, Te, Td, E, H = 2, 6, 4, 5, 3
    positions = {"encoder_input_length": Te, "1": 1}
    enc_x, dec_x = rng.standard_normal((B, Te, E)), rng.standard_normal((B, Td, E))
    enc_w, dec_w = ((rng.standard_normal((E, 4 * H)), rng.standard_normal((H, 4 * H)),
                     rng.standard_normal(4 * H)) for _ in range(2))
    returned = _keras_lstm(enc_x, enc_w, return_state=True)
    encoder_lstm = returned[0]                                  # (B, H): no time axis
    _, weights = _keras_attention(_keras_lstm(dec_x, dec_w, returned[1:], True, True)[0],
                                  encoder_lstm[:, None, :])     # one position to attend
    violation = max(abs(len(returned) - lstm_returns),
                    abs(weights.shape[-1] - positions[attended_positions]) / Te)
    enc_out, h, c = _keras_lstm(enc_x, enc_w, return_sequences=True, return_state=True)
    fixed = _keras_lstm(dec_x, dec_w, [h, c], return_sequences=True, return_state=True)
    context, w2 = _keras_attention(fixed[0], enc_out)
    concat = np.concatenate([fixed[0], context], axis=-1)
    route = _project_attention(fixed[0], enc_out, enc_out, 0.0)
    spread = float(np.ptp(w2, axis=1).max())                    # weights change over steps
    corrected = max(abs(len(fixed) - corrected_lstm_returns),
                    abs(concat.shape[-1] - corrected_concat_factor * H),
                    abs(w2.shape[-1] - Te), float(np.abs(enc_out[:, -1] - h).max()),
                    float(np.abs(route - context).max() / np.abs(context).max()),
                    max(0.0, 1e-6 - spread))
    snippet = {"tensors_returned_by_LSTM_return_state": len(returned),
               "encoder_lstm_shape": list(encoder_lstm.shape),
               "attention_weights_shape": list(weights.shape),
               "attention_weights_all_one": bool(np.all(weights == 1.0))}
    return judge({"snippet": snippet, "corrected_weights_shape": list(w2.shape),
                  "corrected_weight_spread_over_decoder_steps": spread,
                  "corrected_concat_shape": list(concat.shape)},
                 violation, 1e-9, counterexample=snippet,
                 corrected="LSTM(return_state=True) returns three tensors, and attention "
                           "needs the encoder's whole sequence: encoder_outputs, state_h, "
                           "state_c = LSTM(hidden_units, return_sequences=True, "
                           "return_state=True)(encoder_embedding); initial_state=[state_h, "
                           "state_c]; decoder_outputs, _, _ = decoder_lstm(...). Then "
                           "Attention()([decoder_outputs, encoder_outputs]) weighs all "
                           "encoder_input_length positions, differently at each decoder "
                           "step, and decoder_concat is (batch, decoder_input_length, "
                           "2·hidden_units).",
                 corrected_violation=corrected)
