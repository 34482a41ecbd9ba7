"""A Pilot task-submission client written from the seed's description of
the wire (BEHAVIOUR.md §2.3), with nothing but Python's standard library:
one frame per connection, [u32 BE type][u32 BE length][UTF-8 JSON];
SUBMIT = 1, STATUS_UPDATE = 3, SEND_RESULTS = 4. It listens for the
coordinator's callbacks on its own address, submits Shoal jobs as
task descriptions, and checks every SHA-256 digest it is sent back with
hashlib.

usage: pilot_client.py HOST:PORT
Prints one JSON line with what it saw; exits non-zero on any mismatch.
"""
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
import uuid

SUBMIT, STATUS_UPDATE, SEND_RESULTS = 1, 3, 4
host, port = sys.argv[1].rsplit(":", 1)
PILOT = (host, int(port))


def read_exact(conn, n):
    data = b""
    while len(data) < n:
        try:
            chunk = conn.recv(n - len(data))
        except ConnectionResetError:  # closed with our bytes unread
            return None
        if not chunk:
            return None
        data += chunk
    return data


def read_frame(conn):
    header = read_exact(conn, 8)
    if header is None:
        return None
    kind, length = struct.unpack(">II", header)
    return kind, json.loads(read_exact(conn, length))


def frame(kind, obj):
    payload = json.dumps(obj, separators=(",", ":")).encode()
    return struct.pack(">II", kind, len(payload)) + payload


# The submitter's daemon: every frame delivered to it, by task id.
received = {}
lock = threading.Condition()
callbacks = socket.socket()
callbacks.bind(("127.0.0.1", 0))
callbacks.listen(16)
FROM = "127.0.0.1:%d" % callbacks.getsockname()[1]


def serve_callbacks():
    while True:
        conn, _ = callbacks.accept()
        with conn:
            while True:
                f = read_frame(conn)
                if f is None:
                    break
                with lock:
                    received.setdefault(f[1]["task_id"], []).append(f)
                    lock.notify_all()


threading.Thread(target=serve_callbacks, daemon=True).start()


def submit(description, from_addr=FROM, kind=SUBMIT, task_id=None):
    task_id = task_id or str(uuid.uuid4())
    request = {"task_id": task_id, "task_description": description, "from_addr": from_addr, "to_addr": sys.argv[1]}
    with socket.create_connection(PILOT, timeout=10) as conn:
        conn.sendall(frame(kind, request))
        answer = read_frame(conn)
    return task_id, answer


def wait_for(task_id, status, timeout=60):
    """Waits until a STATUS_UPDATE with `status` arrived for the task."""
    deadline = time.time() + timeout
    with lock:
        while True:
            seen = [f[1].get("status") for f in received.get(task_id, []) if f[0] == STATUS_UPDATE]
            if status in seen:
                return seen
            left = deadline - time.time()
            if left <= 0:
                sys.exit(f"task {task_id}: no {status} in {timeout} s (saw {seen})")
            lock.wait(left)


def fail(why):
    sys.exit(why)


report = {}

# 1. A job no worker may run (tier 3): accepted, then expired in the queue.
desc = json.dumps({"kernel": {"Sha256": {"count": 1, "message_len": 8}}, "seeded": 1, "min_tier": 3})
tid, (kind, answer) = submit(desc)
if (kind, answer["status"], answer["message"], answer["task_id"]) != (SUBMIT, 200, "Task received with status NEW", tid):
    fail(f"submit answered {kind} {answer}")
report["expired_statuses"] = wait_for(tid, "EXPIRED")

# 2. Refusals, each a 400 with its reason.
_, (_, answer) = submit("please run my script")
report["bad_description"] = [answer["status"], answer["message"]]
_, (_, answer) = submit(desc, from_addr="10.1.2.3:9")
report["bad_from_addr"] = [answer["status"], answer["message"]]

_, (_, answer) = submit(desc, task_id="../../etc/passwd")
report["bad_task_id"] = answer["status"]
_, (_, answer) = submit(desc, task_id=tid)
report["duplicate"] = [answer["status"], answer["message"]]

# 3. A frame other than SUBMIT, or one declared over 16 MiB: the connection
# closes without an answer.
report["status_frame_answered"] = submit(desc, kind=STATUS_UPDATE)[1] is not None
with socket.create_connection(PILOT, timeout=10) as conn:
    conn.sendall(struct.pack(">II", SUBMIT, (1 << 24) + 1) + b"{")
    report["huge_frame_answered"] = read_frame(conn) is not None

# 4. SHA-256 of three tasks of two 8-byte messages each: results checked here.
COUNT, LEN = 2, 8
tasks = [os.urandom(COUNT * LEN) for _ in range(3)]
desc = json.dumps({
    "name": "from python",
    "kernel": {"Sha256": {"count": COUNT, "message_len": LEN}},
    "inputs": [[base64.b64encode(t).decode()] for t in tasks],
    "redundancy": 2,
})
tid, (_, answer) = submit(desc)
if answer["status"] != 200:
    fail(f"the SHA-256 job was refused: {answer}")
report["statuses"] = wait_for(tid, "SUCCEEDED")
results = [f[1] for f in received[tid] if f[0] == SEND_RESULTS]
if len(results) != 1:
    fail(f"{len(results)} SEND_RESULTS frames")
r = results[0]
report["result"] = {k: r.get(k) for k in ("result_type", "filename")}
report["has_times"] = all(isinstance(r.get(k, 0), int) for k in ("time_idle_ms", "time_staged_ms", "time_cpu_ms"))
checked = 0
for line, data in zip(base64.b64decode(r["file_data"]).decode().splitlines(), tasks):
    row = json.loads(line)
    want = b"".join(hashlib.sha256(data[i * LEN:(i + 1) * LEN]).digest() for i in range(COUNT))
    if row["state"] != "verified" or base64.b64decode(row["outputs"][0]) != want:
        fail(f"task {row['index']}: {row}")
    checked += 1
report["checked"] = checked

# 5. The registry moved (submitter -1, receiver +reward): the gate now refuses.
_, (_, answer) = submit(desc)
report["after_completion"] = [answer["status"], answer["message"]]
print(json.dumps(report))
