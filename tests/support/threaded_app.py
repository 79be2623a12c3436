"""An aiohttp app on 127.0.0.1, on its own event loop in a daemon thread: the shape every
fake upstream in the tests shares. Subclasses build the app in ``build_app``."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading

from aiohttp import web


class ThreadedApp:
    def __init__(
        self,
        port: int = 0,
        *,
        shutdown_timeout: float = 1.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.port = port
        self._ssl = ssl_context  # https when given
        self._shutdown_timeout = shutdown_timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{self.port}"

    def build_app(self) -> web.Application:
        raise NotImplementedError

    def start_thread(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self) -> None:
        runner = web.AppRunner(
            self.build_app(), access_log=None, shutdown_timeout=self._shutdown_timeout
        )
        self._runner = runner
        await runner.setup()
        sock = socket.socket()
        # A fixed port may be taken again right after a test released it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        await web.SockSite(runner, sock, backlog=1024, ssl_context=self._ssl).start()
