"""Aligning one model's next-token distributions to another model's vocabulary and sequence.

FedMKT exchanges top-k token logits between models whose tokenizers differ. To distil from a
sender's distributions the receiver needs them on its own tokens, which takes two alignments
(as in FuseLLM, which FedMKT builds on):

- vocabulary: every sender token string is mapped to the receiver token with the same string,
  or else to the one at the minimum edit distance (ties: the longer common prefix, then the
  lower id). The mapping depends only on the two vocabularies, so it is computed once per pair
  and cached.
- sequence: both models tokenize the same gold path; dynamic time warping over the two token
  strings (cost: edit distance divided by the longer string's length, so that a character
  inside a word costs less than the next token) matches every receiver position to sender
  positions. A receiver position takes the sender's distribution only when it is matched to
  exactly one sender position with the same string; everywhere else (a word against its
  characters, say) its target is the one-hot distribution of its own gold token.

Each position is represented by the token it *predicts*, so a matched pair of positions holds
two distributions over the same next piece of text.

Sparse distributions are (ids, probs) arrays of shape [positions, m]; padding entries have
probability 0.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from transformers import PreTrainedTokenizerBase

#: Canonical strings of special tokens, so that e.g. `</s>` and `<|endoftext|>` (both an
#: end-of-sequence token) align to each other.
SPECIAL_STRINGS = {"bos": "<s>", "eos": "</s>", "pad": "<pad>", "unk": "<unk>"}

#: How many vocabulary mappings are kept (one per sender/receiver tokenizer pair).
MAPPING_CACHE_SIZE = 16

_MAPPINGS: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()


# --------------------------------------------------------------------------- token strings
def vocabulary_strings(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The text of every token id (index = id), special tokens by their canonical string.

    Byte-level and SentencePiece markers are decoded (`Ġthe` and `▁the` both become ` the`),
    because alignment compares the text tokens stand for, not their spelling in a vocab file.
    """
    raw = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    specials = {}
    for role in ("pad", "unk", "bos", "eos"):  # eos last: it wins when pad == eos
        token_id = getattr(tokenizer, f"{role}_token_id", None)
        if token_id is not None:
            specials[int(token_id)] = SPECIAL_STRINGS[role]
    out = []
    for token_id, token in enumerate(raw):
        if token_id in specials:
            out.append(specials[token_id])
        elif token is None:
            out.append("")
        else:
            text = tokenizer.convert_tokens_to_string([token])
            if token.startswith("\u2581") and not text.startswith(" "):
                text = " " + text  # SentencePiece drops the space of a leading word marker
            out.append(text)
    return out


@lru_cache(maxsize=1 << 16)
def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for ca, cb in zip(a, b):
        if ca != cb:
            break
        n += 1
    return n


# --------------------------------------------------------------------------- vocabulary
def nearest_token(text: str, vocab: Sequence[str]) -> int:
    """Id of the receiver token closest to `text`: exact, else minimum edit distance.

    Special tokens only ever match exactly: `<pad>` is no near spelling of a word.
    """
    specials = set(SPECIAL_STRINGS.values())
    best_id, best_key = 0, (len(text) + max(map(len, vocab), default=0) + 1, 0, 0)
    for token_id, candidate in enumerate(vocab):
        if candidate == text:
            return token_id
        if candidate in specials or abs(len(candidate) - len(text)) > best_key[0]:
            continue  # the length difference alone already exceeds the best distance
        key = (edit_distance(text, candidate), -_common_prefix(text, candidate), token_id)
        if key < best_key:
            best_id, best_key = token_id, key
    return best_id


def _fingerprint(vocab: Sequence[str]) -> str:
    return hashlib.sha1("\x1f".join(vocab).encode()).hexdigest()


