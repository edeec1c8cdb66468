"""Each method's device side, found by name: `clients/methods/<name>.py` with `HANDLERS`
(message kind -> handler). A new module here is a new method's device side; its server side
is `strategies/methods/<name>.py`, registered there."""

from __future__ import annotations

import functools
import importlib
import pkgutil

from clients.methods.base import Handler

NOT_METHODS = ("base",)  # modules here that are shared pieces, not a method


@functools.cache
def names() -> tuple[str, ...]:
    """The methods with a device side, sorted."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)
                        if m.name not in NOT_METHODS))


@functools.cache
def handlers(method: str) -> dict[str, Handler]:
    """The message kinds `method`'s device handles, and how."""
    if method not in names():
        raise ValueError(f"no device side for method '{method}' (clients/methods/{method}.py); "
                         f"known: {', '.join(names())}")
    return importlib.import_module(f"{__name__}.{method}").HANDLERS


def message_kinds() -> list[str]:
    """Every message kind some method's device handles (the ClientApp registers each)."""
    return sorted({kind for name in names() for kind in handlers(name)})
