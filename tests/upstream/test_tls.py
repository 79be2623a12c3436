"""A provider's ``tls_verify``: the system's trust store, a private CA's file, or none."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from tests.support.scripted_server import JSON_OK, Exchange, ScriptedServer, post

from switchyard.config import ProviderConfig
from switchyard.errors import ConfigError, UpstreamUnavailableError
from switchyard.transports import live_transport
from switchyard.upstream import HttpTransport, RetryTransport
from switchyard.upstream.tls import system_context, verifying_context


async def _ok(exchange: Exchange) -> bytes:
    return JSON_OK


@pytest.fixture
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def private_server(authority: trustme.CA) -> AsyncIterator[str]:
    """An https server whose certificate a private CA signed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(context)
    server = ScriptedServer(_ok)
    base = await server.start(context)
    yield base
    await server.stop()


async def _answer(context: ssl.SSLContext | None, base: str) -> bytes:
    transport = HttpTransport(timeout=2.0, connect_timeout=2.0, ssl_context=context)
    try:
        return await (await transport.send(post(base + "/v1/x"))).read()
    finally:
        await transport.aclose()


async def test_a_private_cas_file_is_trusted_and_the_system_store_is_not(
    authority: trustme.CA, private_server: str, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    assert await _answer(verifying_context("p", str(ca_file)), private_server) == b'{"ok":true}'
    # true: the system's store (one shared context), which has never heard of this CA.
    assert verifying_context("p", True) is None
    assert system_context() is system_context()
    with pytest.raises(UpstreamUnavailableError) as refused:
        await _answer(None, private_server)
    assert refused.value.message == (
        "provider 'p' cannot be reached (its TLS certificate was refused: unable to get "
        "local issuer certificate; if a private CA signed it, set the provider's tls_verify "
        "to that CA's certificate file (PEM))"
    )


async def test_a_refused_certificate_is_not_retried(
    private_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Our own check refused it: no retry, here or by the client's SDK, can change that."""
    real = HttpTransport(timeout=2.0, connect_timeout=2.0)
    transport = RetryTransport(real, max_retries=2)
    try:
        with pytest.raises(UpstreamUnavailableError) as refused:
            await transport.send(post(private_server + "/v1/x"))
    finally:
        await transport.aclose()
    assert refused.value.headers["x-should-retry"] == "false"
    assert "retrying" not in caplog.text


async def test_the_file_replaces_the_system_store(
    authority: trustme.CA, private_server: str, tmp_path: Path
) -> None:
    """As requests' and httpx's ``verify=path``: only that file's CAs are trusted, so a
    certificate from another CA (a public one, here another private one) is refused."""
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with pytest.raises(UpstreamUnavailableError, match="unable to get local issuer"):
        await _answer(verifying_context("p", str(other)), private_server)


@pytest.mark.parametrize(
    ("issued", "said"),
    [
        ({"identities": ("example.org",)}, "it is not for the host in the provider's base_url"),
        (
            {"identities": ("localhost",), "not_after": datetime.datetime(2020, 1, 1)},
            "certificate has expired",
        ),
    ],
)
async def test_a_certificate_the_ca_signed_may_still_be_refused_and_says_why(
    authority: trustme.CA, tmp_path: Path, issued: dict[str, Any], said: str
) -> None:
    """With the right CA given, the hint about tls_verify would mislead."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    identities = issued.pop("identities")
    authority.issue_cert(*identities, **issued).configure_cert(context)
    server = ScriptedServer(_ok)
    base = await server.start(context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    try:
        with pytest.raises(UpstreamUnavailableError) as refused:
            await _answer(verifying_context("p", str(ca_file)), base)
    finally:
        await server.stop()
    assert refused.value.message == (
        f"provider 'p' cannot be reached (its TLS certificate was refused: {said})"
    )


async def test_false_checks_nothing_and_says_so(
    private_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    provider = ProviderConfig(id="lab", type="vllm", base_url=private_server, tls_verify=False)
    transport = live_transport(provider)
    try:
        assert await (await transport.send(post(private_server + "/v1/x"))).read() == b'{"ok":true}'
    finally:
        await transport.aclose()
    assert "provider 'lab': tls_verify is false: its certificate is not checked" in caplog.text


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "No such file or directory"), (b"not a certificate\n", "NO_CERTIFICATE")],
)
def test_a_path_that_holds_no_certificates_is_a_config_error(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        verifying_context("vllm", str(path))
    message = caught.value.message
    assert message.startswith(f"provider 'vllm': tls_verify '{path}' cannot be read")
    assert reason in message
    assert "give the path of a PEM file" in message


@pytest.mark.parametrize(
    ("given", "taken"),
    [
        (True, True),
        ("false", False),
        (" True ", True),
        ("0", False),
        ("off", False),
        ("yes", True),
        ("/etc/ca.pem", "/etc/ca.pem"),
    ],
)
def test_tls_verify_in_the_config(given: object, taken: object) -> None:
    """A switch from ``${env.X}`` arrives as a string."""
    config = ProviderConfig.model_validate({"id": "p", "type": "vllm", "tls_verify": given})
    assert config.tls_verify == taken


def test_an_empty_tls_verify_is_refused() -> None:
    with pytest.raises(ValueError, match="give true, false or the path"):
        ProviderConfig.model_validate({"id": "p", "type": "vllm", "tls_verify": " "})
