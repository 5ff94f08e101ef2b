"""gRPC entrypoint: servicers, error mapping, interceptors, server."""
