"""The console's Starlette app: one page per view, one event stream per open page, approve/reject, /metrics.

Every store read runs in a worker thread over that thread's own store connection (`Stores`). A page's
stream (`/events?view=…`) waits on the change feed and sends the page's live part, re-rendered, only
when the store changed and the HTML differs from what that page already has. With `read_only` the
POST routes are not mounted at all: a POST answers 405 like any unknown method.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from aictl.agents.usage import UsageLedger
from aictl.audit.evidence import EvidenceStore
from aictl.config import Settings
from aictl.console import reports, views
from aictl.console.changes import ChangeFeed
from aictl.console.metrics import StoreCollector
from aictl.console.render import environment
from aictl.console.security import COOKIE, Guard
from aictl.console.taskpage import task_page
from aictl.domain.errors import AictlError, NotFound
from aictl.domain.redact import redact_text
from aictl.store import open_store
from aictl.store.base import Store

KEEPALIVE_S = 15.0  # an SSE comment this often keeps proxies from closing an idle stream
_LINES = re.compile(r"\r\n|\r|\n")  # every line break EventSource knows: a lone CR in a task's text ends no event


class Stores:
    """One store connection per thread (a SQLite connection stays in the thread that opened it)."""

    def __init__(self, url: str, busy_timeout_ms: int = 30000):
        self.url, self.busy_timeout_ms = url, busy_timeout_ms
        self._local = threading.local()
        self._all: list[Store] = []
        self._lock = threading.Lock()

    def get(self) -> Store:
        store = getattr(self._local, "store", None)
        if store is None:
            store = open_store(self.url, busy_timeout_ms=self.busy_timeout_ms, migrate=False)
            self._local.store = store
            with self._lock:
                self._all.append(store)
        return store

    def fresh(self) -> Store:
        return open_store(self.url, busy_timeout_ms=self.busy_timeout_ms, migrate=False)

    def close(self) -> None:
        with self._lock:
            stores, self._all = self._all, []
        for s in stores:
            try:
                s.close()
            except Exception:  # noqa: BLE001 - a connection of a finished thread may already be gone
                pass


@dataclass
class Console:
    settings: Settings
    guard: Guard
    read_only: bool = False
    poll_s: float | None = None
    stores: Stores = field(init=False)
    feed: ChangeFeed = field(init=False)
    ledger: UsageLedger = field(init=False)
    verifier: reports.Verifier = field(init=False)
    env: Any = field(init=False)

    def __post_init__(self) -> None:
        self.stores = Stores(self.settings.resolved_database_url, self.settings.busy_timeout_ms)
        kw = {"interval": self.poll_s} if self.poll_s is not None else {}
        self.feed = ChangeFeed(self.stores.fresh, **kw)
        self.ledger = UsageLedger(self.settings.home)
        self.verifier = reports.Verifier(self.settings)
        self.env = environment()

    def evidence(self, store: Store) -> EvidenceStore:
        return EvidenceStore(store, self.settings.home)

    def gate(self) -> Any:
        """The policy as its files are now (an edit applies to the next approval; compiled policies are cached)."""
        from aictl.policy.gate import load_gate

        s = self.settings
        return load_gate(s.project_dir, state_dir=s.home) if s.project_dir else None

    # -- the views: name -> (fragment template, data from a store and the page's query) ----------------

    def data(self, view: str, query: dict[str, str]) -> dict[str, Any]:
        store = self.stores.get()
        if view == "queue":
            return views.queue(store)
        if view == "agents":
            return views.agents(store, self.ledger)
        if view == "approvals":
            return views.approvals(store, self.evidence(store))
        if view == "task":
            return task_page(store, self.evidence(store), _int(query.get("id")) or 0)
        if view == "audit":
            filters = {
                "task": _int(query.get("task")),
                "action": query.get("action") or None,
                "actor": query.get("actor") or None,
            }
            return reports.audit(store, self.verifier, filters=filters)
        if view == "usage":
            return {**reports.usage(store, self.ledger, self.gate()), "metric": _metric(query)}
        if view == "workflows":
            from aictl.workflows.engine import WorkflowEngine

            runs = WorkflowEngine(store, self.settings).runs(limit=WORKFLOW_RUNS_SHOWN)
            return {"runs": [r.model_dump() for r in runs]}
        raise NotFound(f"no view {view!r}")

    def fragment(self, view: str, query: dict[str, str], user: str) -> str:
        ctx = self.data(view, query)
        return self.env.get_template(f"_{view}.html").render(**ctx, **self.common(user, view, query))

    def page(self, view: str, query: dict[str, str], user: str, title: str) -> str:
        ctx = self.data(view, query)
        stream = "/events?" + urlencode({"view": view, **{k: v for k, v in query.items() if k != "msg"}})
        return self.env.get_template("page.html").render(
            **ctx, **self.common(user, view, query), title=title, stream=stream, message=query.get("msg")
        )

    def common(self, user: str, view: str, query: dict[str, str]) -> dict[str, Any]:
        return {"user": user, "csrf": self.guard.csrf, "read_only": self.read_only, "view": view, "query": query}


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _metric(query: dict[str, str]) -> str:
    return "tokens" if query.get("metric") == "tokens" else "cost"


PAGES = {
    "/": ("queue", "Queue"),
    "/agents": ("agents", "Agents"),
    "/approvals": ("approvals", "Approvals"),
    "/audit": ("audit", "Audit"),
    "/usage": ("usage", "Usage"),
    "/workflows": ("workflows", "Workflows"),
}
WORKFLOW_RUNS_SHOWN = 50  # the newest runs, each with its steps


def build_app(console: Console) -> Starlette:
    guard = console.guard

    async def in_thread(fn: Callable[[], Any]) -> Any:
        import anyio

        return await anyio.to_thread.run_sync(fn)

    def user_of(request: Request) -> str | None:
        return guard.user(request.headers.get("authorization"), request.cookies.get(COOKIE))

    async def render_page(request: Request, view: str, title: str, query: dict[str, str]) -> Response:
        user = request.state.user
        try:
            html = await in_thread(lambda: console.page(view, query, user, title))
        except NotFound as e:
            return HTMLResponse(f"<h1>not found</h1><p>{_esc(e.message)}</p>", status_code=404)
        return HTMLResponse(html)

    def page_route(path: str, view: str, title: str) -> Route:
        async def endpoint(request: Request) -> Response:
            return await render_page(request, view, title, dict(request.query_params))

        return Route(path, endpoint, name=view)

    async def task_route(request: Request) -> Response:
        tid = request.path_params["task_id"]
        return await render_page(request, "task", f"Task {tid}", {**request.query_params, "id": str(tid)})

    async def events(request: Request) -> Response:
        query = dict(request.query_params)
        view = query.pop("view", "queue")
        if view not in {v for v, _ in PAGES.values()} | {"task"}:
            return PlainTextResponse("unknown view", status_code=404)
        user = request.state.user

        async def stream() -> AsyncIterator[str]:
            sub = console.feed.subscribe()
            _, changed = sub
            last: str | None = None
            seen = -1
            try:
                yield "retry: 1000\n\n"
                while True:
                    try:
                        await asyncio.wait_for(changed.wait(), timeout=KEEPALIVE_S)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    changed.clear()
                    if console.feed.version == seen:
                        continue
                    seen = console.feed.version
                    try:
                        html = await in_thread(lambda: console.fragment(view, query, user))
                    except AictlError as e:
                        html = f'<p class="error">{_esc(e.message)}</p>'
                    if html != last:
                        last = html
                        yield "event: update\n" + "".join(f"data: {line}\n" for line in _LINES.split(html)) + "\n"
            finally:
                console.feed.unsubscribe(sub)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"cache-control": "no-store"})

    async def verdict(request: Request) -> Response:
        tid = request.path_params["task_id"]
        verb = request.path_params["verb"]
        if verb not in ("approve", "reject"):
            return PlainTextResponse("not found", status_code=404)
        form = await request.form()
        token = form.get("csrf")
        if not guard.csrf_ok(
            token if isinstance(token, str) else None, request.headers.get("origin"), request.headers.get("host")
        ):
            return PlainTextResponse("refused: missing or wrong CSRF token, or a cross-site request", status_code=403)
        comment = form.get("comment")
        comment = comment[:2000] if isinstance(comment, str) else ""
        back = form.get("back")
        back = back if isinstance(back, str) and back.startswith("/") and not back.startswith("//") else "/approvals"
        actor = request.state.user

        def run() -> str:
            from aictl.tasks.service import TaskService

            settings = copy.copy(console.settings)
            settings.actor = actor  # the PDR and the event name the console's user
            svc = TaskService(console.stores.get(), settings, policy=console.gate())
            (svc.approve if verb == "approve" else svc.reject)(tid, comment=comment)
            return f"task {tid}: {verb.rstrip('e')}ed by {actor}"

        try:
            message = await in_thread(run)
        except AictlError as e:  # policy refusal, not awaiting, unknown task: said on the page it came from
            message = f"refused: {e.message}"
        sep = "&" if "?" in back else "?"
        return RedirectResponse(f"{back}{sep}msg={quote(redact_text(message))}", status_code=303)

    async def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = await in_thread(lambda: generate_latest(console_registry))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def login(request: Request) -> Response:
        given = request.query_params.get("token", "")
        if guard.name_of(given) is None:
            return PlainTextResponse("wrong token", status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, given, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    from prometheus_client import CollectorRegistry

    console_registry = CollectorRegistry()
    console_registry.register(
        StoreCollector(lambda: contextlib.nullcontext(console.stores.get()), console.settings.home)
    )

    routes: list[BaseRoute] = [page_route(path, view, title) for path, (view, title) in PAGES.items()]
    routes += [
        Route("/tasks/{task_id:int}", task_route),
        Route("/events", events),
        Route("/metrics", metrics),
        Route("/login", login),
        Mount("/static", StaticFiles(directory=str(resources.files("aictl.console") / "static")), name="static"),
    ]
    if not console.read_only:
        routes.append(Route("/tasks/{task_id:int}/{verb:str}", verdict, methods=["POST"]))

    async def gatekeeper(request: Request, call_next: Callable[[Request], Any]) -> Response:
        if not guard.host_allowed(request.headers.get("host")):
            return PlainTextResponse("refused: unexpected Host header", status_code=421)
        if request.url.path == "/login":
            return await call_next(request)
        user = user_of(request)
        if user is None:
            return PlainTextResponse(
                "unauthorized: send Authorization: Bearer TOKEN, or open /login?token=TOKEN once",
                status_code=401,
                headers={"www-authenticate": "Bearer"},
            )
        request.state.user = user
        response: Response = await call_next(request)
        response.headers.setdefault("x-frame-options", "DENY")
        response.headers.setdefault("referrer-policy", "same-origin")  # no-referrer makes Origin "null"
        response.headers.setdefault(
            "content-security-policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"
        )
        return response

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            console.feed.stop()
            console.stores.close()

    return Starlette(
        routes=routes,
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=gatekeeper)],
        lifespan=lifespan,
        max_body_size=64 * 1024,  # a comment and a token; nothing bigger is ever posted
    )


def _esc(text: str) -> str:
    from html import escape

    return escape(redact_text(text))


__all__ = ["PAGES", "Console", "Stores", "build_app"]
