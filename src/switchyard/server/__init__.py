"""The HTTP layer: parse and validate, route, call the provider, write JSON or SSE."""

from switchyard.server.app import create_app

__all__ = ["create_app"]
