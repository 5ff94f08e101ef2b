"""A local OpenID Connect issuer for trying Google or Kakao login by hand (not for production).

    .venv/bin/python scripts/oidc_issuer.py            # serves on 127.0.0.1:8765

It prints the IDSERVICE_* variables to start `idservice serve` with, then a fresh ID token for a
new person each time you press Enter (Ctrl-C stops it). Tokens live an hour and carry the nonce
shown, which SnsLogin must be given too.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.oidc import OidcIssuer

CLIENT_ID = "local-google-client"
NONCE = "local-nonce"
TOKEN_LIFETIME_SECONDS = 3600


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    with OidcIssuer(port=args.port) as issuer:
        print("Start the service with:")
        print(f"  IDSERVICE_GOOGLE_CLIENT_IDS={CLIENT_ID} \\")
        print(f"  IDSERVICE_GOOGLE_DISCOVERY_URL={issuer.discovery_url} scripts/serve")
        print(f"SnsLogin takes provider SNS_PROVIDER_GOOGLE, the token below and nonce {NONCE}.")
        try:
            while True:
                person = uuid.uuid4().hex[:8]
                token = issuer.id_token(
                    sub=f"local-{person}",
                    aud=CLIENT_ID,
                    nonce=NONCE,
                    lifetime=TOKEN_LIFETIME_SECONDS,
                    extra={
                        "email": f"local-{person}@example.com",
                        "email_verified": True,
                        "name": "김로컬",
                        "picture": "https://example.com/picture.png",
                    },
                )
                print(f"\nID token (email local-{person}@example.com):\n{token}")
                input("\nPress Enter for a token of another new person, Ctrl-C to stop. ")
        except (KeyboardInterrupt, EOFError):
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
