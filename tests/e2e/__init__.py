"""End-to-end tests: real gRPC servers on real databases."""
