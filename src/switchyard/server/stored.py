"""Stored chat completions: list, get, messages, update metadata, delete."""

from __future__ import annotations

from starlette.routing import Route

from switchyard.server.state import AppState


def routes(state: AppState) -> list[Route]:
    return []
