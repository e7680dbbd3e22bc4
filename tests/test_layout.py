"""The layout rules of ARCHITECTURE.md held by tests: within an app no import circle (function-level imports
included); no module imports another module's private name; only an app's `queue.py` queues tasks or writes
django-q schedule rows; the campaigns app writes no Message row and calls X only through `contacts`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("campaigns", "contacts", "webhooks_app", "automation", "chatbot", "mktx")


def _modules(app: str) -> dict[str, Path]:
    found = {}
    for path in (ROOT / app).rglob("*.py"):
        if "migrations" in path.parts:
            continue
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import in the file, at any depth."""
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((alias.name, []) for alias in node.names)
    return out


def _targets(module: str, names: list[str], known: dict[str, Path]) -> set[str]:
    """The modules of the app an import reaches (`from campaigns import queue` reaches campaigns.queue)."""
    reached = {module} if module in known else set()
    reached |= {f"{module}.{name}" for name in names if f"{module}.{name}" in known}
    return reached


@pytest.mark.parametrize("app", ["campaigns", "contacts", "webhooks_app"])
def test_an_app_has_no_import_circle(app):
    known = _modules(app)
    graph = {
        name: {t for module, names in _imports(path) for t in _targets(module, names, known)} - {name}
        for name, path in known.items()
    }
    # packages import their own modules for re-export only; a cycle through __init__ is still a cycle
    seen: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        seen[node] = 1
        for target in sorted(graph[node]):
            if seen.get(target) == 1:
                cycle = [*trail[trail.index(target) :], target]
                pytest.fail(f"import circle in {app}: {' -> '.join(cycle)}")
            if target not in seen:
                visit(target, [*trail, target])
        seen[node] = 2

    for name in sorted(graph):
        if name not in seen:
            visit(name, [name])


def test_no_module_imports_another_modules_private_name():
    offenders = []
    for app in APPS:
        for name, path in _modules(app).items():
            for module, names in _imports(path):
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                if private and module != name:
                    offenders.append(f"{name}: from {module} import {', '.join(private)}")
    assert offenders == []


def test_only_queue_modules_queue_tasks_and_own_schedule_rows():  # migrations (the minute sweeps) excepted
    offenders = []
    for app in ("campaigns", "automation", "chatbot"):  # the apps laid out by job (contacts and webhooks_app: later)
        for name, path in _modules(app).items():
            if name.endswith(".queue"):
                continue
            for module, names in _imports(path):
                if module == "mktx.queue" or module.startswith("django_q"):
                    offenders.append(f"{name}: {module} {names}")
    assert offenders == []


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


WRITES = {"update", "create", "bulk_create", "bulk_update", "delete", "get_or_create", "update_or_create", "save"}


def test_campaigns_write_no_message_and_call_x_only_through_contacts():
    offenders = []
    for name, path in _modules("campaigns").items():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in WRITES
                and _root(node.func) == "Message"
            ):
                offenders.append(f"{name}:{node.lineno}: writes Message rows ({node.func.attr})")
        for module, names in _imports(path):
            if {"XClient", "XAppClient", "account_client"} & set(names):
                offenders.append(f"{name}: calls X itself ({module})")
    assert offenders == []
