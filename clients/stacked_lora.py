"""K users' LoRA adapters stacked on one frozen base, each batch row using its own user's.

The device runtime is a peft model with one LoRA slot. For a cohort we switch that slot off
(`disable_adapter`) and add, after every adapted layer, a per-row LoRA delta from stacked
weights A (K, r, in) and B (K, out, r): `scale * (x @ A[u].T) @ B[u].T` where u is the
row's user. Rows of different users share every base matmul; only the rank-r products are
per row (`bmm` over gathered adapters). Initialisation comes from peft itself (the slot is
reset with the user's seed and copied in), and a user's adapter goes back through the slot,
so peft's format on disk and its initialisation are kept exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

ADAPTER = "default"


def lora_layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """peft's LoRA layers of `model` in module order."""
    from peft.tuners.lora import LoraLayer

    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, LoraLayer) and ADAPTER in m.lora_A]


class StackedLora(torch.nn.Module):
    """Stacked per-user LoRA weights for the peft model's adapted layers (fp32 masters)."""

    def __init__(self, peft_model: torch.nn.Module, users: int):
        super().__init__()
        self.peft_model = [peft_model]  # a list: not a registered submodule
        self.layers = lora_layers(peft_model)
        if not self.layers:
            raise ValueError("the device model has no LoRA layers (device.lora.target_modules)")
        self.users = users
        self.A = torch.nn.ParameterList()
        self.B = torch.nn.ParameterList()
        self.scale: list[float] = []
        self.dropout: list[float] = []
        for _, m in self.layers:
            a, b = m.lora_A[ADAPTER].weight, m.lora_B[ADAPTER].weight
            master = torch.promote_types(a.dtype, torch.float32)  # fp32, or fp64 if so
            self.A.append(torch.nn.Parameter(a.new_zeros((users, *a.shape), dtype=master)))
            self.B.append(torch.nn.Parameter(b.new_zeros((users, *b.shape), dtype=master)))
            self.scale.append(float(m.scaling[ADAPTER]))
            drop = m.lora_dropout[ADAPTER]
            self.dropout.append(float(getattr(drop, "p", 0.0)))
        self.rows: torch.Tensor | None = None  # (batch,) user index of each batch row

    # --- moving adapters between the stack and peft's slot -------------------------------
    @torch.no_grad()
    def load_slot(self, user: int) -> None:
        """Copy peft's current slot weights into user `user`'s place in the stack."""
        for i, (_, m) in enumerate(self.layers):
            self.A[i][user].copy_(m.lora_A[ADAPTER].weight)
            self.B[i][user].copy_(m.lora_B[ADAPTER].weight)

    @torch.no_grad()
    def to_slot(self, user: int) -> None:
        """Put user `user`'s adapter into peft's slot (to save it, or to use it alone)."""
        for i, (_, m) in enumerate(self.layers):
            m.lora_A[ADAPTER].weight.copy_(self.A[i][user])
            m.lora_B[ADAPTER].weight.copy_(self.B[i][user])

    def user_parameters(self) -> list[torch.nn.Parameter]:
        return [*self.A, *self.B]

    # --- forward ---------------------------------------------------------------------------
    def _hook(self, i: int):
        def add_delta(module, args, output):
            rows = self.rows
            if rows is None:
                return output
            x = args[0]
            if self.dropout[i] and module.training:
                x = F.dropout(x, self.dropout[i], training=True)
            kind = x.device.type
            dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) \
                else x.dtype
            a = self.A[i].index_select(0, rows).to(dtype)  # (batch, r, in)
            b = self.B[i].index_select(0, rows).to(dtype)  # (batch, out, r)
            flat = x.reshape(x.shape[0], -1, x.shape[-1]).to(dtype)
            delta = torch.bmm(torch.bmm(flat, a.transpose(1, 2)), b.transpose(1, 2))
            return output + (delta * self.scale[i]).reshape(*output.shape[:-1], -1).to(
                output.dtype)

        return add_delta

    @contextlib.contextmanager
    def active(self, rows: torch.Tensor | Sequence[int] | None = None) -> Iterator[None]:
        """peft's slot off, the stack on: row b of every batch uses user rows[b]'s adapter."""
        model = self.peft_model[0]
        handles = [m.register_forward_hook(self._hook(i)) for i, (_, m) in enumerate(self.layers)]
        self.set_rows(rows)
        try:
            with model.disable_adapter():
                yield
        finally:
            for h in handles:
                h.remove()
            self.rows = None

    def set_rows(self, rows: torch.Tensor | Sequence[int] | None) -> None:
        if rows is not None and not isinstance(rows, torch.Tensor):
            rows = torch.tensor(list(rows), dtype=torch.long)
        self.rows = None if rows is None else rows.to(self.A[0].device)


@contextlib.contextmanager
def frozen_weights_in(model: torch.nn.Module, dtype: torch.dtype | None) -> Iterator[None]:
    """Hold the frozen base's linear weights in `dtype` (bf16) for a while, originals kept.

    Under autocast a matmul casts its fp32 weight to bf16 on every call (frozen weights
    are not cached); a bf16 copy made once gives the same numbers without the casts.
    Embeddings and norms stay as they are; nothing trainable is touched.
    """
    if dtype is None:
        yield
        return
    saved: list[tuple[torch.nn.Linear, torch.nn.Parameter]] = []
    for module in model.modules():
        if (isinstance(module, torch.nn.Linear) and not module.weight.requires_grad
                and module.weight.dtype != dtype and not _tied(model, module)):
            saved.append((module, module.weight))
            module.weight = torch.nn.Parameter(module.weight.detach().to(dtype),
                                               requires_grad=False)
    try:
        yield
    finally:
        for module, weight in saved:
            module.weight = weight


def _tied(model: torch.nn.Module, module: torch.nn.Module) -> bool:
    """The output head when it shares its weight with the input embeddings."""
    emb = getattr(model, "get_input_embeddings", lambda: None)()
    return emb is not None and module.weight is emb.weight
