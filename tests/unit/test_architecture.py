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
    for path in (PACKAGE / "domain").glob("*.py"):
        outside = _imports(path) - allowed
        assert not outside, f"{path.name} imports {sorted(outside)}"


def test_only_entrypoints_touch_grpc() -> None:
    for layer in ("domain", "service_layer", "adapters"):
        for path in (PACKAGE / layer).rglob("*.py"):
            assert "grpc" not in _imports(path), f"{path} imports grpc"


def test_service_layer_does_not_touch_sqlalchemy_or_http() -> None:
    for path in (PACKAGE / "service_layer").glob("*.py"):
        imported = _imports(path)
        assert not imported & {"sqlalchemy", "httpx", "grpc", "cryptography"}, path.name


def test_service_layer_reaches_adapters_only_for_typing() -> None:
    for path in (PACKAGE / "service_layer").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("idservice.adapters"), (
                    f"{path.name} imports {node.module} at run time"
                )
