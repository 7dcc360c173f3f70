"""Credentials are checked before anything talks to Chameleon."""

from __future__ import annotations

import pytest

from chiml.chameleon.auth import check_credentials, explain_auth_failure
from chiml.errors import ChimlError
from tests.chameleon.conftest import APP_CRED_ENV


def test_application_credential_accepted() -> None:
    creds = check_credentials("CHI@UC", APP_CRED_ENV)
    assert creds.auth_type == "v3applicationcredential"
    assert creds.region == "CHI@UC"


def test_missing_openrc_is_one_clear_error() -> None:
    with pytest.raises(ChimlError, match="OS_AUTH_URL is not set") as info:
        check_credentials("CHI@UC", {})
    assert "openrc" in (info.value.hint or "")


def test_incomplete_application_credential_names_the_missing_variable() -> None:
    env = {k: v for k, v in APP_CRED_ENV.items() if k != "OS_APPLICATION_CREDENTIAL_SECRET"}
    with pytest.raises(ChimlError, match="OS_APPLICATION_CREDENTIAL_SECRET not set"):
        check_credentials("CHI@UC", env)


def test_credential_of_another_site_is_rejected() -> None:
    with pytest.raises(ChimlError, match=r"chameleon.site is CHI@TACC"):
        check_credentials("CHI@TACC", APP_CRED_ENV)


def test_region_mismatch_is_rejected() -> None:
    env = dict(APP_CRED_ENV, OS_REGION_NAME="CHI@TACC")
    with pytest.raises(ChimlError, match="OS_REGION_NAME"):
        check_credentials("CHI@UC", env)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("ERROR: Trust creation failed: Using trust-scoped token to create another token", "Unrestricted"),
        ("The request you have made requires authentication. (HTTP 401)", "expired"),
        ("Policy doesn't allow blazar:leases:post to be performed (HTTP 403)", "role"),
    ],
)
def test_auth_failures_get_a_hint(message: str, expected: str) -> None:
    assert expected in (explain_auth_failure(message) or "")


def test_unrelated_errors_get_no_auth_hint() -> None:
    assert explain_auth_failure("Not enough hosts available") is None
