"""Model loading: tiny random model, prompt styles, and GGUF -> cache -> reload of both bundles."""

import time

import pytest

from models import PromptFormatter, load_model, load_tokenizer, resolve_model_dir


def test_tiny_model_is_deterministic_per_seed():
    a = load_model("tiny-random-3").model
    b = load_model("tiny-random-3").model
    c = load_model("tiny-random-4").model
    wa, wb, wc = (m.get_input_embeddings().weight for m in (a, b, c))
    assert (wa == wb).all() and not (wa == wc).all()
    assert not any(p.requires_grad for p in a.parameters())  # the base is frozen


def test_chat_and_plain_prompt_styles():
    tok = load_tokenizer("tiny-random")
    chat = PromptFormatter(tok, "auto")
    assert chat.style == "chat"
    assert chat.prompt("hi").endswith("<|im_start|>assistant\n")
    assert chat.answer("x") == "x<|im_end|>"
    plain = PromptFormatter(tok, "plain")
    assert plain.prompt("hi") == "hi\nAnswer:" and plain.answer("x").startswith(" x")


def test_unknown_model_names_the_options():
    with pytest.raises(ValueError, match="unknown model 'nope'.*smollm2-135m-instruct"):
        resolve_model_dir("nope")


# Gemma's conversion (about 70 s) is marked slow for CI's time; `cdcda models prepare`
# and the README's first command convert it too
@pytest.mark.parametrize("name, arch", [
    ("smollm2-135m-instruct", "LlamaForCausalLM"),
    pytest.param("gemma3-270m", "Gemma3ForCausalLM", marks=pytest.mark.slow)])
def test_bundled_gguf_converts_once_then_reloads_fast(tmp_path, monkeypatch, name, arch):
    monkeypatch.setenv("CDCDA_CACHE", str(tmp_path))
    first = load_model(name)
    assert type(first.model).__name__ == arch
    assert (tmp_path / "models" / name / "model.safetensors").exists()
    ids = first.tokenizer("The capital of France is", return_tensors="pt")
    start = time.perf_counter()
    second = load_model(name)
    reload_seconds = time.perf_counter() - start
    assert reload_seconds < first.load_seconds  # the cache, not the GGUF, was read
    a = first.model(**ids).logits
    b = second.model(**ids).logits
    assert (a == b).all()
    # a real pretrained model: the next token after this prompt is sensible
    top = first.tokenizer.decode(a[0, -1].argmax())
    assert top.strip().lower() in {"paris", "the", "a"}
