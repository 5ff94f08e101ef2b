"""Which use case answers which command: the one table bootstrap binds to the ports."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from idservice.service_layer import (
    age_check,
    audit,
    connection_log,
    dispatch,
    guardian_consent,
    login,
    privacy,
    profile,
    retention,
    sessions,
    signup,
    sns_login,
    verification,
    wards,
)
from idservice.service_layer.use_cases import Command, UseCase

USE_CASES: Mapping[type[Command[Any]], UseCase] = {
    verification.CompleteVerification: verification.complete_verification,
    age_check.CheckAge: age_check.check_age,
    signup.SignUp: signup.sign_up,
    profile.GetAccount: profile.get_account,
    profile.UpdateProfile: profile.update_profile,
    profile.ChangePassword: profile.change_password,
    privacy.UpdateConsents: privacy.update_consents,
    privacy.ExportPersonalData: privacy.export_personal_data,
    privacy.Withdraw: privacy.withdraw_account,
    login.PasswordLogin: login.password_login,
    sns_login.SnsLogin: sns_login.sns_login,
    sns_login.LinkSnsIdentity: sns_login.link_sns_identity,
    sns_login.UnlinkSnsIdentity: sns_login.unlink_sns_identity,
    sessions.RefreshSession: sessions.refresh_session,
    sessions.Logout: sessions.logout,
    sessions.IntrospectToken: sessions.introspect,
    sessions.GetJwks: sessions.get_jwks,
    guardian_consent.GetConsentRequest: guardian_consent.get_consent_request,
    guardian_consent.ApproveConsentRequest: guardian_consent.approve_consent_request,
    guardian_consent.RejectConsentRequest: guardian_consent.reject_consent_request,
    guardian_consent.ResendConsentNotification: guardian_consent.resend_consent_notification,
    wards.ListWards: wards.list_wards,
    wards.GetWard: wards.get_ward,
    wards.UpdateWard: wards.update_ward,
    wards.ExportWardData: wards.export_ward_data,
    wards.WithdrawWard: wards.withdraw_ward,
    retention.Purge: retention.purge,
    audit.VerifyAccessAudit: audit.verify_access_audit,
    connection_log.RecordConnections: connection_log.record_connections,
    dispatch.DispatchDue: dispatch.dispatch_due,
    dispatch.DispatchAllDue: dispatch.dispatch_all_due,
    dispatch.ListOutbox: dispatch.list_outbox,
    dispatch.ReplayDeadEvents: dispatch.replay_dead_events,
}
