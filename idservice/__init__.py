"""idservice: identity verification and account registration over gRPC."""

__version__ = "0.1.0"
