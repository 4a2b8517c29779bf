"""The model wrapper: scoring, generation, embeddings, training and save/load."""

from __future__ import annotations

import pytest
import torch

from lada.models.persist import save_model
from lada.models.presets import LoraSpec, load_model, load_model_dir
from lada.models.tokenizer import build_char_tokenizer, build_word_tokenizer
from lada.models.wrapper import ReasoningModel, cut_after_answer, path_has_ended

from .conftest import spread_weights

PROMPTS = ["Q: 3 + 4 = ?\nA:", "Q: gcd(12, 18)\nA:", "Q: 7 * 8 = ?\nA:"]
PATHS = [" 3 + 4 = 7\n#### 7\n", " 18 = 1 x 12 + 6\n12 = 2 x 6 + 0\n#### 6\n", " #### 56\n"]


def _direct_logprob(model: ReasoningModel, prompt: str, path: str, eos: bool = True) -> float:
    """log p(path [+ eos] | prompt) computed token by token from an unpadded forward."""
    tok = model.tokenizer
    prompt_ids = [tok.bos_token_id, *tok(prompt, add_special_tokens=False)["input_ids"]]
    path_ids = [*tok(path, add_special_tokens=False)["input_ids"], *([tok.eos_token_id] * eos)]
    ids = torch.tensor([prompt_ids + path_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model.model(input_ids=ids).logits[0].float(), dim=-1)
    total = 0.0
    for k, token in enumerate(path_ids):
        total += float(logprobs[len(prompt_ids) + k - 1, token])
    return total


def test_char_tokenizer_splits_digits_and_round_trips() -> None:
    tok = build_char_tokenizer()
    ids = tok("#### 1234\n", add_special_tokens=False)["input_ids"]
    assert len(ids) == len("#### 1234\n")
    assert tok.decode(ids) == "#### 1234\n"


def test_word_tokenizer_keeps_known_words_and_splits_numbers() -> None:
    tok = build_word_tokenizer(["legs: 13 spider, 2 cat", "legs: 1 cat"])
    pieces = tok.convert_ids_to_tokens(tok("legs: 132 cats", add_special_tokens=False)["input_ids"])
    assert pieces[:2] == ["legs", ":"]
    assert "1" in pieces and "3" in pieces and "2" in pieces  # digit by digit
    assert "cat" not in pieces  # "cats" is not a known word: spelled out
    assert (
        tok.decode(tok("legs: 132 cats")["input_ids"], skip_special_tokens=True) == "legs: 132 cats"
    )


def test_sequence_logprob_equals_sum_of_direct_token_logprobs(varied_tiny: ReasoningModel) -> None:
    batched = varied_tiny.sequence_logprobs(PROMPTS, PATHS)
    direct = torch.tensor([_direct_logprob(varied_tiny, p, q) for p, q in zip(PROMPTS, PATHS)])
    torch.testing.assert_close(batched, direct, rtol=1e-4, atol=1e-3)


def test_score_paths_is_padding_invariant_and_masks_prompt(varied_tiny: ReasoningModel) -> None:
    together = varied_tiny.score_paths(PROMPTS, PATHS)
    alone = [varied_tiny.score_paths([p], [q]) for p, q in zip(PROMPTS, PATHS)]
    for i, single in enumerate(alone):
        torch.testing.assert_close(together.total[i], single.total[0], rtol=1e-4, atol=1e-3)
        n_path = len(varied_tiny.tokenizer(PATHS[i], add_special_tokens=False)["input_ids"]) + 1
        assert int(together.n_tokens[i]) == n_path
    torch.testing.assert_close(together.mean(), together.total / together.n_tokens)


def test_batched_greedy_generation_equals_one_at_a_time(varied_tiny: ReasoningModel) -> None:
    prompts = [*PROMPTS, "Q: 100 - 1 = ?\nA:"]
    batched = varied_tiny.generate_paths(prompts, max_new_tokens=24, batch_size=4)
    singles = [varied_tiny.generate_paths([p], max_new_tokens=24)[0] for p in prompts]
    assert batched == singles
    assert len(set(batched)) > 1  # outputs depend on the prompt, so the check means something


def test_sampled_generation_is_seeded(varied_tiny: ReasoningModel) -> None:
    a = varied_tiny.generate_paths(PROMPTS, max_new_tokens=16, do_sample=True, seed=3)
    b = varied_tiny.generate_paths(PROMPTS, max_new_tokens=16, do_sample=True, seed=3)
    c = varied_tiny.generate_paths(PROMPTS, max_new_tokens=16, do_sample=True, seed=4)
    assert a == b
    assert a != c


def test_cut_after_answer_keeps_answer_line_only() -> None:
    assert cut_after_answer(" 1 + 1 = 2\n#### 2\nQ: more") == " 1 + 1 = 2\n#### 2\n"
    assert cut_after_answer(" no answer yet") == " no answer yet"


def test_embeddings_are_mean_pooled_and_padding_invariant(varied_tiny: ReasoningModel) -> None:
    texts = ["short", "a much longer text that forces padding of the short one"]
    together = varied_tiny.embed(texts)
    alone = varied_tiny.embed(texts[:1])
    assert together.shape == (2, varied_tiny.hidden_size)
    torch.testing.assert_close(
        torch.from_numpy(together[:1]), torch.from_numpy(alone), rtol=1e-4, atol=1e-4
    )


def test_train_step_lowers_loss_on_the_trained_path() -> None:
    model = load_model("tiny-1m", device="cpu", seed=1, learning_rate=3e-3)
    before = float(model.sequence_logprobs(PROMPTS, PATHS).sum())
    for _ in range(20):
        scores = model.score_paths(PROMPTS, PATHS, grad=True)
        model.train_step(-scores.total.sum() / scores.n_tokens.sum())
    after = float(model.sequence_logprobs(PROMPTS, PATHS).sum())
    assert after > before + 10


def test_full_save_load_round_trips_exactly(tmp_path, varied_tiny: ReasoningModel) -> None:
    save_model(varied_tiny, tmp_path / "m")
    loaded = load_model_dir(tmp_path / "m", device="cpu")
    torch.testing.assert_close(
        loaded.sequence_logprobs(PROMPTS, PATHS),
        varied_tiny.sequence_logprobs(PROMPTS, PATHS),
        rtol=0,
        atol=0,
    )
    assert loaded.generate_paths(PROMPTS, max_new_tokens=12) == varied_tiny.generate_paths(
        PROMPTS, max_new_tokens=12
    )


def test_gpt2_preset_with_tied_weights_round_trips(tmp_path) -> None:
    model = spread_weights(load_model("tiny-gpt2-2m", device="cpu"), std=0.2)
    save_model(model, tmp_path / "g")
    loaded = load_model_dir(tmp_path / "g", device="cpu")
    torch.testing.assert_close(
        loaded.sequence_logprobs(PROMPTS, PATHS),
        model.sequence_logprobs(PROMPTS, PATHS),
        rtol=0,
        atol=0,
    )


def test_lora_trains_only_the_adapter_and_round_trips(tmp_path) -> None:
    model = load_model("tiny-1m", device="cpu", lora=LoraSpec(r=4), learning_rate=1e-2)
    frozen = {n: p.clone() for n, p in model.model.named_parameters() if not p.requires_grad}
    assert 0 < model.num_parameters(trainable_only=True) < model.num_parameters() / 5
    for _ in range(5):
        scores = model.score_paths(PROMPTS, PATHS, grad=True)
        model.train_step(-scores.total.mean())
    for name, p in model.model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), name
    save_model(model, tmp_path / "lora")
    loaded = load_model_dir(tmp_path / "lora", device="cpu")
    assert loaded.source["lora"]["r"] == 4
    torch.testing.assert_close(
        loaded.sequence_logprobs(PROMPTS, PATHS),
        model.sequence_logprobs(PROMPTS, PATHS),
        rtol=0,
        atol=0,
    )


