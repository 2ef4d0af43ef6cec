#!/usr/bin/env python3
"""The minimal peer of benches/worker.sh, and the SQS helpers that bench needs.

`peer` is what a worker host could run instead of hostmanager's daemon: N threads (as many as
the agent's http_connections), each a loop of ReceiveMessage (up to 10, long polling 20 s and
with the visibility timeout of the daemon), one POST per message to the app over its own
keep-alive connection (through the same nginx the daemon posts through) and one
DeleteMessageBatch for the 200s. It asks SQS for
the same attributes the daemon asks for (the daemon needs them for its X-Aws-Sqsd-* headers),
so both put the same work on moto. Nothing else: no retries, no visibility changes.

The other commands prepare and watch the queues (boto3 against moto_server on loopback):
  create NAME                      create a standard queue, print its URL
  fill URL COUNT                   COUNT small messages, 10 per SendMessageBatch
  trickle URL RATE SECONDS         RATE messages a second whose body is {"t": send time}
  drained URL                      poll every 100 ms until nothing is waiting or in flight,
                                   print the time.time() it saw that
  peer URL APP_URL CONNECTIONS COUNT   run the peer until COUNT messages were answered 200

AWS_ENDPOINT_URL (moto), region and credentials come from the environment.
"""
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

import boto3


def sqs():
    # One client per thread: boto3 clients are thread-safe, but a shared one shares its
    # connection pool (10 by default), which would cap the peer's concurrency.
    return boto3.client(
        "sqs",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
    )


def create(name):
    print(sqs().create_queue(QueueName=name)["QueueUrl"])


def fill(url, count):
    client = sqs()
    for start in range(0, count, 10):
        entries = [
            {"Id": str(n), "MessageBody": json.dumps({"job": n})}
            for n in range(start, min(start + 10, count))
        ]
        failed = client.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")
        if failed:
            sys.exit(f"fill: SendMessageBatch failed: {failed}")


def trickle(url, rate, seconds):
    # On an absolute schedule, so a slow send does not lower the rate for the rest.
    client = sqs()
    total = int(rate * seconds)
    begin = time.monotonic()
    for n in range(total):
        delay = begin + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        client.send_message(QueueUrl=url, MessageBody=json.dumps({"t": time.time(), "n": n}))
    print(total)


def drained(url, timeout=600):
    client = sqs()
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        if sum(int(attributes.get(name, "0")) for name in names) == 0:
            print(f"{time.time():.6f}")
            return
        time.sleep(0.1)
    sys.exit(f"drained: {url} still has messages after {timeout} s")


def peer(url, app_url, connections, count):
    target = urllib.parse.urlsplit(app_url)
    done = threading.Event()
    lock = threading.Lock()
    answered = [0]
    errors = []
    # PEER_READY: a file written once every thread has issued its first receive, so the
    # latency trickle starts against polling consumers, as it does against the daemon.
    ready_file = os.environ.get("PEER_READY")
    polling = [0]

    def loop():
        client = sqs()
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        first = True
        while not done.is_set():
            try:
                if first:
                    first = False
                    with lock:
                        polling[0] += 1
                        if ready_file and polling[0] == connections:
                            with open(ready_file, "w", encoding="utf-8") as out:
                                out.write("ready\n")
                messages = client.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=20,
                    # The daemon's default visibility_timeout: a slow moto must not make the
                    # peer's messages come back (and run twice) when the daemon's would not.
                    VisibilityTimeout=300,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
                ok = []
                for message in messages:
                    conn.request(
                        "POST",
                        target.path or "/",
                        body=message["Body"].encode(),
                        headers={
                            "Content-Type": "application/json",
                            "User-Agent": "aws-sqsd-peer/1",
                            "X-Aws-Sqsd-Msgid": message["MessageId"],
                        },
                    )
                    response = conn.getresponse()
                    response.read()
                    if response.status == 200:
                        ok.append(message)
                if ok:
                    client.delete_message_batch(
                        QueueUrl=url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                            for i, m in enumerate(ok)
                        ],
                    )
                    with lock:
                        answered[0] += len(ok)
                        if answered[0] >= count:
                            done.set()
            except Exception as error:  # a bench must end, not hang on one broken thread
                errors.append(repr(error))
                done.set()

    # Daemon threads: once COUNT are done, the others may sit in a 20 s long poll; the
    # process exits without waiting for them (they hold no message by then).
    for _ in range(connections):
        threading.Thread(target=loop, daemon=True).start()
    done.wait()
    if errors:
        sys.exit(f"peer: {errors[0]}")


def main(argv):
    command, args = argv[0], argv[1:]
    if command == "create":
        create(args[0])
    elif command == "fill":
        fill(args[0], int(args[1]))
    elif command == "trickle":
        trickle(args[0], float(args[1]), float(args[2]))
    elif command == "drained":
        drained(args[0])
    elif command == "peer":
        peer(args[0], args[1], int(args[2]), int(args[3]))
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
