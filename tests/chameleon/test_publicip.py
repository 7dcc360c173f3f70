"""Default admin CIDR: the public address `up` runs from (the internet faked by httpx's transport)."""

from __future__ import annotations

import httpx
import pytest

from chiml.chameleon.publicip import detect_admin_cidr
from chiml.errors import ChimlError


def test_first_service_answers() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="192.5.87.20\n"))
    assert detect_admin_cidr(transport) == "192.5.87.20/32"


def test_falls_back_to_the_second_service() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.ipify.org":
            raise httpx.ConnectError("down", request=request)
        return httpx.Response(200, text="129.114.108.5")

    assert detect_admin_cidr(httpx.MockTransport(handler)) == "129.114.108.5/32"


def test_private_or_garbage_answers_are_refused_with_a_hint() -> None:
    answers = iter(["10.0.0.5", "<html>rate limited</html>"])
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text=next(answers)))
    with pytest.raises(ChimlError, match="cannot detect") as info:
        detect_admin_cidr(transport)
    assert "chameleon.admin_cidr" in (info.value.hint or "")
