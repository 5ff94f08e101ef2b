"""Generate the Python stubs under idservice/v1 from proto/ (reproducibly)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / "idservice" / "v1").glob("*.proto"))


def generate(out_dir: Path) -> None:
    """Run protoc (grpcio-tools) into out_dir, which mirrors the package layout."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    # mypy-protobuf's plugin types the gRPC stubs (*_pb2_grpc.pyi); it sits beside the interpreter.
    mypy_grpc = Path(sys.executable).parent / "protoc-gen-mypy_grpc"
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--plugin=protoc-gen-mypy_grpc={mypy_grpc}",
        f"--mypy_grpc_out={out_dir}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    init = out_dir / "idservice" / "v1" / "__init__.py"
    init.write_text(
        '"""Generated gRPC stubs for idservice.v1 (do not edit; scripts/generate_protos.py)."""\n'
    )


def main() -> int:
    generate(ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
