"""local_real on the device: each user's own LoRA, trained on its real examples only."""

from clients.methods.base import train_own

HANDLERS = {"train": train_own("adapters-local_real")}
