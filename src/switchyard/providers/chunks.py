"""What the adapter notes and tidies in a stream's chunks as they pass.

Whether a stream that ended without ``[DONE]`` had finished: each of its choices must
have sent its ``finish_reason`` (a body cut cleanly, by a proxy or at a close, looks like
an end otherwise; older TGI sends no ``[DONE]`` at all). And a role given again: OpenAI
gives a choice's role in its first delta only, Ollama, TGI and Together in every one,
which the openai SDK's stream helpers join into ``"assistantassistant..."``, a role the
next request (the message sent back) is refused for.
"""

from __future__ import annotations

from switchyard.errors import UpstreamError
from switchyard.providers.base import JSON


def finishes(chunks: list[JSON]) -> bool:
    """Whether every choice that ``chunks`` carry has its finish_reason among them (and
    one does): with n > 1 the choices stream side by side, so one finished says nothing
    of the others."""
    finished: dict[int, bool] = {}
    note_finishes(chunks, finished)
    return all_finished(finished)


def all_finished(finished: dict[int, bool]) -> bool:
    return bool(finished) and all(finished.values())


def note_finishes(chunks: list[JSON], finished: dict[int, bool] | None) -> None:
    """Notes in ``finished`` each choice ``chunks`` carry, and whether it finished; with
    None (a stream of one choice: its last reads tell), nothing."""
    if finished is None:
        return
    for chunk in chunks:
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            continue
        for position, choice in enumerate(choices):
            if isinstance(choice, dict):
                index = choice.get("index")
                key = index if isinstance(index, int) else position
                finished[key] = finished.get(key, False) or bool(choice.get("finish_reason"))


def drop_given_role(chunk: JSON, roles: dict[int, str]) -> None:
    """Drops from the chunk's deltas a role its choice was already given (``roles``:
    each one's, as first given)."""
    choices = chunk.get("choices")
    if type(choices) is not list:
        return
    for position, choice in enumerate(choices):
        delta = choice.get("delta") if type(choice) is dict else None
        if type(delta) is not dict or type(role := delta.get("role")) is not str:
            continue  # none given (or null): nothing to drop
        index = choice.get("index")
        key = index if type(index) is int else position  # as assemble() takes it
        if roles.get(key) == role:
            del delta["role"]
        else:
            roles[key] = role


def check_end(
    provider_id: str,
    at_close: bool,
    tail: list[JSON],
    finished: dict[int, bool] | None,
    wants_usage: bool,
) -> None:
    """A body that ended without [DONE] (``tail``: its last two reads' chunks): refused
    if it held no event at all, or if a choice had not finished (it may have been cut,
    by a connection that closed or by a proxy that ended its chunks cleanly), or if the
    usage ``wants_usage`` asked for never came in a body ended by its connection's close
    (``at_close``), where a cut between the finish and the usage (sent last) cannot be
    told from the end; a body that ended itself without it is from a provider that sends
    none. A body whose choices all finished is whole without [DONE] (older TGI sends
    none). ``finished``: each choice's over the whole stream (n > 1), or None to look
    at the tail."""
    if not tail:
        raise UpstreamError(
            f"provider '{provider_id}' answered the stream with no event (an empty or "
            "non-SSE body); try again, or without stream=true",
            provider_id=provider_id,
        )
    if not (finishes(tail) if finished is None else all_finished(finished)):
        how = "closed the connection" if at_close else "ended the stream"
        raise UpstreamError(
            f"provider '{provider_id}' {how} before the stream finished (no finish_reason, "
            "no [DONE]): the answer is incomplete; try again",
            provider_id=provider_id,
        )
    if wants_usage and at_close and not any(type(c.get("usage")) is dict for c in tail):
        raise UpstreamError(
            f"provider '{provider_id}' ended the stream without its usage chunk (asked by "
            "stream_options.include_usage) and without [DONE]: it may have been cut; "
            "try again",
            provider_id=provider_id,
        )
