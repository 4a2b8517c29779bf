"""Token alignment across vocabularies and tokenizations (FedMKT's alignment step)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lada.hosts.token_alignment import (
    align_topk,
    dtw,
    dtw_matches,
    edit_distance,
    merge_sparse,
    mix_targets,
    nearest_token,
    one_to_one,
    softmax_rows,
    vocab_mapping,
    vocabulary_strings,
)
from lada.models.presets import tiny_tokenizer

TEXT = " the spider has 8 legs and the ant has 6 legs\n8 + 6 = 14\n#### 14\n"


def _spans(tokens: list[str]) -> list[tuple[int, int]]:
    """Character span of each token in the concatenated text."""
    out, at = [], 0
    for token in tokens:
        out.append((at, at + len(token)))
        at += len(token)
    return out


def _containing(spans_a: list[tuple[int, int]], spans_b: list[tuple[int, int]]) -> list[list[int]]:
    """For each span of a, the spans of b that overlap it (the correct alignment)."""
    return [
        [j for j, (lo_b, hi_b) in enumerate(spans_b) if lo_b < hi_a and lo_a < hi_b]
        for lo_a, hi_a in spans_a
    ]


def _words(text: str) -> list[str]:
    """Hand-made word tokenization: runs of letters, everything else one character."""
    out: list[str] = []
    for ch in text:
        if ch.isalpha() and out and out[-1].isalpha():
            out[-1] += ch
        else:
            out.append(ch)
    return out


# --------------------------------------------------------------------------- strings
def test_edit_distance_textbook_cases_and_symmetry() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert edit_distance("flaw", "lawn") == 2
    assert edit_distance("same", "same") == 0
    assert edit_distance("ab", "ba") == edit_distance("ba", "ab") == 2


def test_vocabulary_strings_decode_every_id_and_canonical_specials() -> None:
    tok = tiny_tokenizer("word")
    vocab = vocabulary_strings(tok)
    assert len(vocab) == len(tok)
    assert vocab[tok.eos_token_id] == "</s>" and vocab[tok.bos_token_id] == "<s>"
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    assert "".join(vocab[i] for i in ids) == TEXT


# --------------------------------------------------------------------------- vocabulary
def test_vocab_mapping_picks_exact_then_nearest_string() -> None:
    sender = ["</s>", "a", "cat", "cats", "ant", "<pad", "dgo"]
    receiver = ["<pad>", "</s>", "a", "n", "t", "e", "cat", "dog", "p"]
    specials = {"<pad>", "</s>"}
    mapping = vocab_mapping(sender, receiver)
    mapped = [receiver[i] for i in mapping]
    assert mapped[:3] == ["</s>", "a", "cat"]  # exact strings
    assert mapped[3] == "cat"  # one deletion away
    assert mapped[4] == "a"  # "a", "n", "t", "cat" tie at distance 2: the shared prefix decides
    assert mapped[5] not in specials  # "<pad>" is one edit away, but specials match exactly only
    assert mapped[6] == "dog"  # distance 2 beats every single letter
    for text, target in zip(sender, mapped):
        best = min(edit_distance(text, r) for r in receiver if r not in specials or r == text)
        assert edit_distance(text, target) == best


def test_vocab_mapping_is_cached_per_vocabulary_pair() -> None:
    sender, receiver = ["x", "yy", "zzz"], ["x", "y", "z"]
    first = vocab_mapping(sender, receiver)
    assert vocab_mapping(list(sender), list(receiver)) is first
    assert vocab_mapping(receiver, sender) is not first
    with pytest.raises(ValueError):
        first[0] = 2  # cached arrays are read-only


def test_tiny_char_and_word_vocabularies_map_characters_onto_themselves() -> None:
    char_vocab = vocabulary_strings(tiny_tokenizer("char"))
    word_vocab = vocabulary_strings(tiny_tokenizer("word"))
    to_word = vocab_mapping(char_vocab, word_vocab)
    assert all(word_vocab[j] == text for text, j in zip(char_vocab, to_word))
    to_char = vocab_mapping(word_vocab, char_vocab)
    for text, j in zip(word_vocab, to_char):
        if len(text) > 1 and text not in char_vocab:  # a whole word: its first letter
            assert char_vocab[j] == text[0]
    assert nearest_token("spider", char_vocab) == char_vocab.index("s")


# --------------------------------------------------------------------------- sequences
def _brute_force_dtw(cost: np.ndarray) -> float:
    n, m = cost.shape
    best = np.inf
    # every monotone path is a sequence of steps (1,1), (1,0), (0,1) from (0,0) to (n-1,m-1)
    for steps in itertools.product(((1, 1), (1, 0), (0, 1)), repeat=n + m - 2):
        i = j = 0
        total = cost[0, 0]
        for di, dj in steps:
            i, j = i + di, j + dj
            if i >= n or j >= m:
                break
            total += cost[i, j]
            if (i, j) == (n - 1, m - 1):
                best = min(best, total)
                break
    return best if (n, m) != (1, 1) else cost[0, 0]


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(0, 10_000))
def test_dtw_finds_the_cheapest_monotone_path(n: int, m: int, seed: int) -> None:
    cost = np.random.default_rng(seed).random((n, m))
    path = dtw(cost)
    assert path[0] == (0, 0) and path[-1] == (n - 1, m - 1)
    for (i0, j0), (i1, j1) in zip(path, path[1:]):
        assert (i1 - i0, j1 - j0) in ((1, 1), (1, 0), (0, 1))
    assert sum(cost[i, j] for i, j in path) == pytest.approx(_brute_force_dtw(cost))


def test_characters_and_words_of_one_text_align_position_by_position() -> None:
    chars, words = list(TEXT), _words(TEXT)
    assert len(words) < len(chars)
    expected = _containing(_spans(chars), _spans(words))
    assert dtw_matches(chars, words) == expected  # each character -> the word holding it
    assert dtw_matches(words, chars) == _containing(_spans(words), _spans(chars))
    # One-to-one only where a single character is a whole token on both sides.
    source = one_to_one(chars, words)
    for i, matched in enumerate(expected):
        single = len(words[matched[0]]) == 1
        assert source[i] == (matched[0] if single else -1)


def test_tiny_tokenizers_align_a_gold_path_by_characters() -> None:
    char_tok, word_tok = tiny_tokenizer("char"), tiny_tokenizer("word")
    char_vocab, word_vocab = vocabulary_strings(char_tok), vocabulary_strings(word_tok)
    char_ids = [*char_tok(TEXT, add_special_tokens=False)["input_ids"], char_tok.eos_token_id]
    word_ids = [*word_tok(TEXT, add_special_tokens=False)["input_ids"], word_tok.eos_token_id]
    chars = [char_vocab[i] for i in char_ids]
    words = [word_vocab[i] for i in word_ids]
    assert any(len(w) > 1 and w != "</s>" for w in words)  # the tokenizations really differ
    # Spans: treat the end-of-sequence token as one character after the text.
    char_spans = [*_spans(chars[:-1]), (len(TEXT), len(TEXT) + 1)]
    word_spans = [*_spans(words[:-1]), (len(TEXT), len(TEXT) + 1)]
    assert dtw_matches(words, chars) == _containing(word_spans, char_spans)
    assert dtw_matches(chars, words) == _containing(char_spans, word_spans)


def test_identical_tokenizations_align_to_the_identity() -> None:
    tokens = ["a", "b", "a", "b"]
    assert dtw_matches(tokens, tokens) == [[0], [1], [2], [3]]
    assert one_to_one(tokens, tokens).tolist() == [0, 1, 2, 3]


# --------------------------------------------------------------------------- distributions
def test_merge_sparse_sums_repeated_ids_and_keeps_mass() -> None:
    ids = np.array([[3, 1, 3, 2], [0, 0, 0, 0]])
    probs = np.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]], dtype=np.float32)
    merged_ids, merged_probs = merge_sparse(ids, probs)
    for row in range(2):
        got = {}
        for i, p in zip(merged_ids[row], merged_probs[row]):
            if p > 0:
                got[int(i)] = got.get(int(i), 0.0) + float(p)
        want = {}
        for i, p in zip(ids[row], probs[row]):
            want[int(i)] = want.get(int(i), 0.0) + float(p)
        assert got == pytest.approx(want)
        assert len([p for p in merged_probs[row] if p > 0]) == len(set(ids[row].tolist()))


def test_align_topk_moves_aligned_distributions_and_falls_back_to_gold() -> None:
    # Sender: characters; receiver: words. Text "ab c": sender "a","b"," ","c"; receiver
    # "ab"," ","c". Receiver vocab also holds every single character.
    sender_vocab = ["a", "b", " ", "c", "</s>"]
    receiver_vocab = ["</s>", "ab", " ", "c", "a", "b"]
    sender_tokens = np.array([0, 1, 2, 3, 4])
    receiver_tokens = np.array([1, 2, 3, 0])
    rng = np.random.default_rng(0)
    topk_ids = np.stack([rng.permutation(5)[:3] for _ in range(5)])
    topk_values = rng.normal(size=(5, 3)).astype(np.float16)
    target = align_topk(
        receiver_tokens,
        receiver_vocab,
        sender_tokens,
        sender_vocab,
        topk_ids,
        topk_values,
        temperature=2.0,
    )
    assert target.ids.shape[0] == len(receiver_tokens)
    np.testing.assert_allclose(target.probs.sum(1), 1.0, rtol=1e-5)
    # "ab" spans two sender tokens: one-hot of the receiver's own gold token.
    nonzero = target.probs[0] > 0
    assert target.ids[0][nonzero].tolist() == [1] and target.probs[0][nonzero].tolist() == [1.0]
    # " ", "c" and "</s>" match one sender token each: the sender's top-k at temperature 2,
    # carried through the vocabulary mapping (all of these strings exist on both sides).
    mapping = vocab_mapping(sender_vocab, receiver_vocab)
    for receiver_pos, sender_pos in ((1, 2), (2, 3), (3, 4)):
        want = softmax_rows(topk_values[sender_pos][None], 2.0)[0]
        got = {
            int(i): float(p)
            for i, p in zip(target.ids[receiver_pos], target.probs[receiver_pos])
            if p > 0
        }
        expect = {int(mapping[i]): float(p) for i, p in zip(topk_ids[sender_pos], want)}
        assert got == pytest.approx(expect)
    assert target.aligned_fraction == pytest.approx(3 / 4)


def test_mix_targets_is_the_weighted_mean() -> None:
    from lada.hosts.token_alignment import SparseTarget

    first = SparseTarget(ids=np.array([[0, 1]]), probs=np.array([[0.5, 0.5]], dtype=np.float32))
    second = SparseTarget(ids=np.array([[1, 2]]), probs=np.array([[0.2, 0.8]], dtype=np.float32))
    mixed = mix_targets([first, second], [0.25, 0.75])
    got = {int(i): float(p) for i, p in zip(mixed.ids[0], mixed.probs[0]) if p > 0}
    assert got == pytest.approx({0: 0.125, 1: 0.125 + 0.15, 2: 0.6})
    assert mix_targets([first, second], [0.0, 1.0]) is second
