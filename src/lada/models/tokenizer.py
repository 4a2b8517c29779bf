"""Tokenizers built offline for the built-in tiny models.

The tiny presets read text character by character, so every digit is its own token: arithmetic
reasoning stays learnable for a ~1M-parameter model and no vocabulary file has to be downloaded.
A second, word-level variant gives the heterogeneous-tokenizer setting (FedMKT) a genuinely
different vocabulary while still splitting numbers digit by digit.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from typing import Literal

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
TokenizerKind = Literal["char", "word"]

#: Printable ASCII plus newline: every character the task suites and prompts use.
CHAR_ALPHABET = "".join(sorted(set(string.printable) - set("\t\r\x0b\x0c")))


def _wrap(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
    )


def build_char_tokenizer(alphabet: str = CHAR_ALPHABET) -> PreTrainedTokenizerFast:
    """One token per character; unknown characters map to `<unk>`."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in alphabet:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return _wrap(tok)


def build_word_tokenizer(
    corpus: Iterable[str], alphabet: str = CHAR_ALPHABET, max_words: int = 2000
) -> PreTrainedTokenizerFast:
    """Whole words from `corpus` as tokens, digits and every other character one by one.

    Words outside the learned list fall back to characters, so any text still encodes.
    """
    counts: dict[str, int] = {}
    word_re = Regex(r"[A-Za-z]+|[\s\S]")
    splitter = pre_tokenizers.Split(word_re, behavior="isolated")
    for text in corpus:
        for piece, _ in splitter.pre_tokenize_str(text):
            if len(piece) > 1:
                counts[piece] = counts.get(piece, 0) + 1
    words = sorted(counts, key=lambda w: (-counts[w], w))[:max_words]
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in alphabet:
        vocab.setdefault(ch, len(vocab))
    for word in sorted(words):
        vocab.setdefault(word, len(vocab))
    known = "|".join(sorted((w for w in words), key=len, reverse=True))
    pattern = Regex(rf"(?:{known})(?![A-Za-z])|[\s\S]") if known else Regex(r"[\s\S]")
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern, behavior="isolated")
    tok.decoder = decoders.Fuse()
    return _wrap(tok)
