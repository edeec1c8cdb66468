"""The device's one peft LoRA slot: a fresh seeded initialisation, a copy out, weights in.

Every user's adapter passes through this slot on its way in (a fresh start or a received
adapter) and out (saved in peft's format, or sent back by FedAvg).
"""

from __future__ import annotations

import torch

# peft is imported where used: importing it costs seconds, and the driver imports the
# device code without always needing it


def reset_adapter(model: torch.nn.Module, seed: int) -> None:
    """Give the LoRA slot a fresh, seeded initialisation (B = 0: starts as the base)."""
    from peft.tuners.lora import LoraLayer

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for module in model.modules():
            if isinstance(module, LoraLayer):
                module.reset_lora_parameters("default", True)


def adapter_state(rt) -> dict[str, torch.Tensor]:
    """A copy of the LoRA weights in the device's adapter slot, by peft's state-dict names
    (a copy: the slot is re-used for the next user)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in
            get_peft_model_state_dict(rt.model).items()}


def load_adapter_state(rt, state: dict[str, torch.Tensor]) -> None:
    """Put received LoRA weights into the device's adapter slot (names must all match)."""
    from peft import set_peft_model_state_dict

    own = adapter_state(rt)
    if set(state) != set(own):
        missing = sorted(set(own) - set(state))[:3]
        extra = sorted(set(state) - set(own))[:3]
        raise ValueError(f"received adapter does not fit this device's LoRA slot "
                         f"(missing {missing}, unexpected {extra}): same device.lora needed")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f"received adapter tensor {k} has shape {tuple(v.shape)}, "
                             f"this device expects {tuple(own[k].shape)}")
    set_peft_model_state_dict(rt.model, state)
