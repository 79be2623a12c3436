"""Provider text quoted to clients: no secrets of ours, no HTML pages (``providers/quoting``)."""

from __future__ import annotations

import logging

import pytest

from switchyard.providers.quoting import Quoter, error_fields


def test_the_configured_key_and_base_url_password_are_hidden() -> None:
    quote = Quoter("p", "sk-live-123456", "https://user:p%40ss-word-9@vllm.internal/v1")
    said = "bad key sk-live-123456; auth user:p@ss-word-9 refused (p%40ss-word-9)"
    assert quote(said) == "bad key ***; auth user:*** refused (***)"


def test_a_placeholder_key_blanks_out_nothing() -> None:
    assert Quoter("p", "x", "http://h/v1")("max tokens exceeded") == "max tokens exceeded"


def test_an_html_page_goes_to_the_log_not_the_message(caplog: pytest.LogCaptureFixture) -> None:
    page = "  <html><body>502 Bad Gateway at 10.1.2.3</body></html>"
    with caplog.at_level(logging.WARNING):
        said = Quoter("p", None, "http://h/v1")(page)
    assert "10.1.2.3" not in said and "HTML page" in said
    assert "10.1.2.3" in caplog.text


def test_a_quote_is_cut_short() -> None:
    assert len(Quoter("p", None, "http://h/v1")("x" * 10_000)) == 500


@pytest.mark.parametrize(
    ("raw", "fields"),
    [
        (
            b'{"error": {"message": "m", "type": "t", "param": "p", "code": "c"}}',
            ("m", "t", "p", "c"),
        ),
        (b'{"error": "busy"}', ("busy", None, None, None)),
        (b'{"detail": "Not Found"}', ("Not Found", None, None, None)),  # FastAPI's
        (  # Gemini's OpenAI API: the error object in a list of one
            b'[{"error": {"code": 400, "message": "Unknown name", "status": "INVALID"}}]',
            ("Unknown name", None, None, None),
        ),
        (b"plain text", ("plain text", None, None, None)),
        (b"", ("no details given", None, None, None)),
    ],
)
def test_error_fields(raw: bytes, fields: tuple[str | None, ...]) -> None:
    assert error_fields(raw) == fields


def test_an_error_nested_deeper_than_json_is_written_is_quoted_as_sent() -> None:
    # orjson reads 1,024 levels and writes 254: an error object with no message, nested
    # between the two, is given as the provider's own text instead of failing.
    raw = b'{"error": {"x": ' + b"[" * 300 + b"]" * 300 + b"}}"
    assert error_fields(raw) == (raw.decode(), None, None, None)


def test_a_key_across_the_cut_is_hidden_whole() -> None:
    quote = Quoter("p", "sk-live-123456", "http://h/v1")
    said = quote("x" * 195 + "sk-live-123456 and more", 200)
    assert "sk-" not in said and "***" in said
