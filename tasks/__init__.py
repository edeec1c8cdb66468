"""What a personalization task is: LaMP data, prompts, parsing, metrics, bundled benchmark."""

from tasks.catalog import TASKS, Example, Task, get_task
from tasks.lamp import LampData, LampFormatError, UserData, load_lamp, load_lamp_dir, read_golds

__all__ = [
    "TASKS", "Example", "LampData", "LampFormatError", "Task", "UserData",
    "get_task", "load_lamp", "load_lamp_dir", "read_golds",
]  # fmt: skip
