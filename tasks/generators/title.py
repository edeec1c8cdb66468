"""LaMP-5 users: the latent preference is this user's paper-title style."""

from __future__ import annotations

import random
from collections.abc import Callable

from tasks.generators.user import Generator, preference_user

_PROBLEMS = ("Traffic Forecasting", "Protein Folding", "Speech Recognition", "Fraud Detection",
             "Crop Yield Prediction", "Code Completion", "Image Segmentation", "Drug Discovery",
             "Weather Nowcasting", "Machine Translation")
_SETTINGS = ("on Edge Devices", "with Noisy Labels", "in Low-Resource Settings", "at City Scale",
             "under Distribution Shift", "with Limited Supervision")
_METHODS = (  # (name, as an adjective, acronym letter)
    ("Graph Neural Networks", "Graph-Based", "G"), ("Contrastive Learning", "Contrastive", "C"),
    ("Diffusion Models", "Diffusion-Based", "D"), ("Reinforcement Learning", "Reward-Driven", "R"),
    ("Evolutionary Search", "Evolutionary", "E"), ("Sparse Attention", "Sparse", "S"),
    ("Knowledge Distillation", "Distilled", "K"), ("Meta-Learning", "Meta-Learned", "M"),
)
_REASONS = ("labelled data is scarce", "inputs change quickly over time",
            "models must run within tight memory budgets", "errors are costly in practice")
_GAINS = ("needs no extra labels", "trains in a fraction of the usual time",
          "stays accurate when the data shifts", "is simple to implement")
_TITLE_FORMS: dict[str, Callable[[str, tuple[str, str, str], str], str]] = {
    # form: (topic, method, acronym) -> title
    "approach": lambda t, m, a: f"{t}: A {m[1]} Approach",
    "question": lambda t, m, a: f"Can {m[0]} Improve {t}?",
    "towards": lambda t, m, a: f"Towards {m[1]} {t}",
    "acronym": lambda t, m, a: f"{a}: {m[0]} for {t}",
    "plain": lambda t, m, a: f"{m[0]} for {t}",
}


def _title_style(form: str, long: bool) -> Callable[[str, str, tuple[str, str, str]], str]:
    """A style: one form, with the setting in the topic (long) or not (short)."""
    def style(problem: str, setting: str, method: tuple[str, str, str]) -> str:
        acronym = method[2] + "".join(w[0] for w in problem.split())
        topic = f"{problem} {setting}" if long else problem
        return _TITLE_FORMS[form](topic, method, acronym)

    return style


_TITLE_STYLES = {f"{form}-{'long' if long else 'short'}": _title_style(form, long)
                 for form in _TITLE_FORMS for long in (True, False)}


def draw_preference(rng: random.Random) -> str:
    """The name of a title style (looked up when answering, so tests may swap styles)."""
    return rng.choice(sorted(_TITLE_STYLES))


def draw_input(rng: random.Random) -> tuple[str, str, tuple[str, str, str], str]:
    """(problem, setting, method, abstract)."""
    problem, setting, method = rng.choice(_PROBLEMS), rng.choice(_SETTINGS), rng.choice(_METHODS)
    abstract = (f"{problem.capitalize()} {setting.lower()} remains hard because "
                f"{rng.choice(_REASONS)}. "
                f"We propose an approach based on {method[0].lower()} that "
                f"{rng.choice(_GAINS)}. Experiments on {rng.randint(2, 9)} benchmarks show "
                f"gains of {rng.randint(2, 15)} points over strong baselines.")
    return problem, setting, method, abstract


def answer(style: str, paper: tuple[str, str, tuple[str, str, str], str]) -> str:
    return _TITLE_STYLES[style](paper[0], paper[1], paper[2])


GENERATOR = Generator(
    "LaMP-5", preference_user("LaMP-5", draw_preference, draw_input, answer,
                              lambda paper: paper[3]),
    (), draw_preference, draw_preference, draw_input, answer)
