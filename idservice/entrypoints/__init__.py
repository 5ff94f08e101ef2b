"""Ways into the service: gRPC and the command line."""
