"""Consents on the fakes: UpdateConsents at once, and the two-year marketing reconfirmation."""

from __future__ import annotations

from datetime import timedelta

from idservice.service_layer.privacy import UpdateConsents
from idservice.service_layer.retention import Purge
from idservice.service_layer.sessions import IntrospectToken
from tests.fakes.providers import verified_person
from tests.service_layer.harness import Harness


def test_an_opt_in_is_reconfirmed_once_when_it_turns_two(svc: Harness) -> None:
    result = svc.sign_up_person(verified_person())
    assert result.session is not None
    token = result.session.access_token
    svc.handle(UpdateConsents(access_token=token, marketing_opt_in=True))
    assert svc.handle(IntrospectToken(access_token=token)).marketing_opt_in
    svc.clock.advance(timedelta(days=365))
    assert svc.handle(Purge())["marketing reconfirmations due"] == 0
    svc.clock.advance(timedelta(days=366))  # two years and a day after the opt-in
    assert svc.handle(Purge())["marketing reconfirmations due"] == 1
    [due] = svc.uow.events("marketing_consent.reconfirmation_due")
    assert due["data"]["account_id"] == result.account.id
    # Once: the next runs do not ask again.
    assert svc.handle(Purge())["marketing reconfirmations due"] == 0


def test_a_withdrawn_opt_in_is_not_reconfirmed(svc: Harness) -> None:
    result = svc.sign_up_person(verified_person())
    assert result.session is not None
    token = result.session.access_token
    svc.handle(UpdateConsents(access_token=token, marketing_opt_in=True))
    svc.clock.advance(timedelta(minutes=1))  # events of one instant have no order among calls
    svc.handle(UpdateConsents(access_token=token, marketing_opt_in=False))
    svc.clock.advance(timedelta(days=800))
    assert svc.handle(Purge())["marketing reconfirmations due"] == 0
    updated = svc.uow.events("consents.updated")
    assert [e["data"]["marketing_opt_in"] for e in updated] == [True, False]