def vocab_mapping(sender_vocab: Sequence[str], receiver_vocab: Sequence[str]) -> np.ndarray:
    """For each sender token id, the receiver token id with the same or the nearest string.

    Cached per (sender, receiver) vocabulary pair: nearest-string search costs one edit
    distance per (unmatched sender token, receiver token).
    """
    key = (_fingerprint(sender_vocab), _fingerprint(receiver_vocab))
    if key in _MAPPINGS:
        _MAPPINGS.move_to_end(key)
        return _MAPPINGS[key]
    exact: dict[str, int] = {}
    for token_id, text in enumerate(receiver_vocab):
        exact.setdefault(text, token_id)
    mapping = np.array([exact.get(text, -1) for text in sender_vocab], dtype=np.int64).reshape(-1)
    for unmatched in np.flatnonzero(mapping < 0).tolist():
        mapping[unmatched] = nearest_token(sender_vocab[unmatched], receiver_vocab)
    mapping.setflags(write=False)
    _MAPPINGS[key] = mapping
    while len(_MAPPINGS) > MAPPING_CACHE_SIZE:
        _MAPPINGS.popitem(last=False)
    return mapping


# --------------------------------------------------------------------------- sequence (DTW)
def token_cost(a: Sequence[str], b: Sequence[str]) -> np.ndarray:
    """[len(a), len(b)] edit distance of token strings over the longer string's length.

    Computed once per pair of distinct strings (a path repeats few tokens many times).
    """
    unique_a, index_a = np.unique(np.asarray(a, dtype=object), return_inverse=True)
    unique_b, index_b = np.unique(np.asarray(b, dtype=object), return_inverse=True)
    small = np.array(
        [[edit_distance(x, y) / max(len(x), len(y), 1) for y in unique_b] for x in unique_a],
        dtype=np.float64,
    ).reshape(len(unique_a), len(unique_b))
    return small[np.ix_(index_a.reshape(-1), index_b.reshape(-1))]


def dtw(cost: np.ndarray) -> list[tuple[int, int]]:
    """The minimum-cost monotone warping path through `cost` from (0, 0) to (n-1, m-1).

    Steps are (1, 1), (1, 0) and (0, 1); the accumulated table is filled one anti-diagonal at
    a time, since each cell depends only on the two previous diagonals. Ties prefer the
    diagonal step.
    """
    n, m = cost.shape
    if n == 0 or m == 0:
        return []
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    for diagonal in range(2, n + m + 1):
        i = np.arange(max(1, diagonal - m), min(n, diagonal - 1) + 1)
        j = diagonal - i
        best = np.minimum(total[i - 1, j - 1], np.minimum(total[i - 1, j], total[i, j - 1]))
        total[i, j] = cost[i - 1, j - 1] + best
    path = [(n - 1, m - 1)]
    i, j = n, m
    while (i, j) != (1, 1):
        steps = ((i - 1, j - 1), (i - 1, j), (i, j - 1))
        i, j = min(steps, key=lambda s: total[s])  # min keeps the first (diagonal) on ties
        path.append((i - 1, j - 1))
    return path[::-1]


def dtw_matches(receiver: Sequence[str], sender: Sequence[str]) -> list[list[int]]:
    """For each receiver token, the sender tokens DTW matches it with (in order)."""
    matches: list[list[int]] = [[] for _ in receiver]
    if list(receiver) == list(sender):  # same tokenization: the identity alignment
        return [[i] for i in range(len(receiver))]
    for i, j in dtw(token_cost(receiver, sender)):
        matches[i].append(j)
    return matches


def one_to_one(receiver: Sequence[str], sender: Sequence[str]) -> np.ndarray:
    """For each receiver position, its sender position when matched alone and with the same
    string; -1 where the receiver must fall back to its own gold token."""
    out = np.full(len(receiver), -1, dtype=np.int64)
    for i, matched in enumerate(dtw_matches(receiver, sender)):
        if len(matched) == 1 and receiver[i] == sender[matched[0]]:
            out[i] = matched[0]
    return out


