"""The tree tells the architecture: the pure core never reaches into the shells."""

from __future__ import annotations

import ast
from pathlib import Path

import workers

PACKAGE = Path(workers.__file__).resolve().parent
SHELLS = ("workers.io", "workers.service", "workers.cli", "workers.replay", "workers.simulation",
          "workers.testing")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _reaches_shell(name: str) -> bool:
    return any(name == shell or name.startswith(shell + ".") for shell in SHELLS)


def test_core_imports_nothing_from_the_shells() -> None:
    offenders = {str(path.relative_to(PACKAGE)): sorted(filter(_reaches_shell, _imports(path)))
                 for path in sorted((PACKAGE / "core").rglob("*.py"))}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_core_has_no_kafka_and_no_clock() -> None:
    """No broker client and no wall clock: the same input gives the same outputs.

    The worker's batch step is held to the same rule (a unit test drives it)."""
    banned = {"kafka", "aiokafka", "faust", "time", "asyncio"}
    for path in [*sorted((PACKAGE / "core").rglob("*.py")), PACKAGE / "service" / "batch.py"]:
        found = [n for n in _imports(path) if n.split(".")[0] in banned]
        assert found == [], f"{path.name} imports {found}"


def test_the_boundary_check_sees_a_violation(tmp_path: Path) -> None:
    """The check above can fail: an import of a shell is found, also inside a function."""
    module = tmp_path / "bad.py"
    module.write_text("def f():\n"
                      "    from workers.io.sinks import FileSink\n"
                      "    import workers.cli\n")
    assert {n for n in _imports(module) if _reaches_shell(n)} == {
        "workers.io.sinks", "workers.io.sinks.FileSink", "workers.cli"}


def test_the_product_never_imports_the_test_helpers() -> None:
    offenders = {str(path.relative_to(PACKAGE)) for path in sorted(PACKAGE.rglob("*.py"))
                 if path.name != "testing.py"
                 and any(n == "workers.testing" or n.startswith("workers.testing.")
                         for n in _imports(path))}
    assert offenders == set()
