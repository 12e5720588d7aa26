"""The architecture as tests: no import cycle among `operations/` modules, and a worker starts
without the web's modules. Which layer may import which is import-linter's job (`make lint`,
the contracts in pyproject.toml)."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operations"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The `operations` modules a module imports, at its top or inside a function (a cycle
    through a function's import is a cycle all the same, only later). `from package import
    submodule` depends on the submodule: the package's `__init__` is already being imported."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & modules
            found |= submodules or {node.module}
    return {name for name in found if name in modules}


def graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py") if "migrations" not in path.parts}
    return {name: imports_of(path, set(paths)) - {name} for name, path in paths.items()}


def test_no_import_cycle_among_the_operations_modules():
    edges = graph()
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(edges[node]):
            if state.get(dep) == "open":
                cycle = path[path.index(dep) :] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, [*path, dep])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


WORKER_START = """
import sys
import django
django.setup()
from background_task.tasks import autodiscover
from operations.management.commands.process_tasks import Command
command = Command()
command.check(**command.get_check_kwargs({}))  # what `manage.py process_tasks` runs before handle()
autodiscover()
web = ["long_task.urls", "operations.api.views", "operations.api.seed", "rest_framework.views",
       "drf_spectacular.plumbing", "django.test"]
print(" ".join(name for name in web if name in sys.modules))
"""


def test_a_worker_starts_without_the_web_s_modules():
    """The system checks a worker runs import neither the URLs nor the API (26 MiB a worker)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "long_task.settings", "DJANGO_DEBUG": "1"}
    started = subprocess.run(
        [sys.executable, "-c", WORKER_START], cwd=PACKAGE.parent, env=env, capture_output=True, text=True, timeout=120
    )
    assert started.returncode == 0, started.stderr[-2000:]
    assert started.stdout.strip() == ""
