"""Shoal's peers, measured on this machine the way `shoal bench` measures Shoal.

`cargo xtask bench --peers` runs this once per (system, workload) in a
virtual environment made from `requirements.txt`, and reads the one JSON
line it prints. Each workload is the honest equivalent of Shoal's:

- tiny:     N SHA-256s of distinct 64-byte inputs, one task each; every
            result checked against hashlib here. Tasks/s end to end.
- verified: the same, each task run by two distinct workers (Ray: two
            actors; Dask: two workers by restriction) and accepted only
            when both answers agree (and match hashlib). Tasks/s.
- payload:  N distinct 1 MiB inputs (4096x64 float32), each multiplied by a
            64x1 matrix on two distinct workers and the two answers
            compared. MB/s of inputs delivered to workers (2 x N MiB).
- latency:  submit-to-result round trips of one tiny task (and of one
            two-way verified task) on an idle cluster, then while a client
            keeps it busy with tiny tasks: p50 and p99 in microseconds.

Usage: peers.py SYSTEM WORKLOAD [N]   (SYSTEM: ray, dask)
"""

import hashlib
import json
import os
import sys
import threading
import time

import numpy as np

CORES = os.cpu_count() or 1


def sha(b):
    return hashlib.sha256(b).digest()


def matmul(a, b):
    return a @ b


def tiny_inputs(n, salt=0):
    return [hashlib.blake2b(f"{salt}:{i}".encode(), digest_size=32).digest() * 2 for i in range(n)]


def percentile(sorted_us, p):
    if not sorted_us:
        return 0.0
    i = min(len(sorted_us) - 1, max(0, int(round(p / 100.0 * (len(sorted_us) - 1)))))
    return sorted_us[i]


class Ray:
    """Ray on this machine: one node, a worker process per core."""

    def __init__(self):
        import ray

        self.ray = ray
        ray.init(num_cpus=CORES, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        self.task = ray.remote(sha)
        self.mm = ray.remote(matmul)

        @ray.remote
        class Replica:
            def sha(self, b):
                return sha(b)

            def matmul(self, a, b):
                return a @ b

        self.replicas = [Replica.remote(), Replica.remote()]
        ray.get([r.sha.remote(b"warm") for r in self.replicas])
        ray.get([self.task.remote(b"warm") for _ in range(CORES * 4)])

    def tiny(self, inputs):
        return self.ray.get([self.task.remote(b) for b in inputs])

    def verified(self, inputs):
        a = [self.replicas[0].sha.remote(b) for b in inputs]
        b = [self.replicas[1].sha.remote(b) for b in inputs]
        return list(zip(self.ray.get(a), self.ray.get(b)))

    def payload(self, arrays, rhs):
        rhs_ref = self.ray.put(rhs)
        refs = [self.ray.put(a) for a in arrays]
        a = [self.replicas[0].matmul.remote(r, rhs_ref) for r in refs]
        b = [self.replicas[1].matmul.remote(r, rhs_ref) for r in refs]
        return list(zip(self.ray.get(a), self.ray.get(b)))

    def one(self, b):
        return self.ray.get(self.task.remote(b))

    def one_verified(self, b):
        return self.ray.get([r.sha.remote(b) for r in self.replicas])

    def close(self):
        self.ray.shutdown()


class Dask:
    """dask.distributed on this machine: a local cluster, a worker process per core."""

    def __init__(self):
        from distributed import Client, LocalCluster

        self.cluster = LocalCluster(
            n_workers=CORES, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
        )
        self.client = Client(self.cluster)
        self.workers = sorted(self.client.scheduler_info()["workers"].keys())
        if len(self.workers) < 2:
            raise SystemExit("dask: two workers are needed for two-way verification")
        self.client.gather(self.client.map(sha, [b"warm%d" % i for i in range(CORES * 4)], pure=False))

    def tiny(self, inputs):
        return self.client.gather(self.client.map(sha, inputs, pure=False))

    def verified(self, inputs):
        a = self.client.map(sha, inputs, pure=False, workers=[self.workers[0]], allow_other_workers=False)
        b = self.client.map(sha, inputs, pure=False, workers=[self.workers[1]], allow_other_workers=False)
        return list(zip(self.client.gather(a), self.client.gather(b)))

    def payload(self, arrays, rhs):
        [rhs_f] = self.client.scatter([rhs], broadcast=True)
        data = self.client.scatter(arrays, workers=[self.workers[0]])
        a = [self.client.submit(matmul, d, rhs_f, pure=False, workers=[self.workers[0]]) for d in data]
        b = [self.client.submit(matmul, d, rhs_f, pure=False, workers=[self.workers[1]]) for d in data]
        return list(zip(self.client.gather(a), self.client.gather(b)))

    def one(self, b):
        return self.client.submit(sha, b, pure=False).result()

    def one_verified(self, b):
        fs = [self.client.submit(sha, b, pure=False, workers=[w], allow_other_workers=False) for w in self.workers[:2]]
        return self.client.gather(fs)

    def close(self):
        self.client.close()
        self.cluster.close()


def run_tiny(system, n):
    inputs = tiny_inputs(n)
    start = time.perf_counter()
    out = system.tiny(inputs)
    secs = time.perf_counter() - start
    bad = sum(1 for b, h in zip(inputs, out) if sha(b) != h)
    return {"tasks": n, "secs": secs, "tasks_per_s": n / secs, "wrong": bad}


def run_verified(system, n):
    inputs = tiny_inputs(n, 1)
    start = time.perf_counter()
    pairs = system.verified(inputs)
    secs = time.perf_counter() - start
    bad = sum(1 for b, (x, y) in zip(inputs, pairs) if x != y or x != sha(b))
    return {"tasks": n, "secs": secs, "tasks_per_s": n / secs, "wrong": bad}


def run_payload(system, n):
    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal((4096, 64), dtype=np.float32) for _ in range(n)]
    rhs = rng.standard_normal((64, 1), dtype=np.float32)
    start = time.perf_counter()
    pairs = system.payload(arrays, rhs)
    secs = time.perf_counter() - start
    bad = sum(1 for x, y in pairs if not np.array_equal(x, y))
    delivered = 2 * n * arrays[0].nbytes
    return {"tasks": n, "secs": secs, "mb_per_s": delivered / 1e6 / secs, "wrong": bad}


