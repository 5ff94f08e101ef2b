"""Generated gRPC stubs for idservice.v1 (do not edit; scripts/generate_protos.py)."""
