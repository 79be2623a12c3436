"""Shared fixtures. Servers and fake upstreams live in tests/support/."""

from __future__ import annotations

import os
import tempfile

# The inline embedding model must never reach for a hub, in tests least of all.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# The store is on by default and keeps its SQLite file in the user's data folder: keep
# every test's data in a throwaway folder, never in the developer's home.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="switchyard-tests-")

# Provider traffic honours HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY: the tests'
# upstreams are on 127.0.0.1 and reached directly, whatever the developer's shell has
# set. The proxy tests set their own.
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
for _name in [n for n in os.environ if n.lower() in _PROXY_VARIABLES]:
    del os.environ[_name]
