"""The house: no import circles (function-level imports included), imports point down the
floors, modules stay short, and every method is its two files plus a registry line."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tasks", "models", "clients", "server", "strategies", "simulation")
# what each package may import of ours (DESIGN.md: simulation -> strategies, server,
# clients -> tasks, models; clients and server never import each other)
ALLOWED = {
    "tasks": {"tasks"},
    "models": {"models", "tasks"},
    "clients": {"clients", "tasks", "models"},
    "server": {"server", "tasks", "models"},
    "strategies": {"strategies", "tasks", "models"},
    "simulation": set(PACKAGES),
}
MAX_LINES = 300


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            name = ".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            mods[name] = f
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> our modules it imports, at module level or inside functions alike."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for n in names:
                while n and n not in mods:
                    n = n.rpartition(".")[0]
                # a package's own __init__ and its modules are one room, not a circle
                if n and n != m and not (m.startswith(n + ".") or n.startswith(m + ".")):
                    graph[m].add(n)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected sets of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_hidden_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycle_even_through_imports_inside_functions():
    assert _cycles(_imports(_modules())) == []


def test_imports_point_down_the_floors():
    wrong = [f"{m} imports {d}" for m, deps in _imports(_modules()).items()
             for d in deps if d.split(".")[0] not in ALLOWED[m.split(".")[0]]]
    assert wrong == []


def test_no_module_is_over_300_lines():
    long = {m: n for m, f in _modules().items()
            if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_every_method_is_a_server_file_and_a_device_file_that_agree():
    from clients import methods as device
    from strategies.methods import REGISTRY

    assert set(REGISTRY) == set(device.names())
    for name, method in REGISTRY.items():
        assert method.name == name
        handled = set(device.handlers(name))
        assert set(method.kinds) == handled, name  # it sends exactly what its device handles
        assert method.arrays_up <= handled and set(method.round_kinds) <= handled, name
        assert (method.rounds is None) == (not method.round_kinds), name
        assert (ROOT / "strategies" / "methods" / f"{name}.py").is_file()
        assert (ROOT / "clients" / "methods" / f"{name}.py").is_file()


def test_core_modules_never_name_a_method():
    """The strategy, exchange, accounting, summary, config and the ClientApp read each
    method's declaration instead of special-casing it."""
    from strategies.methods import METHODS

    core = ["strategies/strategy.py", "strategies/exchange.py", "strategies/accounting.py",
            "simulation/results/summary.py", "simulation/config.py",
            "simulation/running/runner.py", "simulation/running/experiment.py",
            "clients/client_app.py", "clients/device.py", "clients/storage.py"]
    named = []
    for path in core:
        tree = ast.parse((ROOT / path).read_text())
        project = {id(n.value) for n in ast.walk(tree)  # wandb's project is called cdcda
                   if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") ==
                   "wandb_project"}
        named += [f"{path}: '{n.value}'" for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and n.value in METHODS
                  and id(n) not in project]
    assert named == []


def test_an_unknown_method_is_refused_on_both_sides():
    from clients import methods as device
    from strategies.methods import get_method

    with pytest.raises(ValueError, match="unknown method 'nope'"):
        get_method("nope")
    with pytest.raises(ValueError, match="no device side for method 'nope'"):
        device.handlers("nope")
