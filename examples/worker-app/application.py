#!/usr/bin/env python3
"""Sample worker app for hostmanager's worker tier (Python standard library only).

A worker app is a plain HTTP app: the agent's SQS daemon POSTs each queue message to it
through nginx (aws:elasticbeanstalk:sqsd HttpPath, "/" by default) and deletes the message
when the answer is exactly 200. Periodic tasks from cron.yaml arrive the same way at their
url, with an empty body and the X-Aws-Sqsd-Taskname header.

POST <any path>  -> records the request (one JSON line in $WORKER_RECORDS, default
                    ./received.jsonl) and answers 200, unless the JSON body asks otherwise:
                      {"status": 500, "until_receive": 3}  answer 500 while the receive count
                                                           is below 3 (always without it)
                      {"sleep": 5, "until_receive": 2}     answer after 5 s, the same way
GET /health      -> 200 "ok"
GET /            -> what this app is

Only requests from the daemon are taken: User-Agent starting with aws-sqsd/ from 127.0.0.1,
as aws-sdk-rails' middleware checks (403 otherwise).
"""
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def read_version():
    try:
        with open("VERSION", encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return os.environ.get("APP_VERSION", "v1")


VERSION = read_version()
RECORDS = os.environ.get("WORKER_RECORDS", "received.jsonl")
LOCK = threading.Lock()
ACTIVE = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self):
        if self.path.split("?", 1)[0] == "/health":
            self.answer(200, "ok\n")
        else:
            self.answer(200, f"hostmanager sample worker {VERSION}: POST messages here\n")

    def do_POST(self):
        global ACTIVE
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode("utf-8", "replace")
        if not self.headers.get("User-Agent", "").startswith("aws-sqsd/") or self.client_address[0] != "127.0.0.1":
            self.answer(403, "only the worker daemon posts here\n")
            return
        with LOCK:
            ACTIVE += 1
            concurrent = ACTIVE
        try:
            status, sleep = self.decide(body)
            if sleep:
                time.sleep(sleep)
            record = {
                "at": time.time(),
                "version": VERSION,
                "pid": os.getpid(),
                "path": self.path,
                "status": status,
                "concurrent": concurrent,
                "body": body,
                "headers": {k: v for k, v in self.headers.items()},
            }
            with LOCK:
                with open(RECORDS, "a", encoding="utf-8") as out:
                    out.write(json.dumps(record) + "\n")
            self.answer(status, f"{status} from {VERSION}\n")
        finally:
            with LOCK:
                ACTIVE -= 1

    def decide(self, body):
        try:
            job = json.loads(body) if body.startswith("{") else {}
        except ValueError:
            job = {}
        receive = int(self.headers.get("X-Aws-Sqsd-Receive-Count", "1"))
        until = job.get("until_receive")
        applies = until is None or receive < int(until)
        status = int(job.get("status", 200)) if applies else 200
        sleep = float(job.get("sleep", 0)) if applies else 0
        return status, sleep

    def answer(self, code, text):
        self.send_response(code)
        if code in (204, 304):
            # No body, and no Content-Length, for these (RFC 9110).
            self.end_headers()
            return
        data = text.encode()
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        pass


def main():
    port = int(os.environ.get("PORT", "5000"))
    # socketserver's listen backlog is 5: the daemon's connections arrive together.
    ThreadingHTTPServer.request_queue_size = 128
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"sample worker {VERSION} listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