def test_trainable_state_transfer_makes_models_equal() -> None:
    a = load_model("tiny-1m", device="cpu", lora=LoraSpec(r=4), seed=0)
    b = load_model("tiny-1m", device="cpu", lora=LoraSpec(r=4), seed=0)
    spread_weights(a, seed=5, std=0.1)
    assert not torch.equal(a.sequence_logprobs(PROMPTS, PATHS), b.sequence_logprobs(PROMPTS, PATHS))
    b.load_trainable_state(a.trainable_state())
    b_state = {n: p for n, p in b.model.named_parameters()}
    for name, p in a.model.named_parameters():
        if p.requires_grad:
            assert torch.equal(p, b_state[name])


def test_clone_is_independent(varied_tiny: ReasoningModel) -> None:
    twin = varied_tiny.clone()
    before = varied_tiny.sequence_logprobs(PROMPTS, PATHS)
    scores = twin.score_paths(PROMPTS, PATHS, grad=True)
    twin.train_step(-scores.total.sum())
    torch.testing.assert_close(varied_tiny.sequence_logprobs(PROMPTS, PATHS), before)
    assert not torch.equal(twin.sequence_logprobs(PROMPTS, PATHS), before)


def test_hub_style_directory_loads_through_load_model(tmp_path) -> None:
    """Any `save_pretrained` folder (what a hub download is) loads by path, offline."""
    source = spread_weights(load_model("tiny-1m", device="cpu"), std=0.2)
    source.model.save_pretrained(tmp_path / "hf")
    source.tokenizer.save_pretrained(tmp_path / "hf")
    loaded = load_model(str(tmp_path / "hf"), device="cpu")
    assert loaded.source["kind"] == "hub"
    assert loaded.num_parameters() == source.num_parameters()
    # A plain HF folder carries no "add a BOS token" flag, so compare on explicit text only.
    loaded.add_bos = True
    torch.testing.assert_close(
        loaded.sequence_logprobs(PROMPTS, PATHS), source.sequence_logprobs(PROMPTS, PATHS)
    )


