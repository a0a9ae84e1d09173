"""Masked-LM masking of a whole batch as numpy array ops (google-research/bert's rules).

Randomness is counter-based: every draw is splitmix64(example key, position, stream), and the example
key is a hash of (seed, example index, epoch). So an example's mask depends on nothing but those three
numbers -- not on the batch it lands in, the host, or what was drawn before.

Rules (create_pretraining_data.py's create_masked_lm_predictions):
  * candidates: every real token except [CLS], [SEP] (and never padding);
  * num_to_predict = min(max_predictions, max(1, round(len(tokens) * masked_lm_prob))), len(tokens)
    counting the special tokens, round half to even as Python 3's round;
  * candidates (or whole words) are visited in random order and taken while they fit;
  * each chosen token: 80% -> [MASK], 10% -> kept, 10% -> a random id in [0, vocab_size);
  * whole-word masking: a "##" piece belongs to the word before it; words are taken whole, skipping
    a word that would overflow num_to_predict and trying the later ones (as the reference does).
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def example_keys(seed: int, indices: np.ndarray, epochs: np.ndarray | int) -> np.ndarray:
    """[B] uint64 keys from (seed, example index [B], epoch [B] or scalar)."""
    with np.errstate(over="ignore"):
        k = _mix(np.asarray([seed & 0xFFFFFFFFFFFFFFFF], np.uint64) * _GOLDEN + np.uint64(1))
        k = _mix(k ^ (np.asarray(indices).astype(np.uint64) * _GOLDEN + np.uint64(2)))
        return _mix(k ^ (np.broadcast_to(np.asarray(epochs), k.shape).astype(np.uint64) * _M1
                         + np.uint64(3)))


def random_bits(keys: np.ndarray, length: int, stream: int) -> np.ndarray:
    """[B, length] uint64 random words, a pure function of (key, column, stream)."""
    cols = np.arange(length, dtype=np.uint64) * np.uint64(4) + np.uint64(stream + 1)
    with np.errstate(over="ignore"):
        return _mix(keys[:, None] + cols[None, :] * _GOLDEN)


def uniform(keys: np.ndarray, length: int, stream: int) -> np.ndarray:
    """[B, length] float64 in [0, 1)."""
    return (random_bits(keys, length, stream) >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)


def num_to_predict(lengths: np.ndarray, max_predictions: int, masked_lm_prob: float) -> np.ndarray:
    """[B] masked positions per example: min(P, max(1, round(len * prob)))."""
    return np.minimum(max_predictions, np.maximum(1, np.rint(lengths * masked_lm_prob))).astype(np.int64)


def _take_words(order_word: np.ndarray, cand: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """Greedy whole-word selection in visiting order; [B, S] bool over the sorted positions.

    order_word: [B, S] word id of each sorted position (a word's tokens are adjacent);
    cand: [B, S] bool, a maskable token; budget: [B] tokens allowed.
    """
    B, S = cand.shape
    taken = np.zeros_like(cand)
    undecided = cand.copy()
    budget = budget.copy()
    big = np.iinfo(np.int64).max
    last = np.ones((B, S), bool)
    last[:, :-1] = order_word[:, 1:] != order_word[:, :-1]
    while True:
        active = (budget > 0) & undecided.any(1)
        if not active.any():
            return taken
        cum = np.cumsum(undecided, axis=1)
        # tokens used up to the end of each token's word: a reverse running minimum over word ends
        ends = np.where(last & undecided, cum, big)
        word_end = np.minimum.accumulate(ends[:, ::-1], axis=1)[:, ::-1]
        fits = undecided & (word_end <= budget[:, None]) & active[:, None]
        over = undecided & ~fits & active[:, None]
        # the first overflowing word of each row is skipped for good; the words before it are taken
        first_over = np.where(over.any(1), np.argmax(over, axis=1), S)
        col = np.arange(S)[None, :]
        before = col < first_over[:, None]
        take = fits & before
        taken |= take
        budget -= take.sum(1)
        over_word = np.take_along_axis(order_word, np.minimum(first_over, S - 1)[:, None], 1)
        skip = over.any(1)[:, None] & (order_word == over_word) & undecided
        undecided &= ~(take | skip)


def mask_batch(input_ids: np.ndarray, attention_mask: np.ndarray, keys: np.ndarray, *,
               vocab_size: int, cls_id: int, sep_id: int, mask_id: int, max_predictions: int,
               masked_lm_prob: float, is_continuation: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Masks a batch. input_ids, attention_mask: [B, S]; keys: [B] from `example_keys`.

    is_continuation: [V] bool, True for "##" pieces; given -> whole-word masking.
    Returns input_ids [B, S] (masked copy), masked_lm_positions [B, P], masked_lm_ids [B, P],
    masked_lm_weights [B, P] float32; positions ascending, padded with 0 (weight 0).
    """
    B, S = input_ids.shape
    P = max_predictions
    real = attention_mask.astype(bool)
    cand = real & (input_ids != cls_id) & (input_ids != sep_id)
    k = np.minimum(num_to_predict(real.sum(1), P, masked_lm_prob), cand.sum(1))
    score = uniform(keys, S, 0)
    col = np.broadcast_to(np.arange(S), (B, S))
    if is_continuation is None:
        order = np.argsort(np.where(cand, score, 2.0), axis=1, kind="stable")
        chosen_sorted = np.arange(S)[None, :] < k[:, None]
    else:
        # google-research/bert's grouping: a "##" piece joins the last word seen before it, even
        # across the [SEP] between A and B (a B truncated mid-word); only a piece before any word
        # (right after [CLS]) starts one.
        seen = np.zeros_like(cand)
        seen[:, 1:] = np.logical_or.accumulate(cand, axis=1)[:, :-1]  # a candidate before it
        start = cand & (~is_continuation[input_ids] | ~seen)
        start_col = np.maximum.accumulate(np.where(start, col, 0), axis=1)
        word_score = np.take_along_axis(score, start_col, 1)  # the word's draw, on all its pieces
        # sort by (word score, column): pieces of one word stay adjacent and in order
        order = np.lexsort((col, np.where(cand, word_score, 2.0)), axis=1)
        chosen_sorted = _take_words(np.take_along_axis(start_col, order, 1),
                                    np.take_along_axis(cand, order, 1), k)
    chosen = np.zeros((B, S), bool)
    np.put_along_axis(chosen, order, chosen_sorted, axis=1)
    # ascending positions of the chosen tokens, first P of them
    pos = np.argsort(~chosen, axis=1, kind="stable")[:, :P]
    weights = np.take_along_axis(chosen, pos, 1)
    pos = np.where(weights, pos, 0)
    labels = np.where(weights, np.take_along_axis(input_ids, pos, 1), 0)

    action = uniform(keys, S, 1)
    random_ids = (random_bits(keys, S, 2) % np.uint64(vocab_size)).astype(input_ids.dtype)
    masked = input_ids.copy()
    to_mask = chosen & (action < 0.8)
    to_random = chosen & (action >= 0.9)
    masked[to_mask] = mask_id
    masked[to_random] = random_ids[to_random]
    return {"input_ids": masked, "masked_lm_positions": pos.astype(np.int32),
            "masked_lm_ids": labels.astype(np.int32), "masked_lm_weights": weights.astype(np.float32)}
