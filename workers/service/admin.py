"""The admin listener: the pages that return identifiers, apart from the public ones.

``/profile/{key}`` and ``/profiles`` answer on ``admin.host:admin.port`` (127.0.0.1 by
default), never on the public port of ``/metrics`` and ``/personas``: a port opened
to Prometheus or a load balancer must not hand out emails. With a token configured
(required off loopback, :func:`workers.config.validate`) every request must carry
``Authorization: Bearer <token>``; anything else is a 401. A worker answers for the
profile partitions it holds: by profile id anywhere, by identifier on the worker
making the identity decisions, which says which partition holds a profile it does
not.

A plain aiohttp server (faust's web server listens on one address only), started and
stopped with the app. It writes no access log: a logged path would hold the
identifier it looked up.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable

import faust
import orjson
from aiohttp import web

from workers.config import Config, Secret
from workers.core.partitioned.router import partition_of
from workers.service.state import WorkerState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status,
                        content_type="application/json")


def bearer_matches(header: str, token: Secret) -> bool:
    """``header`` is ``Bearer <token>``, compared in constant time (digests of equal length,
    so neither the token nor its length shows in the time a refusal takes)."""
    given = hashlib.sha256(header.encode("utf-8", "surrogateescape")).digest()
    expected = hashlib.sha256(f"Bearer {token.reveal()}".encode()).digest()
    return hmac.compare_digest(given, expected)


class AdminPages(faust.Service):
    """The admin web server: started with the app, closed with it."""

    def __init__(self, config: Config, state: WorkerState) -> None:
        super().__init__()
        self.config = config
        self.worker = state
        self.token = config.admin.token
        self.runner: web.AppRunner | None = None

    async def on_start(self) -> None:
        app = web.Application(middlewares=[self._authorise])
        app.router.add_get("/profile/{key}", self.profile)
        app.router.add_get("/profiles", self.profiles)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        admin = self.config.admin
        await web.TCPSite(self.runner, admin.host, admin.port).start()

    async def on_stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @web.middleware
    async def _authorise(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.token is not None and not bearer_matches(
                request.headers.get("Authorization", ""), self.token):
            response = _json({"error": "this page needs the admin token:"
                              " Authorization: Bearer <admin.token>"}, status=401)
            response.headers["WWW-Authenticate"] = 'Bearer realm="persona-stream admin"'
            return response
        return await handler(request)

    async def profile(self, request: web.Request) -> web.Response:
        """A profile of a partition this worker holds; the identity stage's worker resolves
        identifiers and names the partition of a profile held elsewhere."""
        key = request.match_info["key"]
        stage = self.worker.stage
        pid = key if stage is None else stage.lookup(key)
        if pid is None:
            return _json({"error": "not found"}, status=404)
        partition = partition_of(pid, self.config.kafka.partitions)
        task = self.worker.tasks.get(partition)
        if task is not None:
            if pid not in task.work.profiles:
                return _json({"error": "not found"}, status=404)
            return _json(task.work.profile_snapshot(pid, list(self.config.identity.limits)))
        return _json({"error": "not held here: a profile id is answered by the worker holding"
                      " its partition (GET /status: task_partitions), an identifier by the one"
                      " making the identity decisions (GET /status: owner)",
                      "profile_id": pid, "partition": partition}, status=404)

    async def profiles(self, request: web.Request) -> web.Response:
        """Every profile snapshot of the profile partitions this worker holds, as JSON lines
        (``run``'s ``profiles.jsonl``: the union over workers is every profile)."""
        types = list(self.config.identity.limits)
        body = b"".join(orjson.dumps(task.work.profile_snapshot(pid, types)) + b"\n"
                        for _, task in sorted(self.worker.tasks.items())
                        for pid in sorted(task.work.profiles))
        return web.Response(body=body, content_type="application/x-ndjson")
