"""Sign-in with SNS providers: one OpenID Connect base (`oidc.py`), one file per provider."""
