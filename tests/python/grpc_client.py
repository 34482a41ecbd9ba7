"""A gRPC client of Shoal that is not Rust: Python grpcio stubs generated
from the same shoal.proto. Submits SHA-256 tasks, waits for them, reads the
results and checks every digest with Python's own hashlib.

usage: grpc_client.py PROTO_DIR HOST:PORT
Prints one JSON line with what it saw; exits non-zero on any mismatch.
"""
import hashlib
import json
import os
import sys
import tempfile
import time

import grpc
from grpc_tools import protoc

proto_dir, address = sys.argv[1], sys.argv[2]
out = tempfile.mkdtemp()
rc = protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}",
                  os.path.join(proto_dir, "shoal.proto")])
if rc != 0:
    sys.exit(f"protoc failed: {rc}")
sys.path.insert(0, out)
import shoal_pb2 as pb  # noqa: E402
import shoal_pb2_grpc as rpc  # noqa: E402

stub = rpc.ShoalStub(grpc.insecure_channel(address))
COUNT, LEN, TASKS = 4, 48, 10
inputs = [os.urandom(COUNT * LEN) for _ in range(TASKS)]


def requests():
    yield pb.SubmitJobRequest(header=pb.JobHeader(redundancy=2, name="from python"))
    for data in inputs:
        kernel = pb.Kernel(sha256=pb.Sha256Kernel(count=COUNT, message_len=LEN))
        yield pb.SubmitJobRequest(task=pb.Task(kernel=kernel, inputs=[data]))


job = stub.SubmitJob(requests()).job_id
deadline = time.time() + 60
while True:
    status = stub.GetJob(pb.JobRef(job_id=job))
    if status.finished:
        break
    if time.time() > deadline:
        sys.exit(f"job did not finish: {status}")
    time.sleep(0.1)

checked = 0
for outcome in stub.StreamJobResults(pb.StreamJobResultsRequest(job_id=job)):
    data = inputs[outcome.index]
    want = b"".join(hashlib.sha256(data[i * LEN:(i + 1) * LEN]).digest() for i in range(COUNT))
    if outcome.kind != pb.TaskOutcome.VERIFIED or list(outcome.outputs) != [want]:
        sys.exit(f"task {outcome.index}: {outcome}")
    checked += 1

# A bad request gets a clear error, not a hang.
try:
    stub.GetJob(pb.JobRef(job_id="not-a-job"))
    sys.exit("a malformed job id was accepted")
except grpc.RpcError as e:
    bad_request = e.code().name

workers = stub.ListWorkers(pb.Empty()).workers
print(json.dumps({"job": job, "verified": status.verified, "checked": checked,
                  "bad_request": bad_request, "workers": len(workers)}))
