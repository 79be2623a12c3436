"""Shared fixtures. Servers and fake upstreams live in tests/support/."""

from __future__ import annotations

import os

# The inline embedding model must never reach for a hub, in tests least of all.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