# --------------------------------------------------------------------------- distributions
def softmax_rows(values: np.ndarray, temperature: float) -> np.ndarray:
    """Row-wise softmax of (top-k) log-probabilities or logits at a temperature."""
    scaled = values.astype(np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    weights = np.exp(scaled)
    return (weights / weights.sum(axis=-1, keepdims=True)).astype(np.float32)


def merge_sparse(ids: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum the probabilities of repeated ids in each row; freed slots get probability 0."""
    order = np.argsort(ids, axis=1, kind="stable")
    ids_sorted = np.take_along_axis(ids, order, axis=1)
    probs_sorted = np.take_along_axis(probs, order, axis=1)
    new_group = np.ones_like(ids_sorted, dtype=bool)
    new_group[:, 1:] = ids_sorted[:, 1:] != ids_sorted[:, :-1]
    group = np.cumsum(new_group, axis=1) - 1
    rows = np.broadcast_to(np.arange(ids.shape[0])[:, None], ids.shape)
    merged_probs = np.zeros_like(probs_sorted)
    np.add.at(merged_probs, (rows, group), probs_sorted)
    merged_ids = np.zeros_like(ids_sorted)
    merged_ids[rows[new_group], group[new_group]] = ids_sorted[new_group]
    return merged_ids, merged_probs


@dataclass(frozen=True)
class SparseTarget:
    """A distillation target on the receiver's positions of one item: [T, m] ids and probs."""

    ids: np.ndarray
    probs: np.ndarray
    #: Share of positions that carry the sender's distribution (the rest are one-hot).
    aligned_fraction: float = 1.0


def align_topk(
    receiver_tokens: np.ndarray,
    receiver_vocab: Sequence[str],
    sender_tokens: np.ndarray,
    sender_vocab: Sequence[str],
    topk_ids: np.ndarray,
    topk_values: np.ndarray,
    *,
    temperature: float,
) -> SparseTarget:
    """The sender's top-k distributions of one item moved onto the receiver's positions.

    `receiver_tokens`/`sender_tokens` are the gold path token ids each position predicts under
    either tokenizer; `topk_ids`/`topk_values` ([T_sender, k]) are the sender's top-k ids and
    log-probabilities (or logits), turned into probabilities at `temperature` over the top-k.
    Sender tokens that map onto one receiver token have their probabilities summed.
    """
    receiver_text = [receiver_vocab[t] for t in receiver_tokens]
    sender_text = [sender_vocab[t] for t in sender_tokens]
    source = one_to_one(receiver_text, sender_text)
    k = topk_ids.shape[1] if topk_ids.ndim == 2 else 1
    ids = np.repeat(np.asarray(receiver_tokens, dtype=np.int64)[:, None], k, axis=1)
    probs = np.zeros(ids.shape, dtype=np.float32)
    probs[:, 0] = 1.0  # one-hot of the receiver's own gold token where nothing aligns
    aligned = source >= 0
    if aligned.any():
        mapping = vocab_mapping(sender_vocab, receiver_vocab)
        picked = source[aligned]
        ids[aligned] = mapping[topk_ids[picked]]
        probs[aligned] = softmax_rows(topk_values[picked], temperature)
        ids[aligned], probs[aligned] = merge_sparse(ids[aligned], probs[aligned])
    fraction = float(aligned.mean()) if len(aligned) else 0.0
    return SparseTarget(ids=ids, probs=probs, aligned_fraction=fraction)


def mix_targets(targets: Sequence[SparseTarget], weights: Sequence[float]) -> SparseTarget:
    """The weighted mean of sparse distributions on the same positions (weights sum to 1)."""
    if len(targets) == 1 or sum(w > 0 for w in weights) == 1:
        return targets[int(np.argmax(weights))]
    ids = np.concatenate([t.ids for t in targets], axis=1)
    probs = np.concatenate([t.probs * w for t, w in zip(targets, weights)], axis=1)
    ids, probs = merge_sparse(ids, probs.astype(np.float32))
    fraction = float(sum(w * t.aligned_fraction for t, w in zip(targets, weights)))
    return SparseTarget(ids=ids, probs=probs, aligned_fraction=fraction)
