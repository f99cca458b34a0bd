"""A stand-in application server for the examples: GET /app/ping answers a fixed body."""
import http.server
import os
import socketserver

BODY = os.environ.get("APP_BODY", "pong from " + os.environ.get("VACATAIRE_NODE", "?") + "\n").encode()
# With APP_BODY_FILE, the body is read on every request: a test or a demo can break the app.
BODY_FILE = os.environ.get("APP_BODY_FILE")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/app/ping":
            self.send_error(404)
            return
        body = BODY
        if BODY_FILE and os.path.exists(BODY_FILE):
            with open(BODY_FILE, "rb") as f:
                body = f.read()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    allow_reuse_address = True
    daemon_threads = True


Server((os.environ.get("APP_ADDR", "127.0.0.1"), int(os.environ["APP_PORT"])), Handler).serve_forever()
