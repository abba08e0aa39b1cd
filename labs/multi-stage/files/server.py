"""Serves the assets build.py made in dist/, and GET /health.

    python3 build.py && python3 server.py     # then open http://localhost:8000/

It needs dist/ next to it (or where DIST_DIR says), and nothing else of the build.
"""

import json
import mimetypes
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PORT = int(os.environ.get("PORT", "8000"))
DIST = Path(os.environ.get("DIST_DIR", Path(__file__).resolve().parent / "dist"))


def load_manifest():
    try:
        return json.loads((DIST / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        manifest = load_manifest()
        if self.path == "/health":
            if manifest is None:
                body = {"status": "error", "error": f"no built assets: {DIST}/manifest.json is missing"}
                self.reply(503, "application/json", json.dumps(body).encode())
            else:
                self.reply(200, "application/json", json.dumps({"status": "ok", "assets": len(manifest)}).encode())
            return
        if manifest is None:
            self.reply(503, "text/plain; charset=utf-8", f"dist/ is missing: looked in {DIST}\n".encode())
            return
        name = "index.html" if self.path == "/" else self.path.lstrip("/")
        served = set(manifest.values())
        if name not in served:
            self.reply(404, "text/plain; charset=utf-8", b"not found\n")
            return
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self.reply(200, kind, (DIST / name).read_bytes())

    def reply(self, status, content_type, data):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main():
    # Stop at once on `docker stop` (SIGTERM), which Python as a container's first process ignores.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if load_manifest() is None:
        print(f"warning: {DIST}/manifest.json is missing; run build.py first", file=sys.stderr)
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    print(f"serving {DIST} on http://0.0.0.0:{PORT}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
