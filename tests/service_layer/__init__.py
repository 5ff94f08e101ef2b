"""Service-layer tests: use cases through `UseCases.handle` against in-memory fakes only."""