def round_trips(call, inputs):
    us = []
    for b in inputs:
        start = time.perf_counter()
        call(b)
        us.append((time.perf_counter() - start) * 1e6)
    us.sort()
    return {"p50_us": percentile(us, 50), "p99_us": percentile(us, 99), "n": len(us)}


def run_latency(system, n):
    out = {
        "idle": round_trips(system.one, tiny_inputs(n, 2)),
        "idle_verified": round_trips(system.one_verified, tiny_inputs(n, 3)),
    }
    stop = threading.Event()
    busy = tiny_inputs(1000, 4)

    def load():
        while not stop.is_set():
            system.tiny(busy)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    time.sleep(1.0)
    try:
        out["loaded"] = round_trips(system.one, tiny_inputs(n, 5))
        out["loaded_verified"] = round_trips(system.one_verified, tiny_inputs(n, 6))
    finally:
        stop.set()
        loader.join()
    return out


WORKLOADS = {
    "tiny": (run_tiny, 20_000),
    "verified": (run_verified, 20_000),
    "payload": (run_payload, 600),
    "latency": (run_latency, 200),
}


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("ray", "dask") or sys.argv[2] not in WORKLOADS:
        raise SystemExit(__doc__)
    run, default_n = WORKLOADS[sys.argv[2]]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else default_n
    system = Ray() if sys.argv[1] == "ray" else Dask()
    try:
        result = run(system, n)
    finally:
        system.close()
    result.update({"system": sys.argv[1], "workload": sys.argv[2]})
    import importlib.metadata as md

    result["version"] = md.version("ray" if sys.argv[1] == "ray" else "distributed")
    print(json.dumps(result), flush=True)
    if result.get("wrong"):
        raise SystemExit(f"{result['wrong']} wrong answers")


if __name__ == "__main__":
    main()
