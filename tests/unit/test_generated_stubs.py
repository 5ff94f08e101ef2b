"""The committed stubs under idservice/v1 are exactly what scripts/generate_protos.py makes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> object:
    spec = importlib.util.spec_from_file_location(
        "generate_protos", ROOT / "scripts" / "generate_protos.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["generate_protos"] = module
    spec.loader.exec_module(module)
    return module


def test_generated_stubs_are_fresh(tmp_path: Path) -> None:
    generator = _generator()
    generator.generate(tmp_path)  # type: ignore[attr-defined]
    fresh = {
        p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "idservice" / "v1").iterdir()
    }
    committed = {
        p.relative_to(ROOT): p.read_bytes()
        for p in (ROOT / "idservice" / "v1").iterdir()
        if p.is_file() and p.suffix in {".py", ".pyi"}
    }
    stale = sorted(
        str(name)
        for name in fresh.keys() | committed.keys()
        if fresh.get(name) != committed.get(name)
    )
    assert not stale, f"stale stubs, run scripts/generate_protos.py: {stale}"
