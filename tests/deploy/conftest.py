"""One running platform for the deploy tests (started on first use, stopped at the end)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.platform import Platform, running


@pytest.fixture(scope="session")
def deploy_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """``charter up`` with mTLS, gateway rate limit off, 2 workers per component (the
    multiprocess ``/metrics`` production serves; ``CHARTER_DEPLOY_TEST_WORKERS`` changes it)."""
    workers = os.environ.get("CHARTER_DEPLOY_TEST_WORKERS", "2")
    with running(tmp_path_factory.mktemp("deploy"), prefix="charter_deploy",
                 extra_env={"CHARTER_WORKERS": workers}) as platform:
        yield platform
