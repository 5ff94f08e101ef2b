"""The one registry of encrypted personal columns: which table, column and context each uses.

Every ciphertext is bound by its encryption context to its table, column and row, so it cannot
be moved elsewhere unnoticed. The repositories encrypt and decrypt through these entries, and
`idservice reencrypt` walks them, so a new encrypted column is added here once (a test checks
that every `*_ct` column of the schema is registered).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Table

from idservice.adapters.crypto import FieldCipher
from idservice.adapters.db import tables as t


@dataclass(frozen=True)
class EncryptedColumn:
    """A ciphertext column, the column that keys its rows, and its context label."""

    table: Table
    key: str
    column: str
    label: str

    def context(self, row_key: str) -> str:
        return f"{self.label}:{row_key}"

    def encrypt(self, cipher: FieldCipher, row_key: str, plaintext: str) -> str:
        return cipher.encrypt(plaintext, context=self.context(row_key))

    def decrypt(self, cipher: FieldCipher, row_key: str, token: str) -> str:
        return cipher.decrypt(token, context=self.context(row_key))


ACCOUNT_EMAIL = EncryptedColumn(t.accounts, "id", "email_ct", "accounts.email")
ACCOUNT_NAME = EncryptedColumn(t.accounts, "id", "name_ct", "accounts.name")
ACCOUNT_PHONE = EncryptedColumn(t.accounts, "id", "phone_ct", "accounts.phone")
ACCOUNT_BIRTH_DATE = EncryptedColumn(t.accounts, "id", "birth_date_ct", "accounts.birth_date")
ACCOUNT_CI = EncryptedColumn(t.accounts, "id", "ci_ct", "accounts.ci")
ACCOUNT_DI = EncryptedColumn(t.accounts, "id", "di_ct", "accounts.di")
VERIFICATION_PERSON = EncryptedColumn(t.verifications, "id", "person_ct", "verifications.person")
GUARDIAN_NAME = EncryptedColumn(
    t.guardian_consent_requests, "id", "guardian_name_ct", "consent.name"
)
GUARDIAN_PHONE = EncryptedColumn(
    t.guardian_consent_requests, "id", "guardian_phone_ct", "consent.phone"
)
SNS_SUBJECT = EncryptedColumn(t.sns_identities, "id", "subject_ct", "sns.subject")
SNS_NICKNAME = EncryptedColumn(t.sns_identities, "id", "nickname_ct", "sns.nickname")
SNS_PICTURE = EncryptedColumn(t.sns_identities, "id", "picture_ct", "sns.picture")
SIGNUP_TICKET_PROFILE = EncryptedColumn(
    t.sns_signup_tickets, "ticket_hash", "profile_ct", "sns-ticket.profile"
)
CONNECTION_CLIENT_IP = EncryptedColumn(t.connection_log, "id", "client_ip_ct", "connection.ip")
AUDIT_CLIENT_IP = EncryptedColumn(t.access_audit, "seq", "client_ip_ct", "audit.ip")
IDEMPOTENT_RESPONSE = EncryptedColumn(t.idempotency_keys, "key_hash", "response_ct", "idempotency")
OUTBOX_PAYLOAD = EncryptedColumn(t.outbox, "id", "payload_ct", "outbox")

ENCRYPTED_COLUMNS: tuple[EncryptedColumn, ...] = (
    ACCOUNT_EMAIL,
    ACCOUNT_NAME,
    ACCOUNT_PHONE,
    ACCOUNT_BIRTH_DATE,
    ACCOUNT_CI,
    ACCOUNT_DI,
    VERIFICATION_PERSON,
    GUARDIAN_NAME,
    GUARDIAN_PHONE,
    SNS_SUBJECT,
    SNS_NICKNAME,
    SNS_PICTURE,
    SIGNUP_TICKET_PROFILE,
    CONNECTION_CLIENT_IP,
    AUDIT_CLIENT_IP,
    IDEMPOTENT_RESPONSE,
    OUTBOX_PAYLOAD,
)
