"""fedavg_ft on the device: FedAvg's rounds as fedavg_lora's, then the final global adapter
is fine-tuned on the user's own real data, kept in `adapters-fedavg_ft/`, and evaluated
here; only metrics go back."""

from clients.methods.base import train_own
from clients.methods.fedavg_lora import train_round

HANDLERS = {"train": train_round,
            "train.finetune": train_own("adapters-fedavg_ft", from_received=True)}
