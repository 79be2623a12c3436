"""The process's limit on open files, raised at start to what the system allows.

Every request in flight holds two file descriptors: its client's connection and its
provider's. Many systems start processes with a soft limit of 1,024 under a hard limit
far above it (systemd: 1,024 and 524,288), so a worker relaying some 500 streams at once
would run out: new clients are refused and connections to providers fail with "Too many
open files". Like nginx (``worker_rlimit_nofile``) and Go's runtime (since 1.19), the
server raises its soft limit to the hard one; its event loop polls with epoll or kqueue,
which have no ``FD_SETSIZE`` ceiling. Workers and the store's writer inherit the limit.
"""

from __future__ import annotations

import math
import resource

# macOS reports an unlimited hard limit but refuses a soft limit above OPEN_MAX.
OPEN_MAX = 10_240
# Below this many, say so at start: a few hundred requests at once would exhaust it.
LOW = 4_096


def _finite(limit: int) -> float:
    return math.inf if limit == resource.RLIM_INFINITY else limit


def raise_open_files() -> int:
    """Raise the soft limit on open files as far as the hard limit (or OPEN_MAX, where
    the hard limit is unlimited and refused); return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (hard, OPEN_MAX):
        if _finite(target) <= _finite(soft):
            continue
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            continue
        return target
    return soft


def low_limit_warning(soft: int) -> str | None:
    """What to tell the operator about a limit that stays low, or None."""
    if _finite(soft) >= LOW:
        return None
    return (
        f"warning: this process may open only {soft} files, and each request in flight "
        f"holds two (its client's connection and its provider's): about {soft // 2} "
        "requests at once. Raise the hard limit (ulimit -Hn, or LimitNOFILE= in a systemd "
        "unit) to serve more."
    )
