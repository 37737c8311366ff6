"""The web role's silence API, mounted on its ops server beside the page:

=================================  ================================================  =========
request                            answer                                            token
=================================  ================================================  =========
``GET /api/silences``              ``{"silences": [silence + "state", ...]}``        required*
``GET /api/scenarios``             ``{"scenarios": [{"id", "title", "muted"}]}``     required*
``POST /api/silences?...``         201 ``{"silence": ...}``: a new silence           required
``DELETE /api/silences/ID``        200 ``{"silence": ...}``: it, expired now         required
=================================  ================================================  =========

(*) reads follow the page's rule: the token is required when one is configured. Writes need one
configured: without ``RATIOWATCH_TOKEN`` the write API is off (403 saying so), since anyone who
reaches a loopback port could otherwise mute the desk's alerts.

The POST fields are the command's, as query parameters: ``scenario`` (repeat it, or
comma-separate) or ``all=true``, ``for`` or ``until``, ``comment``, ``author``. They are not a
JSON body because the ops server is ``websockets``', whose HTTP parser refuses any request body
before a handler runs. Bad fields get 400 with the reason, exactly the command's, and write nothing.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from websockets.http11 import Request, Response

from ratiowatch.notifiers.silences import Silence, SilenceError, SilenceSet, expire, new_silence, state
from ratiowatch.streams.live_http import authorized, response, same_origin, unauthorized_response

__all__ = ["SilenceApi", "mute_json"]

_SILENCES, _SCENARIOS, _ONE = "/api/silences", "/api/scenarios", "/api/silences/"
_FIELDS = {"scenario", "all", "for", "until", "comment", "author"}


def mute_json(s: Silence | None) -> dict[str, Any] | None:
    """What a status (and the page) shows of the silence muting a scenario."""
    if s is None:
        return None
    return {"until": s.as_json()["ends_at"], "silence": s.id, "comment": s.comment, "author": s.author}


def _json(status: int, obj: Any) -> Response:
    return response(status, orjson.dumps(obj), "application/json")


def _error(status: int, why: str, extra: list[tuple[str, str]] | None = None) -> Response:
    return response(status, orjson.dumps({"error": why}), "application/json", extra or [])


class SilenceApi:
    """``scenarios()``: (id, title) of the scenarios a silence may name; ``write(silence)``: puts it
    on the topic (and in ``silences``) once the cluster acknowledged it."""

    def __init__(self, silences: SilenceSet, scenarios: Callable[[], list[tuple[str, str]]],
                 write: Callable[[Silence], Awaitable[None]], now: Callable[[], datetime] | None = None) -> None:
        self.silences, self.scenarios, self.write = silences, scenarios, write
        self.now = now or (lambda: datetime.now(timezone.utc))

    @staticmethod
    def handles(path: str) -> bool:
        return path in (_SILENCES, _SCENARIOS) or path.startswith(_ONE)

    async def request(self, req: Request, token: str | None) -> Response:
        url = urlsplit(req.path)
        path, method = url.path, req.method
        allowed = ("GET", "HEAD", "POST") if path == _SILENCES else ("GET", "HEAD", "DELETE") \
            if path.startswith(_ONE) else ("GET", "HEAD")
        if not same_origin(req):
            return _error(403, "cross-origin requests are refused")
        if method not in allowed:
            return _error(405, f"{method} is not allowed on {path}", [("Allow", ", ".join(allowed))])
        writes = method in ("POST", "DELETE")
        if writes and token is None:
            return _error(403, "the silence write API is off: this web role has no token "
                               "(set RATIOWATCH_TOKEN to turn it on; writes then need it)")
        if not authorized(req, token):
            return unauthorized_response()
        now = self.now()
        if path == _SCENARIOS:
            return _json(200, {"scenarios": [{"id": sid, "title": title,
                                              "muted": mute_json(self.silences.muting(sid, now))}
                                             for sid, title in self.scenarios()]})
        if path == _SILENCES and method == "POST":
            return await self._add(url.query, now)
        if path == _SILENCES:
            return _json(200, {"silences": [{**s.as_json(), "state": state(s, now)} for s in self.silences.all()]})
        sid = unquote(path[len(_ONE):])
        s = self.silences.get(sid)
        if s is None:
            return _error(404, f"no silence {sid!r}")
        if method != "DELETE":
            return _json(200, {**s.as_json(), "state": state(s, now)})
        try:
            ended = expire(s, now)
        except SilenceError as e:
            return _error(409, str(e))
        await self.write(ended)
        return _json(200, {"silence": {**ended.as_json(), "state": state(ended, now)}})

    async def _add(self, query: str, now: datetime) -> Response:
        q = parse_qs(query, keep_blank_values=True)
        unknown = sorted(set(q) - _FIELDS)
        if unknown:
            return _error(400, f"unknown field {', '.join(unknown)} (fields: {', '.join(sorted(_FIELDS))})")
        one = {k: v[-1] for k, v in q.items()}
        flag = one.get("all", "false").lower()
        if flag not in ("true", "false", "1", "0"):
            return _error(400, f"all must be true or false, got {one['all']!r}")
        ids = [x for v in q.get("scenario", []) for x in v.split(",") if x.strip()]
        try:
            s = new_silence(ids, all_scenarios=flag in ("true", "1"), duration=one.get("for"),
                            until=one.get("until"), comment=one.get("comment", ""),
                            author=one.get("author", "web api"), now=now,
                            known=[sid for sid, _ in self.scenarios()])
        except SilenceError as e:
            return _error(400, str(e))
        await self.write(s)
        return _json(201, {"silence": {**s.as_json(), "state": state(s, now)}})
