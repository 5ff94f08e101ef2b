"""`login_email_key`: the key a login looks up is the key sign-up stored, without email-validator
for plain ASCII addresses."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from idservice.domain.errors import DomainError
from idservice.service_layer.validation import (
    email_lookup_key,
    login_email_key,
    normalize_email,
)

ATOM_CHARS = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
atoms = st.text(alphabet=ATOM_CHARS, min_size=1, max_size=12)
labels = st.from_regex(r"[A-Za-z0-9]{1,8}(-[A-Za-z0-9]{1,8}){0,2}", fullmatch=True)
top_labels = st.from_regex(r"[A-Za-z]{2,8}", fullmatch=True)


@st.composite
def plain_addresses(draw: st.DrawFn) -> str:
    local = ".".join(draw(st.lists(atoms, min_size=1, max_size=4)))
    domain = ".".join([*draw(st.lists(labels, min_size=1, max_size=3)), draw(top_labels)])
    padding = draw(st.sampled_from(["", " ", "\t", "  "]))
    return f"{padding}{local}@{domain}{padding}"


def stored_key(address: str) -> str | None:
    """What sign-up stores for the address; None when sign-up refuses it."""
    try:
        return email_lookup_key(normalize_email(address))
    except DomainError:
        return None


@given(plain_addresses())
@example("Kim.Minsu@Example.CO.kr")
@example("o'brien+news@mail.example.com")
def test_a_plain_address_has_the_key_sign_up_stores(address: str) -> None:
    stored = stored_key(address)
    if stored is not None:
        assert login_email_key(address) == stored


@given(st.text(max_size=80) | plain_addresses())
@example("x@xn--bcher-kva.de")
@example("ｈｏｎｇ＠Example.com")
@example("Hong@Bücher.DE")
@example("straße@example.com")
@example('"quoted"@example.com')
@example("a@[127.0.0.1]")
@example("a" * 65 + "@example.com")
@example("가" * 65 + "@example.com")
@example("a@" + "b" * 64 + ".com")
def test_any_input_has_the_key_sign_up_stores_or_none_it_could_store(text: str) -> None:
    """Where sign-up accepts the address, the login key is its key. Where it refuses it, the
    login either refuses it too or looks up a key that a refused address would have: the lower
    case of a plain ASCII address, or the key of an address whose local part is past the 64
    characters sign-up now allows (stored before that limit)."""
    stored = stored_key(text)
    try:
        key = login_email_key(text)
    except DomainError:
        assert stored is None
        return
    if stored is not None:
        assert key == stored
    else:
        assert key == slow_key(text) or (key.isascii() and key == key.lower())


def slow_key(address: str) -> str | None:
    """What the login would look up through email-validator (without the 64-character limit of
    a local part, which holds new addresses only); None when it refuses."""
    try:
        return email_lookup_key(normalize_email(address, strict=False))
    except DomainError:
        return None


@st.composite
def lengthened_by_case_folding(draw: st.DrawFn) -> str:
    """Addresses near the length limits with `ß`, which case folding turns into `ss`: their
    stored key is longer than the address, and may be past a limit the address is within."""
    local = "a" * draw(st.integers(0, 40)) + "ß" * draw(st.integers(0, 40))
    label = "b" * draw(st.integers(0, 40)) + "ß" * draw(st.integers(0, 40))
    return f"{local or 'a'}@{label or 'b'}.de"


@given(lengthened_by_case_folding())
@example("x@" + "ß" * 32 + ".de")
@example("ß" * 33 + "@example.com")
def test_a_key_that_case_folding_lengthened_is_found_only_as_email_validator_would(
    address: str,
) -> None:
    """Typing an account's stored key (plain ASCII) finds it exactly when the full check would:
    the fast path's length limits keep out a key that is longer than sign-up allows."""
    key = stored_key(address)
    if key is None or not key.isascii():
        return
    try:
        fast: str | None = login_email_key(key)
    except DomainError:
        fast = None
    assert fast == slow_key(key)


def test_a_label_past_63_characters_is_not_plain() -> None:
    # `x@ßßß…ß.de` (32 of them) is a valid address whose key has a 64-letter label: typed
    # as ASCII, that key is refused, as email-validator refuses it, and finds no account.
    assert stored_key("x@" + "ß" * 32 + ".de") == "x@" + "s" * 64 + ".de"
    with pytest.raises(DomainError):
        login_email_key("x@" + "s" * 64 + ".de")
    within = "x@" + "s" * 63 + ".de"
    assert login_email_key(within) == stored_key(within) == within


@pytest.mark.parametrize(
    "address",
    ["user@example.test", "user@mail.localhost", "user@example.invalid", "user@x.onion"],
)
def test_a_special_use_domain_refused_at_sign_up_only_finds_nothing(address: str) -> None:
    # Sign-up never stores such a key, so the login's lookup finds no account.
    assert stored_key(address) is None
    assert login_email_key(address) == address.lower()


def test_an_address_that_is_not_plain_goes_through_email_validator() -> None:
    assert login_email_key("x@xn--bcher-kva.de") == "x@bücher.de"
    assert login_email_key("ＨＯＮＧ＠example.com") == "hong@example.com"
    with pytest.raises(DomainError):
        login_email_key("no-at-sign")
    with pytest.raises(DomainError):
        login_email_key("a@localhost")
