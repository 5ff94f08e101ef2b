"""Which use case answers which command: the one table bootstrap binds to the ports."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from idservice.service_layer import (
    age_check,
    dispatch,
    login,
    profile,
    retention,
    sessions,
    signup,
    verification,
)
from idservice.service_layer.use_cases import Command, UseCase

USE_CASES: Mapping[type[Command[Any]], UseCase] = {
    verification.CompleteVerification: verification.complete_verification,
    age_check.CheckAge: age_check.check_age,
    signup.SignUp: signup.sign_up,
    profile.GetAccount: profile.get_account,
    profile.UpdateProfile: profile.update_profile,
    profile.ChangePassword: profile.change_password,
    login.PasswordLogin: login.password_login,
    sessions.RefreshSession: sessions.refresh_session,
    sessions.Logout: sessions.logout,
    sessions.IntrospectToken: sessions.introspect,
    sessions.GetJwks: sessions.get_jwks,
    retention.Purge: retention.purge,
    dispatch.DispatchDue: dispatch.dispatch_due,
    dispatch.DispatchAllDue: dispatch.dispatch_all_due,
}
