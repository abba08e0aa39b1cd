"""A tiny web app that needs nothing but Python's standard library.

    python3 app.py        # then open http://localhost:8000/ and /health

It listens on port 8000 on every interface (0.0.0.0), which is what a container needs:
a server on 127.0.0.1 inside a container cannot be reached from outside it.
"""

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT", "8000"))

PAGE = """<!doctype html>
<html>
  <head><meta charset="utf-8"><title>Hello from a container</title></head>
  <body style="font-family: sans-serif; max-width: 36rem; margin: 3rem auto">
    <h1>Hello from a container</h1>
    <p>This page is served by <code>app.py</code>, running in the image you built.</p>
    <p>Health check: <a href="/health">/health</a></p>
  </body>
</html>
"""


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            self.reply(200, "application/json", json.dumps({"status": "ok"}))
        elif self.path == "/":
            self.reply(200, "text/html; charset=utf-8", PAGE)
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
    # `docker stop` sends SIGTERM; as the container's first process, Python would ignore it
    # (and Docker would wait 10 s before killing it), so stop at once instead.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    print(f"listening on http://0.0.0.0:{PORT}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