def test_smollm2_preset_loads_from_the_local_gguf_and_answers() -> None:
    model = load_model("smollm2-135m", device="cpu")
    assert 130e6 < model.num_parameters() < 140e6
    good = model.sequence_logprobs(["Q: What is 2 + 3?\nA:"], [" 2 + 3 = 5\n#### 5\n"])
    bad = model.sequence_logprobs(["Q: What is 2 + 3?\nA:"], [" 2 + 3 = 9\n#### 9\n"])
    assert float(good[0]) > float(bad[0])  # a pretrained model prefers the right sum


def test_path_has_ended_needs_a_complete_answer_line_at_the_end() -> None:
    assert path_has_ended(" 3 + 4 = 7\n#### 7\n")
    assert path_has_ended("#### 7\n  \n")
    assert not path_has_ended(" 3 + 4 = 7\n#### 7")  # cut inside the answer line
    assert not path_has_ended(" 3 + 4 = 7\n3 +")  # cut before it
    assert not path_has_ended("#### 7\nmore text")
    assert not path_has_ended("")


def test_end_of_sequence_is_scored_only_after_a_complete_answer_line(
    varied_tiny: ReasoningModel,
) -> None:
    prompt = PROMPTS[0]
    ended, cut = " 3 + 4 = 7\n#### 7\n", " 3 + 4 = 7\n#### 7"
    scores = varied_tiny.score_paths([prompt, prompt], [ended, cut])
    n_text = varied_tiny.count_tokens([ended, cut])
    assert scores.n_tokens.tolist() == [n_text[0] + 1, n_text[1]]
    assert varied_tiny.path_token_counts([ended, cut]) == [n_text[0] + 1, n_text[1]]
    with_eos = _direct_logprob(varied_tiny, prompt, ended, eos=True)
    without_eos = _direct_logprob(varied_tiny, prompt, ended, eos=False)
    assert abs(with_eos - without_eos) > 1e-2  # stopping has a price the score must include
    assert float(scores.total[0]) == pytest.approx(with_eos, rel=1e-4, abs=1e-3)
    assert float(scores.total[1]) == pytest.approx(
        _direct_logprob(varied_tiny, prompt, cut, eos=False), rel=1e-4, abs=1e-3
    )
    # the cut path is exactly the ended one minus its newline and end-of-sequence
    newline_and_eos = float(scores.total[0] - scores.total[1])
    text_only = _direct_logprob(varied_tiny, prompt, cut, eos=False)
    assert newline_and_eos == pytest.approx(with_eos - text_only, rel=1e-4, abs=1e-3)


def test_gpt2_preset_has_no_dropout_so_train_and_eval_scores_match() -> None:
    model = load_model("tiny-gpt2-2m", device="cpu")
    config = model.model.config
    assert (config.resid_pdrop, config.embd_pdrop, config.attn_pdrop) == (0.0, 0.0, 0.0)
    model.train()
    train_mode = model.score_paths(PROMPTS, PATHS).total
    model.eval()
    eval_mode = model.score_paths(PROMPTS, PATHS).total
    torch.testing.assert_close(train_mode, eval_mode, rtol=0, atol=1e-6)
