"""Dependencies point inward: the domain uses the standard library only; only the edges use gRPC."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "idservice"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_domain_imports_only_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | {"idservice", "__future__"}
    for path in (PACKAGE / "domain").rglob("*.py"):
        outside = _imports(path) - allowed
        assert not outside, f"{path.name} imports {sorted(outside)}"


def test_only_entrypoints_touch_grpc() -> None:
    for layer in ("domain", "service_layer", "adapters"):
        for path in (PACKAGE / layer).rglob("*.py"):
            assert "grpc" not in _imports(path), f"{path} imports grpc"


def test_service_layer_does_not_touch_sqlalchemy_or_http() -> None:
    for path in (PACKAGE / "service_layer").rglob("*.py"):
        imported = _imports(path)
        assert not imported & {"sqlalchemy", "httpx", "grpc", "cryptography"}, path.name


def test_service_layer_never_imports_adapters_config_or_bootstrap() -> None:
    """Not even under TYPE_CHECKING: use cases are typed against the ports only (import-linter
    checks the same rule as a contract; this keeps it visible in the test run)."""
    forbidden = ("idservice.adapters", "idservice.config", "idservice.bootstrap")
    for path in (PACKAGE / "service_layer").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(forbidden), f"{path.name} imports {node.module}"


def test_entrypoints_reach_adapters_only_through_bootstrap() -> None:
    for path in (PACKAGE / "entrypoints").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("idservice.adapters"), (
                    f"{path.name} imports {node.module}"
                )


def test_no_hand_written_module_is_much_over_400_lines() -> None:
    for path in PACKAGE.rglob("*.py"):
        if "v1" in path.parts or "versions" in path.parts:
            continue  # generated stubs and migrations
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= 450, f"{path.relative_to(PACKAGE)} has {lines} lines"
