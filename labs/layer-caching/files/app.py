"""A small web app with one dependency, `greeting` (see requirements.txt).

    pip install --no-index --find-links=wheels -r requirements.txt
    python3 app.py        # then open http://localhost:8000/ and /health
"""

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import greeting

PORT = int(os.environ.get("PORT", "8000"))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            self.reply(200, "application/json", json.dumps({"status": "ok", "greeting": greeting.__version__}))
        elif self.path == "/":
            page = f"<!doctype html><meta charset='utf-8'><title>Layer caching</title><h1>{greeting.hello('layers')}</h1>"
            self.reply(200, "text/html; charset=utf-8", page)
        else:
            self.reply(404, "application/json", json.dumps({"error": "not found"}))

    def reply(self, status, content_type, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main():
    # Stop at once on `docker stop` (SIGTERM), which Python as a container's first process ignores.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    print(f"listening on http://0.0.0.0:{PORT}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
