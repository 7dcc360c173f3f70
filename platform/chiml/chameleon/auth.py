"""OpenStack credentials for python-chi and the Terraform provider, both of which read OS_*.

Checked before anything talks to Chameleon so that a missing or wrong openrc is one clear line
instead of a keystoneauth traceback half-way through `up`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from chiml.errors import InvalidInputError

AUTH_URLS = {
    "CHI@UC": "https://chi.uc.chameleoncloud.org:5000/v3",
    "CHI@TACC": "https://chi.tacc.chameleoncloud.org:5000/v3",
    "KVM@TACC": "https://kvm.tacc.chameleoncloud.org:5000/v3",
}
_HINT = (
    "create an application credential for this site in the Chameleon GUI (Identity > Application "
    "Credentials, tick 'Unrestricted'), download its openrc and `source` it"
)


@dataclass(frozen=True)
class Credentials:
    """What the environment authenticates as (secrets are never kept here)."""

    auth_url: str
    region: str
    auth_type: str
    identity: str  # credential id or user name, for messages


def check_credentials(site: str, environ: Mapping[str, str] | None = None) -> Credentials:
    """Validate the OS_* variables for ``site``; raise ChimlError naming what is missing."""
    env = os.environ if environ is None else environ
    auth_url = env.get("OS_AUTH_URL")
    if not auth_url:
        raise InvalidInputError("no OpenStack credentials: OS_AUTH_URL is not set", hint=_HINT)
    auth_type = env.get("OS_AUTH_TYPE", "password")
    if auth_type == "v3applicationcredential":
        needed = ["OS_APPLICATION_CREDENTIAL_ID", "OS_APPLICATION_CREDENTIAL_SECRET"]
        identity = env.get("OS_APPLICATION_CREDENTIAL_ID", "")
    elif auth_type in ("password", "v3password"):
        needed = ["OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_ID"]
        identity = env.get("OS_USERNAME", "")
    elif auth_type in ("token", "v3token", "v3oidcaccesstoken"):
        needed = ["OS_ACCESS_TOKEN"] if auth_type == "v3oidcaccesstoken" else ["OS_TOKEN"]
        identity = "token"
    else:
        raise InvalidInputError(f"unsupported OS_AUTH_TYPE {auth_type!r}", hint=_HINT)
    missing = [name for name in needed if not env.get(name)]
    if missing:
        raise InvalidInputError(
            f"incomplete OpenStack credentials ({auth_type}): {', '.join(missing)} not set", hint=_HINT,
        )
    expected = AUTH_URLS[site]
    if auth_url.rstrip("/") != expected:
        # Credentials are per site: a CHI@TACC credential cannot lease at CHI@UC. Chameleon's
        # Jupyter environment also pre-sets OS_* for its own site, which then silently wins.
        raise InvalidInputError(
            f"OS_AUTH_URL is {auth_url} but chameleon.site is {site} ({expected})",
            hint="source the openrc of that site's application credential, or change chameleon.site",
        )
    region = env.get("OS_REGION_NAME", site)
    if region != site:
        raise InvalidInputError(f"OS_REGION_NAME is {region!r} but chameleon.site is {site!r}", hint=_HINT)
    return Credentials(auth_url=auth_url, region=region, auth_type=auth_type, identity=identity)


def explain_auth_failure(message: str) -> str | None:
    """A hint for Blazar/Keystone errors that really mean 'wrong kind of credential'."""
    text = message.lower()
    if "internal server error" in text or "500" in text.split():
        # Blazar hides Keystone's refusal to create a trust for a restricted credential behind a
        # bare 500, so the credential is the first suspect, ahead of capacity or a Blazar fault.
        return (
            "Blazar answered a bare 500, which it does when Keystone refuses it a trust: the application "
            "credential must have 'Unrestricted' ticked (Identity > Application Credentials; create a new one, "
            "the box cannot be changed later). If it is unrestricted, retry later or report it to Chameleon"
        )
    if "trust" in text or "restricted" in text or "application credential" in text:
        return (
            "the application credential looks restricted: Blazar needs to create a trust, which restricted "
            "credentials cannot; create a new one with 'Unrestricted' ticked"
        )
    if "401" in text or "unauthorized" in text or ("could not find" in text and "credential" in text):
        return "the credential was rejected: it may have expired or been deleted; create a new one"
    if "403" in text or "forbidden" in text:
        return "the credential lacks a role: Chameleon credentials need 'member' (and sometimes 'reader')"
    return None
