"""The embedded cloud model: loaded once per process, in the dtype the machine computes
fastest, with its LM head applied to flat rows."""

from __future__ import annotations

import torch

from server.settings import CloudSettings

# Per-process cache (the one allowed global state): the last embedded cloud model loaded, so
# a sweep's points, run one after another in one process, load it once.
_LOADED: dict[tuple[str, str, str], object] = {}


def resolve_dtype(settings: CloudSettings) -> str:
    """cloud.dtype, with 'auto' made concrete: bfloat16 where it is computed natively."""
    if settings.dtype != "auto":
        return settings.dtype
    from models.loading import native_bf16, pick_device

    return "bfloat16" if native_bf16(pick_device(settings.accelerator)) else "float32"


class FlatHead(torch.nn.Module):
    """The LM head over [rows, hidden]. On a 3-D slice in bfloat16 on the CPU, at::matmul
    went through bmm and copied the 262,144 x 640 head once per row: 4.9 s of a 5.5 s
    prefill of 8 prompts (flat, 0.36 s). The head module itself (its tied weight) is kept."""

    def __init__(self, head: torch.nn.Module):
        super().__init__()
        self.head = head

    @property
    def weight(self) -> torch.Tensor:
        return self.head.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.reshape(-1, x.shape[-1])).view(*x.shape[:-1], -1)


def load_once(settings: CloudSettings):
    """The cloud model, loaded once per process (one resident at a time)."""
    from models import load_model

    key = (settings.model, resolve_dtype(settings), settings.accelerator)
    if key not in _LOADED:
        _LOADED.clear()  # one cloud model resident at a time
        loaded = load_model(*key)
        if key[1] == "bfloat16" and isinstance(loaded.model.get_output_embeddings(),
                                               torch.nn.Linear):
            loaded.model.set_output_embeddings(FlatHead(loaded.model.get_output_embeddings()))
        _LOADED[key] = loaded
    return _LOADED[key]
