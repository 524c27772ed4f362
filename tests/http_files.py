"""A local HTTP file server on 127.0.0.1 for download tests (never the real network)."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer(ThreadingHTTPServer):
    """Serves ``files[path]``; honours Range unless told not to; can cut one response short."""

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _FileHandler)
        self.files = files
        self.honour_range = True
        self.cut_after: int | None = None  # send only this many body bytes, once
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{path}"

    @property
    def ranges(self) -> list[str | None]:
        """The Range header of each request, in order."""
        return [requested for _, requested in self.requests]


class _FileHandler(BaseHTTPRequestHandler):
    server: FileServer

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        path, requested = self.path.lstrip("/"), self.headers.get("Range")
        self.server.requests.append((path, requested))
        if path not in self.server.files:
            self.send_error(404)
            return
        payload, start = self.server.files[path], 0
        if requested and self.server.honour_range:
            start = int(requested.removeprefix("bytes=").split("-")[0])
            if start >= len(payload):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(payload)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        else:
            self.send_response(200)
        body = payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.cut_after is not None:
            body, self.server.cut_after = body[: self.server.cut_after], None
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass
