from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.aws import AwsStack


@pytest.fixture(scope="session")
def aws() -> Iterator[AwsStack]:
    with AwsStack() as stack:
        yield stack
