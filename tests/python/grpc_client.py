"""A gRPC client of Shoal that is not Rust and has no copy of its .proto:
Python grpcio discovers the service through server reflection, builds the
messages from the descriptors it is sent, submits SHA-256 tasks (twice with
one request_id: one job), pages through the job list, reads the results and
checks every digest with Python's own hashlib, and reads the google.rpc
details of a refused call.

usage: grpc_client.py HOST:PORT
Prints one JSON line with what it saw; exits non-zero on any mismatch.
"""
import hashlib
import json
import os
import sys
import time

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from grpc_status import rpc_status

address = sys.argv[1]
channel = grpc.insecure_channel(address)
reflection = ProtoReflectionDescriptorDatabase(channel)
services = reflection.get_services()
SERVICE = "shoal.v1.ShoalService"
if SERVICE not in services:
    sys.exit(f"reflection lists {services}, not {SERVICE}")
pool = descriptor_pool.DescriptorPool(reflection)
service = pool.FindServiceByName(SERVICE)


def message(name):
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"shoal.v1.{name}"))


def call(method_name):
    """A callable for one RPC, its kind and types from the descriptor."""
    m = service.FindMethodByName(method_name)
    path = f"/{SERVICE}/{method_name}"
    out = message_factory.GetMessageClass(m.output_type)
    ser, de = (lambda r: r.SerializeToString()), out.FromString
    if m.client_streaming:
        return channel.stream_unary(path, request_serializer=ser, response_deserializer=de)
    if m.server_streaming:
        return channel.unary_stream(path, request_serializer=ser, response_deserializer=de)
    return channel.unary_unary(path, request_serializer=ser, response_deserializer=de)


SubmitJobRequest, JobHeader, Task = message("SubmitJobRequest"), message("JobHeader"), message("Task")
Kernel, Sha256Kernel = message("Kernel"), message("Sha256Kernel")
COUNT, LEN, TASKS = 4, 48, 10
inputs = [os.urandom(COUNT * LEN) for _ in range(TASKS)]


def requests():
    yield SubmitJobRequest(header=JobHeader(redundancy=2, name="from python", request_id="python-1"))
    for data in inputs:
        kernel = Kernel(sha256=Sha256Kernel(count=COUNT, message_len=LEN))
        yield SubmitJobRequest(task=Task(kernel=kernel, inputs=[data]))


submit = call("SubmitJob")
first = submit(requests())
retried = submit(requests())
if retried.job_id != first.job_id or not retried.replayed:
    sys.exit(f"a retried request made another job: {first} {retried}")
job = first.job_id

deadline = time.time() + 60
while True:
    status = call("GetJob")(message("GetJobRequest")(job_id=job)).job
    if status.finished:
        break
    if time.time() > deadline:
        sys.exit(f"job did not finish: {status}")
    time.sleep(0.1)

VERIFIED = pool.FindEnumTypeByName("shoal.v1.TaskState").values_by_name["TASK_STATE_VERIFIED"].number
checked = 0
for reply in call("StreamJobResults")(message("StreamJobResultsRequest")(job_id=job)):
    outcome = reply.outcome
    data = inputs[outcome.index]
    want = b"".join(hashlib.sha256(data[i * LEN:(i + 1) * LEN]).digest() for i in range(COUNT))
    if outcome.state != VERIFIED or list(outcome.outputs) != [want]:
        sys.exit(f"task {outcome.index}: {outcome}")
    checked += 1

# Jobs page by page: one per page, every one once.
listed, token = [], ""
while True:
    page = call("ListJobs")(message("ListJobsRequest")(page_size=1, page_token=token))
    listed += [j.job_id for j in page.jobs]
    token = page.next_page_token
    if not token:
        break

# A bad request gets a clear error with the field it is about, not a hang.
try:
    call("GetJob")(message("GetJobRequest")(job_id="not-a-job"))
    sys.exit("a malformed job id was accepted")
except grpc.RpcError as e:
    bad_request = e.code().name
    violations = []
    for detail in rpc_status.from_call(e).details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            violations += [v.field for v in br.field_violations]

workers = call("ListWorkers")(message("ListWorkersRequest")()).workers
print(json.dumps({"job": job, "verified": status.verified, "checked": checked, "listed": listed,
                  "bad_request": bad_request, "violations": violations, "workers": len(workers)}))
