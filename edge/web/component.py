"""The web UI as a thread of the line's process (`web.isolated: false`; see `isolated.py`).

The server's event loop runs in one thread of the appliance process; the line's
capture and inspection threads never wait on it (the hub takes verdicts off the
bus through its own bounded queue). Long jobs run in child processes.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)


def make_server(app: Any, host: str, port: int, trusted_proxies: list[str] | None = None) -> Any:
    """The uvicorn server the web UI runs on, in a thread or in its own process alike.

    Forwarded headers (client address, https) are believed only from `trusted_proxies`
    (uvicorn would otherwise believe any client on 127.0.0.1).
    """
    import uvicorn

    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            proxy_headers=bool(trusted_proxies),
            forwarded_allow_ips=list(trusted_proxies or []) or None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            timeout_keep_alive=30,
        )
    )


class WebComponent:
    name = "web"

    def __init__(self, appliance: Any):
        from edge.web.server import create_app

        self.appliance = appliance
        self.cfg = appliance.cfg.web
        self.app = create_app(appliance)
        self.ctx = self.app.state.ctx
        self.server = make_server(self.app, self.cfg.host, self.cfg.port, self.cfg.trusted_proxies)
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    @property
    def port(self) -> int | None:
        try:
            return int(self.server.servers[0].sockets[0].getsockname()[1])
        except (AttributeError, IndexError):
            return None

    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.port or self.cfg.port}"

    def _run(self) -> None:
        try:
            self.server.run()
        except BaseException as exc:  # a port in use must not take the line down
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("web UI stopped: %s", self.error)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.server.started:
            log.info("web UI on %s", self.url)
        else:
            log.error(
                "web UI did not start on %s:%s (%s)",
                self.cfg.host,
                self.cfg.port,
                self.error or "timeout",
            )

    def stop(self) -> None:
        self.ctx.hub.close()
        if self.ctx.jobs is not None:
            self.ctx.jobs.close()
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)

    def status(self) -> dict[str, Any]:
        up = bool(self.server.started and self._thread and self._thread.is_alive())
        return {
            "up": up,
            "url": self.url,
            "detail": self.error or "",
            "events_dropped": self.ctx.hub.sub.dropped,
        }
