"""The shared adapter for every provider that speaks OpenAI's HTTP API.

A provider module subclasses :class:`OpenAICompatProvider` and states its quirks as
class attributes (data) or by overriding one small hook (``prepare_*``,
``parse_model_list``, ``classify_model``). Nothing here names a provider.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import orjson

from switchyard._version import __version__
from switchyard.config import ModelType, ProviderConfig
from switchyard.errors import (
    ConfigError,
    InvalidRequestError,
    UnsupportedParameterError,
    UpstreamError,
    UpstreamStatusError,
    no_client_retry,
)
from switchyard.ids import PLAIN_TOKEN
from switchyard.providers.base import JSON, ModelInfo, check_options
from switchyard.providers.chunks import check_end, drop_given_role, note_finishes
from switchyard.providers.quoting import READ_MAX, Quoter, error_fields
from switchyard.providers.settings import MASK, checked_url, secret_name, without_userinfo
from switchyard.providers.vectors import encode_embeddings_base64, other_size
from switchyard.recording.sse import DONE, MAX_EVENT_BYTES, EventTooLarge, SSEParser
from switchyard.transports import live_transport
from switchyard.upstream import (
    Transport,
    UpstreamRequest,
    UpstreamResponse,
)
from switchyard.upstream.retry import RETRY_STATUSES

log = logging.getLogger(__name__)

# Name fragments of embedding model families, for lists that do not say a model's type.
EMBEDDING_HINTS = (
    "embed",
    "bge-",
    "/bge",
    "e5-",
    "gte-",
    "minilm",
    "m2-bert",
    "retrieval",
)


class OpenAICompatProvider:
    """Chat, completions, embeddings and model listing over OpenAI's wire format."""

    type: ClassVar[str] = "openai_compatible"
    inline: ClassVar[bool] = False
    default_base_url: ClassVar[str | None] = None
    api_key_env: ClassVar[str | None] = None
    base_url_env: ClassVar[str | None] = None

    # Quirks as data; each is checked before a request leaves.
    supports_completions: ClassVar[bool] = True
    max_n: ClassVar[int | None] = None
    stream_max_n: ClassVar[int | None] = None
    embedding_dropped_fields: ClassVar[frozenset[str]] = frozenset()
    embedding_refused_fields: ClassVar[frozenset[str]] = frozenset()
    embedding_metadata: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    known_options: ClassVar[frozenset[str]] = frozenset()  # of config.options
    # Listed model families that no endpoint of Switchyard serves (images, speech,
    # transcription, realtime, moderation, video), matched in the listed id: left out of
    # the model list, where a user or a UI would take them for chat models.
    unserved_models: ClassVar[re.Pattern[str] | None] = None
    # Whether its streams may give a choice's role again in later deltas (Ollama, TGI,
    # Together: dropped here, see chunks.py). False where it is known to give it once:
    # those streams skip the look (~3k instructions a chunk; bench/NOTES.md, section 68).
    repeats_role: ClassVar[bool] = True

    def __init__(self, config: ProviderConfig, transport: Transport | None = None) -> None:
        check_options(config, self.known_options)
        self.id = config.id
        self._allowed_as_given = config.allowed_models
        if config.allowed_models is not None:
            # Every spelling of an allowed model: the listing's filter compares the names
            # models are listed by, and a request may name it any way the provider takes.
            names = dict.fromkeys(n for m in config.allowed_models for n in self.spellings(m))
            config = config.model_copy(update={"allowed_models": list(names)})
        self.config = config
        base_url = config.base_url or self.default_base_url
        if not base_url:
            raise ConfigError(
                f"provider '{config.id}' (type {self.type}) needs a base_url in its config"
            )
        self.base_url = checked_url(config.id, base_url).rstrip("/")
        self._transport = transport or live_transport(config)
        self._headers = {"User-Agent": f"switchyard/{__version__}"}
        self._quote = Quoter(config.id, config.api_key, base_url)
        if config.api_key:
            if not config.api_key.isprintable():
                # Say, the \r of a .env file written on Windows: every request would fail.
                raise ConfigError(
                    f"provider '{config.id}': its api_key holds a line break or another "
                    "control character; remove it (a .env file with Windows line endings?)"
                )
            self._headers["Authorization"] = f"Bearer {config.api_key}"

    def spellings(self, name: str) -> tuple[str, ...]:
        """The names this provider takes for the model a config calls ``name``, the one
        its listing gives first (a hook: Gemini's models/ prefix, Ollama's :latest)."""
        return (name,)

    @classmethod
    def env_base_url(cls, env: Mapping[str, str]) -> str | None:
        """The base URL the environment sets for this type of provider, if any."""
        return (env.get(cls.base_url_env) or None) if cls.base_url_env else None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProviderConfig | None:
        """The provider's config when its key (or URL) is in the environment."""
        if not cls.api_key_env or not env.get(cls.api_key_env):
            return None
        return ProviderConfig(
            id=cls.type, type=cls.type, api_key=env[cls.api_key_env], base_url=cls.env_base_url(env)
        )

    async def start(self) -> None:
        """Nothing to do: connections open lazily on the worker's loop."""

    async def close(self) -> None:
        await self._transport.aclose()

    # -- requests --------------------------------------------------------------

    async def _send(
        self, method: str, path: str, body: JSON | None, stream: bool
    ) -> UpstreamResponse:
        request = UpstreamRequest(
            provider_id=self.id,
            method=method,
            url=self.base_url + path,
            headers=self._headers
            if body is None
            else {**self._headers, "Content-Type": "application/json"},
            json=body,
            content=None if body is None else _encode(body),
            stream=stream,
        )
        response = await self._transport.send(request)
        if 300 <= response.status < 400:
            await response.aclose()
            raise self._redirected(response.status, response.headers.get("location"))
        if response.status >= 400:
            try:
                raw = await response.read()
            except UpstreamError as err:
                # A body cut, or compressed as asked by nobody: the status still says
                # what happened (a 429 stays a 429, with its retry-after).
                log.warning(
                    "provider '%s': the body of its HTTP %d: %s",
                    self.id,
                    response.status,
                    err.message,
                )
                raw = b""
            error = self._status_error(response.status, raw)
            theirs = response.headers.get("x-request-id", "").encode("latin-1", "replace")
            if PLAIN_TOKEN.fullmatch(theirs):
                # What the provider's support asks for (OpenAI's, Groq's, vLLM's): in
                # the client's message and, for a 5xx, the log line.
                error.message += f" (the provider's request id: {theirs.decode()})"
            # The provider's own back-off advice reaches the client's SDK unchanged.
            for name in ("retry-after", "retry-after-ms"):
                if name in response.headers:
                    error.headers[name] = response.headers[name]
            if not _transient(response.status) or (
                response.status in RETRY_STATUSES and self.config.max_retries
            ):
                # None can help (a refused key, 402 payment required, 501), or our
                # retries are spent: a client SDK's own retries (openai-python's: two,
                # of any 5xx) would multiply the provider's load threefold.
                no_client_retry(error)
            raise error
        return response

    async def _json(self, path: str, body: JSON, listing: str = "choices") -> JSON:
        """The answer, which holds its ``listing`` (choices, or an embedding's data)."""
        response = await self._send("POST", path, body, stream=False)
        raw = await response.read()
        payload = self._decode(raw)
        if payload.get("error"):
            # Some providers fail with HTTP 200 and an error object: relayed as it is,
            # it would reach the client (and the store) as if it were an answer.
            raise self._reported(raw, "failed (an error in an HTTP 200 answer)")
        if type(payload.get(listing)) is not list:  # {} would be stored as a completion
            raise self._unusable(f" {path} without a '{listing}' list", raw)
        return payload

    def _reported(self, raw: bytes, how: str) -> UpstreamError:
        """The error object a provider sent in place of an answer (in a 200, or as an
        event of a stream), with its param and code for the client's SDK to branch on
        (``rate_limit_exceeded``); the message quoted. The type stays Switchyard's
        (``upstream_error``: metrics count by it), and a code about a key is dropped,
        as for a 401: the key is Switchyard's, not the client's."""
        message, _, param, code = error_fields(raw)
        if code is not None and any(word in code for word in ("key", "auth")):
            param = code = None
        return UpstreamError(
            f"provider '{self.id}' {how}: {self._quote(message)}",
            provider_id=self.id,
            param=param,
            code=code,
        )

    def _decode(self, raw: bytes) -> JSON:
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise self._not_json(raw, "") from None
        if not isinstance(payload, dict):
            raise self._unusable(" with JSON that is not an object", raw)
        return payload

    async def _stream(self, path: str, body: JSON) -> AsyncIterator[list[JSON]]:
        response = await self._send("POST", path, body, stream=True)
        if response.headers.get("content-type", "").startswith("application/json"):
            # One JSON document where events were asked for: its SSE parse would find
            # no event, and the client would get an empty stream that looks complete.
            raise self._not_a_stream(await response.read())
        options = body.get("stream_options")
        wants_usage = type(options) is dict and options.get("include_usage") is True
        n = body.get("n")
        return self._events(response, type(n) is int and n > 1, wants_usage)

    def _not_a_stream(self, raw: bytes) -> UpstreamError:
        try:
            payload = self._decode(raw)
        except UpstreamError as err:
            return err
        if payload.get("error") is not None:
            return self._reported(raw, "failed")
        return UpstreamError(
            f"provider '{self.id}' answered a streaming request with one JSON document, "
            "not Server-Sent Events; send the request without stream=true",
            provider_id=self.id,
        )

    async def _events(
        self, response: UpstreamResponse, several: bool, wants_usage: bool
    ) -> AsyncIterator[list[JSON]]:
        """The stream's chunks, a list per read: what arrived together is relayed
        together, each read as soon as it arrives (one write for a read's events, not
        one each; bench/NOTES.md, section 22). ``several``: n > 1 was asked, so each
        choice's finish is looked for in the whole stream, not in its last reads (a
        choice may say nothing in them); ``wants_usage``: include_usage was asked."""
        parser = SSEParser(MAX_EVENT_BYTES)
        finished: dict[int, bool] | None = {} if several else None
        roles: dict[int, str] | None = {} if self.repeats_role else None  # as first given
        # The last two reads' chunks (a finish may be followed by a usage chunk): looked
        # at only if the body ends without [DONE], so nothing is spent on them per read.
        before: list[JSON] = []
        last: list[JSON] = []
        # aclosing: the connection goes back to the pool (or is closed, if the client
        # left early) now, not when the garbage collector finds the iterator.
        async with contextlib.aclosing(response.aiter_bytes()) as body:
            async for data in body:
                try:
                    payloads = parser.feed(data)
                except EventTooLarge:
                    raise self._endless_event() from None
                chunks, ended, error = self._chunks(payloads, roles)
                if chunks:
                    before, last = last, chunks
                    note_finishes(chunks, finished)
                    yield chunks
                if error is not None:
                    raise error
                if ended:
                    self._check_some(last)
                    return
        # What is left once the body ended: an event without its blank line (a [DONE]
        # ended by one newline only), then the end without [DONE], if it was not there.
        chunks, ended, error = self._chunks(parser.flush(), roles)
        if chunks:
            before, last = last, chunks
            note_finishes(chunks, finished)
            yield chunks
        if error is not None:
            raise error
        if ended:
            self._check_some(last)
            return
        check_end(self.id, response.ends_at_close, before + last, finished, wants_usage)

    def _endless_event(self) -> UpstreamError:
        return UpstreamError(
            f"provider '{self.id}' sent more than {MAX_EVENT_BYTES // 2**20} MiB of its "
            "stream without ending an event (a blank line): not Server-Sent Events as "
            "OpenAI sends them; check the provider's base_url",
            provider_id=self.id,
        )

    def _check_some(self, last: list[JSON]) -> None:
        if not last:  # [DONE] with nothing before it: no answer at all
            raise UpstreamError(
                f"provider '{self.id}' ended the stream without a single chunk; try again",
                provider_id=self.id,
            )

    def _chunks(
        self, payloads: list[bytes], roles: dict[int, str] | None
    ) -> tuple[list[JSON], bool, Exception | None]:
        """The chunks of ``payloads`` up to ``[DONE]``, whether the stream ended, and the
        error of an event that failed: raised once the chunks before it are relayed.
        A role given again is dropped (``chunks.drop_given_role``; ``roles``: the
        stream's so far, None where the provider gives each once)."""
        chunks: list[JSON] = []
        for data in payloads:
            if data == DONE:
                return chunks, True, None
            if not data:
                continue  # "data:" alone: an event with no data is not dispatched (SSE)
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                event = None  # as for "null": _refused parses again to say which
            # The usual chunk is taken here, in this frame: two calls fewer per chunk,
            # 3.5% of relaying a read (bench/NOTES.md, section 52). The rest is _refused.
            if type(event) is not dict or event.get("error"):
                return chunks, True, self._refused(data)
            chunks.append(event)
            if roles is not None and b'"role"' in data:
                drop_given_role(event, roles)
        return chunks, False, None

    def _refused(self, data: bytes) -> Exception:
        """Why an event is not a chunk: not JSON, not an object, or an error the
        provider reported mid-stream (an object, or a bare string: {"error": "model
        overloaded"}). Returned, whatever it is, to be raised once the chunks before
        the event are relayed."""
        try:
            self._decode(data)
            return self._reported(data, "failed mid-stream")
        except Exception as err:
            return err

    def _not_json(self, raw: bytes, where: str = "") -> UpstreamError:
        return self._unusable(f"{where} with something that is not JSON", raw)

    def _unusable(self, how: str, raw: bytes) -> UpstreamError:
        """A body that is no answer, quoted. Not for the client's SDK to retry: the
        provider answered (and may have billed), and a base_url pointing at something
        else answers the same again."""
        said = self._quote(raw[:READ_MAX].decode("utf-8", "replace"), 200)
        error = UpstreamError(f"provider '{self.id}' answered{how}: {said!r}", provider_id=self.id)
        no_client_retry(error)
        return error

    def _redirected(self, status: int, location: str | None) -> UpstreamError:
        # Not followed: a POST redirected (http to https, a moved path) is a base_url to
        # fix, and following it could send the body and key somewhere else. Where it
        # points goes to the log, not to the client: it may name internal hosts.
        log.warning("provider %s redirects (HTTP %d) to %s", self.id, status, location)
        return UpstreamError(
            f"provider '{self.id}' answered with a redirect (HTTP {status}); set its base_url "
            "in Switchyard's config to the address it redirects to (in the server's log)",
            provider_id=self.id,
        )

    def _status_error(self, status: int, raw: bytes) -> UpstreamStatusError:
        message, error_type, param, code = error_fields(raw)
        message = self._quote(message)
        if status in (401, 403):
            # The provider refused Switchyard's key, not the client's: its code (say
            # invalid_api_key) would send the client after the wrong key.
            message += f"; check the api_key of provider '{self.id}' in Switchyard's config"
            param = code = None
        return UpstreamStatusError(
            f"provider '{self.id}' refused the request (HTTP {status}): {message}",
            provider_id=self.id,
            upstream_status=status,
            error_type=error_type,
            param=param,
            code=code,
        )

    # -- endpoints -------------------------------------------------------------

    async def chat(self, body: JSON) -> JSON:
        return await self._json("/chat/completions", self.prepare_chat(body))

    async def chat_stream(self, body: JSON) -> AsyncIterator[list[JSON]]:
        return await self._stream("/chat/completions", self.prepare_chat(body))

    async def completions(self, body: JSON) -> JSON:
        return await self._json("/completions", self.prepare_completions(body))

    async def completions_stream(self, body: JSON) -> AsyncIterator[list[JSON]]:
        return await self._stream("/completions", self.prepare_completions(body))

    async def embeddings(self, body: JSON) -> JSON:
        result = await self._json("/embeddings", self.prepare_embeddings(body), "data")
        wanted = body.get("dimensions")
        size = None if wanted is None else other_size(result, wanted)
        if size is not None:
            # The provider ignored it (Ollama before it learnt it), or the model has
            # fewer: a vector of another size would only fail later, in the client's
            # vector store.
            raise UnsupportedParameterError(
                self.id,
                "dimensions",
                f"'dimensions' {wanted} for {body.get('model')!r} (its vectors have {size})",
            )
        if body.get("encoding_format") == "base64":
            # Some providers (Ollama) answer floats whatever was asked: encode them here.
            try:
                encode_embeddings_base64(result)
            except TypeError as err:  # a null (a NaN, written by some servers), a list
                how = f" /embeddings with a vector that is not a list of numbers ({err})"
                raise self._unusable(how, orjson.dumps(result)) from None
        if not isinstance(result.get("usage"), dict):
            # Together answers "usage": null for some models; OpenAI's schema requires
            # it, and clients read resp.usage.prompt_tokens. Nothing was counted: zeros.
            result["usage"] = {"prompt_tokens": 0, "total_tokens": 0}
        return result

    async def list_models(self) -> list[ModelInfo]:
        response = await self._send("GET", "/models", None, stream=False)
        # Not _decode: Together's list is a bare JSON array, not an object.
        raw = await response.read()
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise self._not_json(raw, " /models") from None
        return self.parse_model_list(payload)

    # -- quirk hooks -------------------------------------------------------------

    def prepare_chat(self, body: JSON) -> JSON:
        self._check_n(body)
        return body

    def prepare_completions(self, body: JSON) -> JSON:
        if not self.supports_completions:
            raise UnsupportedParameterError(
                self.id, "prompt", "the legacy /v1/completions endpoint; use /v1/chat/completions"
            )
        self._check_n(body)
        return body

    def prepare_embeddings(self, body: JSON) -> JSON:
        native = self.known_embedding(str(body.get("model"))).get("embedding_dimension")
        if body.get("dimensions") is not None and body["dimensions"] == native:
            # The model's own size, asked by clients that always send it: nothing to cut,
            # so a provider that refuses the field never sees it.
            body = {k: v for k, v in body.items() if k != "dimensions"}
        for name in self.embedding_refused_fields:
            if body.get(name) is not None:
                raise UnsupportedParameterError(self.id, name, f"'{name}' for embeddings")
        if self.embedding_dropped_fields & body.keys():
            # These only tag the request for the provider's own logs; dropping them
            # changes no result, while sending them makes the provider answer 400.
            body = {k: v for k, v in body.items() if k not in self.embedding_dropped_fields}
        return body

    def _check_n(self, body: JSON) -> None:
        n = body.get("n")
        if not isinstance(n, int) or n <= 1:
            return
        if self.max_n is not None and n > self.max_n:
            raise UnsupportedParameterError(self.id, "n", f"n={n} (at most {self.max_n})")
        if body.get("stream") and self.stream_max_n is not None and n > self.stream_max_n:
            raise UnsupportedParameterError(
                self.id, "n", f"n={n} while streaming (at most {self.stream_max_n})"
            )

    def parse_model_list(self, payload: Any) -> list[ModelInfo]:
        entries = payload.get("data") if isinstance(payload, dict) else payload
        if not isinstance(entries, list):
            raise UpstreamError(
                f"provider '{self.id}' answered /models without a list of models",
                provider_id=self.id,
            )
        return [
            self.model_info(e)
            for e in entries
            if isinstance(e, dict) and e.get("id") and self.serves(e)
        ]

    def serves(self, entry: JSON) -> bool:
        """Whether a listed model is one that chat, completions or embeddings can use;
        the others are not listed (the config can still name them)."""
        return not self.unserved(str(entry["id"]))

    def unserved(self, model_id: str) -> bool:
        pattern = self.unserved_models
        return pattern is not None and pattern.search(model_id) is not None

    def model_info(self, entry: JSON) -> ModelInfo:
        model_id = str(entry["id"])
        model_type = self.classify_model(entry)
        metadata: dict[str, Any] = dict(self.known_embedding(model_id))
        # Together's name, vLLM's, Groq's.
        context = (
            entry.get("context_length") or entry.get("max_model_len") or entry.get("context_window")
        )
        if isinstance(context, int) and "context_length" not in metadata:
            metadata["context_length"] = context
        created = entry.get("created")
        return ModelInfo(
            provider_model_id=model_id,
            model_type=model_type,
            metadata=metadata,
            created=created if isinstance(created, int) else 0,
            owned_by=str(entry.get("owned_by") or ""),
        )

    def classify_model(self, entry: JSON) -> ModelType | None:
        """The listed model's type; None when nothing says, so that a request of either
        kind reaches the provider, which decides (a name outside the hints is no proof
        of a language model)."""
        model_id = str(entry["id"])
        if self.known_embedding(model_id):
            return "embedding"
        lowered = model_id.lower()
        return "embedding" if any(h in lowered for h in EMBEDDING_HINTS) else None

    def known_embedding(self, model_id: str) -> Mapping[str, Any]:
        """What :attr:`embedding_metadata` says of a listed model (empty: not known)."""
        return self.embedding_metadata.get(model_id, {})

    def describe(self) -> JSON:
        """The config for ``/v1/providers``: anything that may be a secret is masked."""
        return {
            "base_url": without_userinfo(self.base_url),
            "api_key": MASK if self.config.api_key else None,
            "allowed_models": self._allowed_as_given,
            "timeout": self.config.timeout,
            "tls_verify": self.config.tls_verify,
            "options": {k: MASK if secret_name(k) else v for k, v in self.config.options.items()},
        }


def _encode(body: JSON) -> bytes:
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError as err:
        # orjson reads JSON nested up to 1,024 levels deep but writes at most 254, so a
        # body between the two was read and cannot be sent on: the client's to change.
        raise InvalidRequestError(
            f"The request body cannot be forwarded to the provider ({err}): "
            "nest its JSON less deeply (at most 254 levels)."
        ) from None


def _transient(status: int) -> bool:
    """Whether a client's retry of an answer with this status may succeed."""
    return status in RETRY_STATUSES or (status >= 500 and status not in (501, 505))
