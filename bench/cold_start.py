#!/usr/bin/env python3
"""Start-up cost of one model, side by side: llama.cpp's llama-bench, `realm bench` on a pulled
model (packed-weight cache present) and `realm bench` on the same file by path (packed at load).
Each runs `-p 0 -n 1 -r 1 -t THREADS` (load, one warm-up token, one token, exit); runs alternate;
wall time and peak RSS (ru_maxrss) per process; medians, min-max, and ratios to llama-bench.

  bench/cold_start.py --llama-bench PATH --realm build/bin/realm --file MODEL.gguf \
      --name PULLED_NAME [--runs 7] [--threads 2]
The pulled model must be the same file (REALM_HOME as set in the environment)."""
import argparse
import os
import statistics as st
import subprocess
import time

ap = argparse.ArgumentParser()
ap.add_argument("--llama-bench", required=True)
ap.add_argument("--realm", required=True)
ap.add_argument("--file", required=True)
ap.add_argument("--name", required=True)
ap.add_argument("--runs", type=int, default=7)
ap.add_argument("--threads", default="2")
a = ap.parse_args()
tail = ["-p", "0", "-n", "1", "-r", "1", "-t", a.threads]
cmds = {
    "llama-bench": [a.llama_bench, "-m", a.file, *tail],
    "realm cached": [a.realm, "bench", "-m", a.name, *tail],
    "realm by path": [a.realm, "bench", "-m", a.file, *tail],
}
res = {k: [] for k in cmds}
for _ in range(a.runs):
    for k, c in cmds.items():
        t0 = time.time()
        p = subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        assert status == 0, f"{c} failed"
        res[k].append((time.time() - t0, ru.ru_maxrss / 1024))
size = os.path.getsize(a.file) / 2**20
print(f"file {size:.0f} MiB, {a.runs} alternations, threads {a.threads}")
for k, v in res.items():
    w, r = [x[0] for x in v], [x[1] for x in v]
    print(f"{k:14s} wall {st.median(w):.3f} s ({min(w):.3f}-{max(w):.3f}), peak RSS "
          f"{st.median(r):.0f} MiB ({st.median(r) / size:.2f} x file)")
base = [x[0] for x in res["llama-bench"]]
for k in ("realm cached", "realm by path"):
    q = [x[0] / b for x, b in zip(res[k], base)]
    print(f"{k} / llama-bench wall: {st.median(q):.2f} ({min(q):.2f}-{max(q):.2f})")
