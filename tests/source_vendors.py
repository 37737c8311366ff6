"""Local stand-ins for the vendors' HTTP services, on 127.0.0.1 (their clouds cannot be reached
from the tests). Each serves the documented shape: FRED's ``/graph/fredgraph.csv?id=SERIES``
(``observation_date,SERIES``, ``.`` for a missing day, honouring ``cosd``) and Stooq's
``/q/d/l/?s=ID&i=d`` (``Date,Open,High,Low,Close,Volume``, ``No data`` for an unknown id)."""

from __future__ import annotations

import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class VendorHTTP:
    """``series[id] = [(YYYY-MM-DD, value text), ...]``; ``fail[id] = [status, ...]`` answers the
    next requests for ``id`` with those statuses first; ``requests`` logs (path, query)."""

    def __init__(self) -> None:
        self.series: dict[str, list[tuple[str, str]]] = {}
        self.fail: dict[str, list[int]] = {}
        self.requests: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.served = threading.Condition(self.lock)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):
                u = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(u.query).items()}
                with outer.served:  # logged before answering: a client that got its answer finds it here
                    outer.requests.append((u.path, q))
                    outer.served.notify_all()
                status, body = outer._answer(u.path, q)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/csv")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _answer(self, path: str, q: dict) -> tuple[int, str]:
        with self.lock:
            if path == "/graph/fredgraph.csv":
                sid, since, header = q.get("id", ""), q.get("cosd"), "observation_date,{sid}"
            elif path == "/q/d/l/":
                sid, since, header = q.get("s", ""), q.get("d1"), "Date,Open,High,Low,Close,Volume"
                if since:
                    since = f"{since[:4]}-{since[4:6]}-{since[6:]}"
            else:
                return 404, "not found"
            fails = self.fail.get(sid)
            if fails:
                return fails.pop(0), "<html>error</html>"
            if sid not in self.series:
                return (404, "Series not found") if path.startswith("/graph") else (200, "No data")
            rows = [r for r in self.series[sid] if since is None or r[0] >= since]
            if path.startswith("/graph"):
                lines = [header.format(sid=sid)] + [f"{d},{v}" for d, v in rows]
            else:
                lines = [header] + [f"{d},{v},{v},{v},{v},1000" for d, v in rows]
            return 200, "\n".join(lines) + "\n"

    def wait_requests(self, n: int, timeout: float = 60) -> None:
        with self.served:
            if not self.served.wait_for(lambda: len(self.requests) >= n, timeout):
                raise TimeoutError(f"{len(self.requests)} requests served, waited for {n}")

    def __enter__(self) -> "VendorHTTP":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def weekdays(start: date, n: int) -> list[date]:
    from datetime import timedelta

    out, d = [], start
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d)
        d += timedelta(days=1)
    return out
