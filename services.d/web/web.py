"""A stand-in front web server: proxies GET requests to the app and writes a newline on the
notification fd once it listens (s6 readiness)."""
import http.server
import os
import socketserver
import urllib.error
import urllib.request

APP = "http://127.0.0.1:%s" % os.environ["APP_PORT"]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            with urllib.request.urlopen(APP + self.path, timeout=2) as r:
                body, status = r.read(), r.status
        except urllib.error.HTTPError as e:
            body, status = e.read(), e.code
        except OSError as e:
            body, status = ("app unreachable: %s\n" % e).encode(), 502
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("web: " + fmt % args, flush=True)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    allow_reuse_address = True
    daemon_threads = True


server = Server((os.environ.get("WEB_ADDR", "127.0.0.1"), int(os.environ["WEB_PORT"])), Handler)
with os.fdopen(int(os.environ.get("NOTIFY_FD", "3")), "w") as notify:
    notify.write("\n")
server.serve_forever()
