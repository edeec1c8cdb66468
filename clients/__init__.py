"""The device: ClientApp handlers, local data, LoRA trainer, evaluation, adapter storage."""
