"""Tokenizer coverage: text a model cannot encode is reported up front, by item and character."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from lada.models.coverage import PROMPT_FORMAT, CoverageError, check_encodable, find_unencodable
from lada.models.presets import load_model
from lada.models.tokenizer import build_char_tokenizer, build_word_tokenizer
from lada.tasks.item import ReasoningItem

CLEAN = ReasoningItem("gsm:1", "math", "What is 3 + 4?", "7", "numeric", "3 + 4 = 7")
TIMES = ReasoningItem("gsm:2", "math", "What is 3 × 4?", "12", "numeric", "3 × 4 = 12")
ACCENT = ReasoningItem(
    "mc:7", "food", "Which café sells crêpes?", "B", "option", choices=("Le Nord", "Chez Zoë")
)
LITERAL = ReasoningItem("gsm:3", "math", "Is <unk> a token? 1 + 1", "2", "numeric")


def _wordpiece() -> PreTrainedTokenizerFast:
    """A Hugging Face WordPiece tokenizer over an ASCII corpus, built offline."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    corpus = ["What is 3 + 4 = 7 Which sells Le Nord Chez Is a token", "0123456789 ?+=.:#\n"]
    alphabet = [chr(c) for c in range(32, 127)]
    trainer = trainers.WordPieceTrainer(
        vocab_size=300, special_tokens=["[UNK]", "[PAD]"], initial_alphabet=alphabet
    )
    tokenizer.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]")


def _byte_level() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2 style): every text encodes, there is no unknown."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(["What is 3 + 4?"], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer)


@pytest.mark.parametrize(
    "tokenizer",
    [build_char_tokenizer(), build_word_tokenizer(["What is the cafe"]), _wordpiece()],
    ids=["char", "word", "hf-wordpiece"],
)
def test_items_with_unknown_characters_are_named(tokenizer: PreTrainedTokenizerFast) -> None:
    assert find_unencodable(tokenizer, [CLEAN]) == []
    check_encodable(tokenizer, [CLEAN], "client 0 train split")
    with pytest.raises(CoverageError) as caught:
        check_encodable(tokenizer, [CLEAN, TIMES, ACCENT], "client 0 train split")
    error = caught.value
    message = str(error)
    assert message.startswith("client 0 train split: the tokenizer of ")
    assert "cannot encode 2 of 3 items" in message
    assert "item 'gsm:2' question: '×'" in message and "item 'gsm:2' rationale: '×'" in message
    assert "item 'mc:7' question: 'é', 'ê'" in message
    assert "item 'mc:7' choices[1]: 'ë'" in message
    assert "gsm:1" not in message
    found = {(u.item_id, u.field): u.characters for u in error.uncovered}
    assert found == {
        ("gsm:2", "question"): ("×",),
        ("gsm:2", "rationale"): ("×",),
        ("mc:7", "question"): ("é", "ê"),
        ("mc:7", "choices[1]"): ("ë",),
    }


def test_a_model_is_checked_through_its_tokenizer_and_named() -> None:
    model = load_model("tiny-1m", device="cpu", seed=0)
    with pytest.raises(CoverageError, match=f"server public pool: the tokenizer of {model.name}"):
        check_encodable(model, [TIMES], "server public pool")


def test_byte_level_tokenizers_encode_everything() -> None:
    assert find_unencodable(_byte_level(), [CLEAN, TIMES, ACCENT]) == []


def test_a_literal_unknown_token_string_is_not_a_failure() -> None:
    check_encodable(build_char_tokenizer(), [LITERAL], "x")


def test_characters_only_the_prompt_format_adds_are_reported_as_such() -> None:
    # An alphabet without '#' cannot write the answer marker, whatever the items say.
    tokenizer = build_char_tokenizer(
        alphabet="".join(c for c in map(chr, range(32, 127)) if c != "#") + "\n"
    )
    with pytest.raises(CoverageError) as caught:
        check_encodable(tokenizer, [CLEAN], "client 2 test split")
    assert [(u.field, u.characters) for u in caught.value.uncovered] == [(PROMPT_FORMAT, ("#",))]


def test_long_reports_are_cut_with_a_count() -> None:
    items = [
        ReasoningItem(f"x:{k}", "d", f"What is {k} × 2?", str(2 * k), "numeric") for k in range(9)
    ]
    with pytest.raises(CoverageError, match="cannot encode 9 of 9 items") as caught:
        check_encodable(build_char_tokenizer(), items, "x")
    assert str(caught.value).count("item 'x:") == 5 and "and 4 more" in str(caught.value)
