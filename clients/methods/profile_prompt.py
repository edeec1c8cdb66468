"""profile_prompt on the device: the base model answers with the user's k most similar
profile items (BM25) in the prompt."""

from clients.methods.base import evaluate_base
from clients.retrieval import profile_prompt
from clients.settings import DeviceSettings
from tasks import Task, UserData


def with_profile(task: Task, user: UserData, settings: DeviceSettings, prompt: str) -> str:
    return profile_prompt(task, prompt, user.profile, settings.eval.profile_k)


HANDLERS = {"evaluate": evaluate_base(with_profile)}
