"""What the adapter notes and tidies in a stream's chunks as they pass.

Whether a stream that ended without ``[DONE]`` had finished: each of its choices must
have sent its ``finish_reason`` (a body cut cleanly, by a proxy or at a close, looks like
an end otherwise; older TGI sends no ``[DONE]`` at all). And a role given again: OpenAI
gives a choice's role in its first delta only, Ollama, TGI and Together in every one,
which the openai SDK's stream helpers join into ``"assistantassistant..."``, a role the
next request (the message sent back) is refused for.
"""

from __future__ import annotations

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
        for choice in choices:
            if isinstance(choice, dict):
                index = choice.get("index")
                key = index if isinstance(index, int) else 0
                finished[key] = finished.get(key, False) or bool(choice.get("finish_reason"))


def drop_given_role(chunk: JSON, roles: dict[int, str]) -> None:
    """Drops from the chunk's deltas a role its choice was already given (``roles``:
    each one's, as first given)."""
    choices = chunk.get("choices")
    if type(choices) is not list:
        return
    for choice in choices:
        delta = choice.get("delta") if type(choice) is dict else None
        if type(delta) is not dict or type(role := delta.get("role")) is not str:
            continue  # none given (or null): nothing to drop
        index = choice.get("index")
        key = index if type(index) is int else 0
        if roles.get(key) == role:
            del delta["role"]
        else:
            roles[key] = role
