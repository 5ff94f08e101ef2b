"""Masks personal data (email addresses, names) for error details and duplicate-account answers."""

from __future__ import annotations

import unicodedata

# contract.md "Masked email": the first two characters of the local part, then `***`.
EMAIL_VISIBLE_LOCAL_CHARS = 2
EMAIL_MASK = "***"
NAME_MASK_CHAR = "*"


def mask_email(email: str) -> str:
    """`ho***@example.com` for `hong@example.com`; a one-character local part keeps its one.

    Contract §2 "Masked email". The domain is kept whole. A value without `@` (never a
    validated address) is masked entirely rather than raising, because masking runs while
    building error answers, where a crash would hide the real error.
    """
    local, at, domain = email.rpartition("@")
    if not at:
        return EMAIL_MASK
    return f"{local[:EMAIL_VISIBLE_LOCAL_CHARS]}{EMAIL_MASK}@{domain}"


def mask_name(name: str) -> str:
    """Korean-style name mask: first and last character kept, each one between replaced by `*`.

    `김민수` → `김*수`, `남궁민수` → `남**수`, `이준` → `이*` (two characters keep only the
    first, or nothing would be hidden), `김` → `*`, `John Smith` → `J********h`.
    """
    # NFC so that a name sent as decomposed jamo counts one character per syllable.
    chars = unicodedata.normalize("NFC", name.strip())
    if len(chars) <= 1:
        return NAME_MASK_CHAR * len(chars)
    if len(chars) == 2:
        return chars[0] + NAME_MASK_CHAR
    return chars[0] + NAME_MASK_CHAR * (len(chars) - 2) + chars[-1]
