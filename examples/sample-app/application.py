#!/usr/bin/env python3
"""Sample web app for hostmanager (Python standard library only).

GET /            -> "Hello from <version>" (version from the VERSION file or APP_VERSION)
GET /health      -> 200 "ok" (the health check path of examples/local/agent.toml), or the
                    status in the HEALTH_STATUS environment property
GET /status/NNN  -> answers with HTTP status NNN (to exercise request statistics)
GET /env/NAME    -> the value of environment variable NAME (to check properties reach the app)
GET /sleep/MS    -> answers after MS milliseconds (slow requests, drain tests)
"""
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def read_version():
    try:
        with open("VERSION", encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return os.environ.get("APP_VERSION", "v1")


VERSION = read_version()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are written separately: with Nagle's algorithm the body waits for the
    # client's delayed ACK (40 ms) on a keep-alive connection.
    disable_nagle_algorithm = True

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/health":
            code = int(os.environ.get("HEALTH_STATUS", "200"))
            self.answer(code, "ok\n" if code == 200 else f"unhealthy ({code})\n")
        elif path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            self.answer(code, f"status {code} from {VERSION}\n")
        elif path.startswith("/env/"):
            self.answer(200, os.environ.get(path[len("/env/"):], "") + "\n")
        elif path.startswith("/sleep/"):
            time.sleep(int(path.rsplit("/", 1)[1]) / 1000)
            self.answer(200, f"slept in {VERSION}\n")
        else:
            self.answer(200, f"Hello from {VERSION}\n")

    def answer(self, code, text):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App-Version", VERSION)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        # A log that cannot be written (a full disk) must not fail the request, as with
        # Python's logging module: the line is dropped.
        try:
            sys.stdout.write("%s %s\n" % (self.address_string(), fmt % args))
            sys.stdout.flush()
        except OSError:
            pass


def main():
    port = int(os.environ.get("PORT", "5000"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    # SIGTERM: stop accepting, let in-flight requests finish, exit 0.
    signal.signal(signal.SIGTERM, lambda *_: (server.shutdown_request_flag(), None))
    print(f"sample app {VERSION} listening on 127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def _request_shutdown(self):
    import threading
    threading.Thread(target=self.shutdown, daemon=True).start()


ThreadingHTTPServer.shutdown_request_flag = _request_shutdown

if __name__ == "__main__":
    main()
