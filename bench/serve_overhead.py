#!/usr/bin/env python3
"""Server overhead: the same greedy completion through `realm serve` over HTTP and through
`realm run` in-process, alternated, medians with min-max; then short-request throughput and
latency percentiles at a given concurrency.

  bench/serve_overhead.py --realm build/bin/realm --model FILE.gguf [-n 128] [--runs 5]
                          [--threads 2] [--short 400] [--concurrency 8]

`realm run`'s rate is its own prompt + generation time (model load excluded); the server's is the
request's wall time at the client (HTTP, JSON, the sandbox and the guest included), so the ratio
is the whole serving overhead for one request."""
import argparse, http.client, json, os, re, statistics, subprocess, sys, tempfile, threading, time


def start_server(realm, model, threads, db):
    p = subprocess.Popen([realm, "serve", "--model", f"m={model}", "--port", "0", "-t", str(threads),
                          "-c", "2048", "--no-auth", "--db", db, "--max-connections", "512"],
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in p.stderr:
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, int(m.group(1))
    raise SystemExit("realm serve did not start")


def post(port, body, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = json.loads(r.read())
    if r.status != 200:
        raise SystemExit(f"HTTP {r.status}: {data}")
    return data


def spread(xs):
    return f"{statistics.median(xs):.1f} ({min(xs):.1f}-{max(xs):.1f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--realm", default="build/bin/realm")
    ap.add_argument("--model", required=True)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--short", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=8)
    a = ap.parse_args()
    prompt = "Once upon a time"
    db = os.path.join(tempfile.mkdtemp(prefix="realm-bench-"), "realm.db")
    server, port = start_server(a.realm, a.model, a.threads, db)
    try:
        body = {"model": "m", "prompt": prompt, "max_tokens": a.n, "temperature": 0}
        post(port, body)  # warm up the guest instance
        run_tps, http_tps, ratios = [], [], []
        for _ in range(a.runs):
            out = subprocess.run([a.realm, "run", "-m", a.model, "-p", prompt, "-n", str(a.n),
                                  "--temp", "0", "--json", "-t", str(a.threads)],
                                 capture_output=True, text=True, check=True)
            d = json.loads(out.stdout)
            t = d["timings"]
            r_tps = len(d["ids"]) / ((t["prompt_ms"] + t["gen_ms"]) / 1000)
            t0 = time.perf_counter()
            resp = post(port, body)
            h_tps = resp["usage"]["completion_tokens"] / (time.perf_counter() - t0)
            assert resp["choices"][0]["text"] == d["text"], "server and realm run disagree"
            run_tps.append(r_tps)
            http_tps.append(h_tps)
            ratios.append(h_tps / r_tps)
        print(f"greedy {a.n}-token completion, {a.threads} threads, {a.runs} alternations")
        print(f"  realm run (in-process): {spread(run_tps)} tokens/s")
        print(f"  realm serve (HTTP):     {spread(http_tps)} tokens/s")
        print(f"  ratio HTTP / run:       {statistics.median(ratios):.3f} "
              f"({min(ratios):.3f}-{max(ratios):.3f})")
        # Short requests: one token each, `concurrency` keep-alive clients.
        lat, lock = [], threading.Lock()
        per = a.short // a.concurrency
        short = {"model": "m", "prompt": "Hi", "max_tokens": 1, "temperature": 0}

        def client():
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            for _ in range(per):
                t0 = time.perf_counter()
                post(port, short, c)
                with lock:
                    lat.append(time.perf_counter() - t0)

        threads = [threading.Thread(target=client) for _ in range(a.concurrency)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        lat.sort()
        q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
        print(f"short requests (1 token), concurrency {a.concurrency}: {len(lat) / wall:.0f} req/s, "
              f"latency p50 {q(0.5):.1f} ms, p99 {q(0.99):.1f} ms ({len(lat)} requests)")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
