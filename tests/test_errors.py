"""What a provider's error status becomes for the client (``errors.UpstreamStatusError``)."""

from __future__ import annotations

import pytest

from switchyard.errors import UpstreamStatusError


@pytest.mark.parametrize(
    ("upstream", "kind", "status", "error_type"),
    [
        (400, "invalid_request_error", 400, "invalid_request_error"),
        (413, None, 413, "invalid_request_error"),  # the client's to fix, typed or not
        (422, None, 400, "invalid_request_error"),
        (429, None, 429, "rate_limit_error"),
        (401, "authentication_error", 502, "upstream_error"),  # our key, not the client's
        (500, "server_error", 502, "upstream_error"),
    ],
)
def test_statuses_and_types(upstream: int, kind: str | None, status: int, error_type: str) -> None:
    error = UpstreamStatusError("m", provider_id="p", upstream_status=upstream, error_type=kind)
    assert (error.status, error.error_type) == (status, error_type)
