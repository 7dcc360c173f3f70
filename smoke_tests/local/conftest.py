"""Fixtures of the local smoke suite: the platform under test, found as the CLI finds it."""

from __future__ import annotations

import os

import pytest
import testinfra


@pytest.fixture(scope="session")
def platform():
    from chiml import Platform

    p = Platform.connect(config=os.environ.get("CHIML_CONFIG"))
    if p.profile.name != "local":
        pytest.skip(f"local smoke suite, but the profile is {p.profile.name}")
    return p


@pytest.fixture(scope="session")
def host():
    return testinfra.get_host("local://")


@pytest.fixture(scope="session")
def statuses(platform):
    return {s.name: s for s in platform.status()}
