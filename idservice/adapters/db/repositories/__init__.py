"""Repositories over SQLAlchemy Core, one module per aggregate: plaintext records in, ciphertext
and blind indexes stored (see `idservice.adapters.db.encrypted_columns`)."""
