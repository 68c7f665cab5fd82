#!/usr/bin/env python3
"""`realm serve` against llama.cpp's `llama-server`: the same GGUF file, thread count and load
(`realm bench-serve`, the same seeded requests), alternated, medians with min-max.

  bench/serve_compare.py --model FILE.gguf [--realm build/bin/realm] [--llama-server PATH]
      [--threads 2] [-c 8] [--requests R] [--max-tokens A:B] [--prompt-words A:B] [--seed S]
      [--alternations 5] [--ctx 2048] [--realm-arg ARG ...] [--llama-arg ARG ...]
      [--skip-llama] [--json OUT] [--keep-logs]

Each run starts a fresh server, waits until it is ready, sends one short warm-up completion, runs
`realm bench-serve -c C --requests R ... --json` against it and stops it (SIGTERM, then SIGKILL
after a timeout). Why a fresh server per run rather than one long-lived server per side:
bench-serve with the same seed sends the very same prompts every run, and llama-server keeps a
prompt cache in RAM (`--cache-ram`, 8 GiB by default) across requests, while realm has no prefix
cache yet, so a long-lived llama-server would serve later runs' prompts from its cache. A fresh
process also gives both sides the same state (page cache warm from the previous run, allocator and
KV cache cold, first-request costs paid by the warm-up, not timed). Start-up and model load are
not timed. Within alternation i the order is realm then llama-server for even i and the reverse
for odd i, so a slow drift of the (shared, noisy) machine does not favour one side.

Settings kept equal on both sides:
  realm serve  --model NAME=FILE -t THREADS -c CTX --port 0 (its log names the port), with a
               temporary REALM_HOME and database, one tenant (--concurrency C, no rate limits) and
               one key made by `realm tenants create` / `realm keys create`; ready when
               GET /v1/models with the key answers 200 and lists NAME.
  llama-server -m FILE -t THREADS -tb THREADS -np C -kvu -c CTX*C --host 127.0.0.1 --port P;
               ready when GET /health answers 200. Requests carry no key; llama-server accepts
               any `model` name (checked: it answers with the file path as the model and
               serves the request), so bench-serve's --model NAME is the same on both sides.
Both keep their default KV cache type (F16) and sampling is bench-serve's (temperature 0.8 with a
per-request seed): the two engines' logits differ in rounding, so the sampled texts, and where
an end-of-text token stops a request, can differ; the table shows each side's output tokens.

`--requests` is bench-serve's: requests *per stream* (its default 4), so a run sends C x R.
output_tps is bench-serve's: output tokens of the run / its wall time (all C streams together).
The ratio is realm / llama-server output tokens/s: the median of the per-alternation ratios,
with their min-max. Two columns guard the numbers: "cut streams", the streams llama-server ended
early with a mid-stream error event (counted from the "cancel task" lines of its log: bench-serve
ignores such events and counts the request as done, with fewer tokens), and "other CPU max", the
largest share of the machine's CPU that processes other than the server, bench-serve and this
script used during a run (from /proc/stat and /proc/PID/stat): llama.cpp's thread pool waits for
every thread at each step, so with a core taken by, say, a compile it slows down by an order of
magnitude while realm's dynamically claimed chunks degrade gracefully; such runs say nothing about
the servers. bench-serve's TTFT and ITL are printed as it reports them (see the note the script
prints when they look like whole-response times). Logs (server stderr, bench-serve output) go to
a temporary folder, which is kept and printed when anything fails (or with --keep-logs)."""
import argparse, json, os, re, shlex, shutil, signal, socket, statistics, subprocess, sys, tempfile
import time, urllib.error, urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_realm():
    for p in ("build/realm", "build/bin/realm", os.path.join(REPO, "build/realm"),
              os.path.join(REPO, "build/bin/realm")):
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return shutil.which("realm") or "realm"


def default_llama_server():
    peer = os.path.expanduser("~/.cache/realm-peer/llama.cpp-native")
    for p in (os.path.join(peer, "llama-server"), os.path.join(peer, "build/bin/llama-server"),
              os.path.join(peer, "bin/llama-server")):
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return os.path.realpath(p)
    return shutil.which("llama-server") or os.path.join(peer, "llama-server")


def cpu_info():
    model, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                k = k.strip()
                if k == "model name" and model == "unknown":
                    model = v.strip()
                elif k == "flags" and not flags:
                    flags = set(v.split())
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "avx512f": "avx512f" in flags,
            "avx512_vnni": "avx512_vnni" in flags, "avx2": "avx2" in flags}


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_get(url, key=None, timeout=2.0):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):
        return None, b""


def http_post(url, body, key=None, timeout=120.0):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        return None, str(e).encode()


class Failure(Exception):
    pass


def tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


class Server:
    """One server process, its stderr in a log file; always stopped by stop()."""
    live = set()  # started and not yet stopped: main() stops whatever is left, whatever happens

    def __init__(self, kind, cmd, log_path, env=None):
        self.kind, self.cmd, self.log_path = kind, cmd, log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        self.port = None
        Server.live.add(self)

    def check_alive(self):
        if self.proc.poll() is not None:
            raise Failure(f"{self.kind} exited with status {self.proc.returncode} before it was "
                          f"ready; log {self.log_path}:\n{tail(self.log_path)}")

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"  {self.kind} did not stop within {timeout} s of SIGTERM: SIGKILL",
                      file=sys.stderr)
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        Server.live.discard(self)
        if self.port and port_open(self.port):
            print(f"  warning: port {self.port} still accepts connections after {self.kind} "
                  f"stopped", file=sys.stderr)
        return self.proc.returncode


def wait_ready(srv, probe, what, timeout):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        srv.check_alive()
        if probe():
            return time.monotonic() - t0
        time.sleep(0.1)
    raise Failure(f"{srv.kind} not ready ({what}) after {timeout:.0f} s; log {srv.log_path}:\n"
                  f"{tail(srv.log_path)}")


def run_cmd(cmd, log_prefix, env=None, check=True):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    with open(log_prefix + ".out", "w") as f:
        f.write(p.stdout)
    with open(log_prefix + ".err", "w") as f:
        f.write(p.stderr)
    if check and p.returncode != 0:
        raise Failure(f"{' '.join(cmd)} exited with {p.returncode}; logs {log_prefix}.out/.err:\n"
                      f"{p.stderr.strip()[-2000:]}")
    return p


class Bench:
    def __init__(self, a, tmp):
        self.a, self.tmp = a, tmp
        self.home = os.path.join(tmp, "realm-home")
        os.makedirs(self.home)
        self.db = os.path.join(self.home, "realm.db")
        self.env = dict(os.environ, REALM_HOME=self.home)
        self.key = None
        self.n = 0

    def setup_realm_store(self):
        a = self.a
        run_cmd([a.realm, "tenants", "create", "bench", "--concurrency", str(a.c), "--rpm", "0",
                 "--tpm", "0", "--daily-tokens", "0", "--db", self.db],
                os.path.join(self.tmp, "tenants-create"), self.env)
        p = run_cmd([a.realm, "keys", "create", "--tenant", "bench", "--name", "serve-compare",
                     "--db", self.db], os.path.join(self.tmp, "keys-create"), self.env)
        self.key = p.stdout.strip().splitlines()[-1].strip() if p.stdout.strip() else ""
        if not self.key.startswith("rk-"):
            raise Failure(f"realm keys create printed no key: {p.stdout!r} {p.stderr!r}")

    def start(self, kind):
        a = self.a
        self.n += 1
        log = os.path.join(self.tmp, f"{self.n:02d}-{kind}.log")
        if kind == "realm":
            cmd = [a.realm, "serve", "--model", f"{a.model_name}={a.model}", "--db", self.db,
                   "--host", "127.0.0.1", "--port", "0", "-t", str(a.threads), "-c", str(a.ctx)]
            cmd += a.realm_arg
            srv = Server(kind, cmd, log, self.env)
            try:
                def listening():
                    m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", tail(log, 200))
                    if m:
                        srv.port = int(m.group(1))
                    return srv.port is not None
                wait_ready(srv, listening, "no 'listening on' line", a.start_timeout)

                def models_ok():
                    st, body = http_get(f"http://127.0.0.1:{srv.port}/v1/models", self.key)
                    if st != 200:
                        return False
                    ids = [m.get("id") for m in json.loads(body).get("data", [])]
                    if a.model_name not in ids:
                        raise Failure(f"realm serve lists models {ids}, not {a.model_name}")
                    return True
                srv.ready_s = wait_ready(srv, models_ok, "GET /v1/models", a.start_timeout)
            except BaseException:
                srv.stop()
                raise
        else:
            for attempt in range(3):
                port = free_port()
                cmd = [a.llama_server, "-m", a.model, "-t", str(a.threads), "-tb", str(a.threads),
                       "-np", str(a.c), "-kvu", "-c", str(a.ctx * a.c), "--host", "127.0.0.1",
                       "--port", str(port)] + a.llama_arg
                srv = Server(kind, cmd, log)
                srv.port = port
                try:
                    srv.ready_s = wait_ready(
                        srv, lambda: http_get(f"http://127.0.0.1:{port}/health")[0] == 200,
                        "GET /health", a.start_timeout)
                    break
                except Failure:
                    srv.stop()
                    # Another process may have taken the port between free_port() and the bind.
                    if attempt == 2 or "bind" not in tail(log, 50).lower():
                        raise
                except BaseException:
                    srv.stop()
                    raise
        return srv

    def warm_up(self, srv):
        key = self.key if srv.kind == "realm" else None
        st, body = http_post(f"http://127.0.0.1:{srv.port}/v1/completions",
                             {"model": self.a.model_name, "prompt": "Hello", "max_tokens": 4,
                              "temperature": 0}, key)
        if st is None or (st != 200 and srv.kind == "realm"):
            raise Failure(f"{srv.kind} warm-up request: HTTP {st}: {body[:300]!r}; "
                          f"log {srv.log_path}")
        if st != 200:  # e.g. llama-server's chat-output parser failing on random text: it ran
            print(f"  note: {srv.kind} answered the warm-up with HTTP {st}: {body[:200]!r}",
                  file=sys.stderr)

    def bench_serve(self, srv):
        a = self.a
        cmd = [a.realm, "bench-serve", "--url", f"http://127.0.0.1:{srv.port}/v1", "--model",
               a.model_name, "-c", str(a.c), "--requests", str(a.requests), "--max-tokens",
               a.max_tokens, "--prompt-words", a.prompt_words, "--seed", str(a.seed), "--json"]
        if srv.kind == "realm":
            cmd[4:4] = ["--key", self.key]
        prefix = os.path.join(self.tmp, f"{self.n:02d}-{srv.kind}-bench")
        p = run_cmd(cmd, prefix, check=False)
        try:
            j = json.loads(p.stdout)
        except ValueError:
            raise Failure(f"bench-serve against {srv.kind} (exit {p.returncode}) printed no "
                          f"JSON; {prefix}.out/.err:\n{p.stderr[-2000:]}\nserver log "
                          f"{srv.log_path}:\n{tail(srv.log_path)}")
        if p.returncode != 0 or j.get("errors", 0) == j.get("requests", 0):
            raise Failure(f"bench-serve against {srv.kind}: every request failed "
                          f"({j.get('first_error')}); server log {srv.log_path}:\n"
                          f"{tail(srv.log_path)}")
        if j.get("errors"):
            print(f"  warning: {j['errors']} of {j['requests']} requests to {srv.kind} failed: "
                  f"{j.get('first_error')}", file=sys.stderr)
            self.had_errors = True
        return cmd, j

    def one_run(self, kind, alternation):
        srv = self.start(kind)
        try:
            if not self.a.no_warmup:
                self.warm_up(srv)
            cpu0 = cpu_sample(srv.proc.pid)
            cmd, j = self.bench_serve(srv)
            cpu1 = cpu_sample(srv.proc.pid)
        finally:
            rc = srv.stop()
        if rc not in (0, -signal.SIGTERM):
            print(f"  warning: {kind} exited with status {rc}; log {srv.log_path}",
                  file=sys.stderr)
        other = other_cpu(cpu0, cpu1)
        # llama-server logs "cancel task" when it ends a stream early (it then sends no
        # finish_reason, usage or [DONE], and bench-serve still counts the request as done).
        cancels = tail(srv.log_path, 10**6).count("cancel task") if kind == "llama-server" else 0
        print(f"  alternation {alternation + 1} {kind:12s} {j['output_tps']:8.1f} output tok/s  "
              f"{j['output_tokens']} tokens in {j['wall_s']:.2f} s  ttft p50 "
              f"{j['ttft_ms']['p50']:.0f} ms  itl p50 {j['itl_ms']['p50']:.1f} ms  "
              f"other processes' CPU {other:.0%} of the machine"
              + (f"  errors {j['errors']}" if j.get("errors") else "")
              + (f"  streams cut by llama-server: {cancels}" if cancels else ""), flush=True)
        if other > 0.1:
            self.contended = True
        return {"server": kind, "alternation": alternation, "server_cmd": srv.cmd,
                "ready_s": round(srv.ready_s, 3), "bench_cmd": cmd, "other_cpu": round(other, 3),
                "cancelled_streams": cancels, "bench": j}


def cpu_sample(server_pid):
    """(machine busy jiffies, jiffies of the server, of this script's reaped children, time)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = sum(v) - v[3] - (v[4] if len(v) > 4 else 0)  # all but idle and iowait
    try:
        with open(f"/proc/{server_pid}/stat") as f:
            st = f.read().rsplit(")", 1)[1].split()
        srv = int(st[11]) + int(st[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        srv = 0
    ru = os.times()
    tck = os.sysconf("SC_CLK_TCK")
    return busy, srv, (ru.children_user + ru.children_system + ru.user + ru.system) * tck, \
        time.monotonic()


def other_cpu(a, b):
    """The share of the machine's CPU time between two samples used by processes other than the
    server, bench-serve and this script (a compile beside the benchmark, say)."""
    tck = os.sysconf("SC_CLK_TCK")
    wall = (b[3] - a[3]) * tck * (os.cpu_count() or 1)
    if wall <= 0:
        return 0.0
    return max(0.0, ((b[0] - a[0]) - (b[1] - a[1]) - (b[2] - a[2])) / wall)


def med_range(xs, fmt="{:.1f}"):
    if not xs:
        return "-"
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"


def summarize(runs, kinds):
    s = {}
    for k in kinds:
        rk = [r for r in runs if r["server"] == k]
        b = [r["bench"] for r in rk]
        if not b:
            continue
        s[k] = {
            "other_cpu_max": max(r["other_cpu"] for r in rk),
            "cancelled_streams": sum(r["cancelled_streams"] for r in rk),
            "runs": len(b),
            "output_tps": [x["output_tps"] for x in b],
            "output_tps_median": statistics.median(x["output_tps"] for x in b),
            "output_tokens": [x["output_tokens"] for x in b],
            "errors": sum(x.get("errors", 0) for x in b),
            "requests": sum(x.get("requests", 0) for x in b),
            "ttft_p50_ms": statistics.median(x["ttft_ms"]["p50"] for x in b),
            "ttft_p99_ms": statistics.median(x["ttft_ms"]["p99"] for x in b),
            "itl_p50_ms": statistics.median(x["itl_ms"]["p50"] for x in b),
            "itl_p99_ms": statistics.median(x["itl_ms"]["p99"] for x in b),
        }
    if "realm" in s and "llama-server" in s:
        by = {}
        for r in runs:
            by.setdefault(r["alternation"], {})[r["server"]] = r["bench"]["output_tps"]
        ratios = [v["realm"] / v["llama-server"] for v in by.values()
                  if "realm" in v and v.get("llama-server")]
        if ratios:
            s["ratio_output_tps"] = {"median": statistics.median(ratios), "min": min(ratios),
                                     "max": max(ratios), "per_alternation": ratios}
    return s


def print_table(s, kinds):
    hdr = ["server", "output tok/s median (min-max)", "ttft p50 / p99 ms", "itl p50 / p99 ms",
           "output tokens median", "errors", "cut streams", "other CPU max"]
    rows = []
    for k in kinds:
        if k not in s:
            continue
        x = s[k]
        rows.append([k, med_range(x["output_tps"]),
                     f"{x['ttft_p50_ms']:.0f} / {x['ttft_p99_ms']:.0f}",
                     f"{x['itl_p50_ms']:.1f} / {x['itl_p99_ms']:.1f}",
                     f"{statistics.median(x['output_tokens']):.0f}",
                     f"{x['errors']}/{x['requests']}", str(x["cancelled_streams"]),
                     f"{x['other_cpu_max']:.0%}"])
    w = [max(len(str(r[i])) for r in [hdr] + rows) for i in range(len(hdr))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w[i]) for i, c in enumerate(r)) + " |"
    print(line(hdr))
    print("|" + "|".join("-" * (n + 2) for n in w) + "|")
    for r in rows:
        print(line(r))
    if any(k in s and s[k]["itl_p50_ms"] < 0.05 for k in kinds):
        print("note: ITL p50 < 0.05 ms means bench-serve saw the tokens arrive together, not one "
              "by one: its TTFT is then close to the whole request's time and its ITL meaningless "
              "(bench-serve reads the stream with a blocking http::read that returns only when "
              "its 16 KiB body buffer is full or the response ends); output tok/s is unaffected")
    if "ratio_output_tps" in s:
        r = s["ratio_output_tps"]
        print(f"realm / llama-server output tok/s: {r['median']:.2f} "
              f"({r['min']:.2f}-{r['max']:.2f}), median (min-max) of {len(r['per_alternation'])} "
              f"per-alternation ratios")
        toks = [statistics.median(s[k]["output_tokens"]) for k in ("realm", "llama-server")]
        if min(toks) > 0 and max(toks) / min(toks) > 1.05:
            why = (f"llama-server cut {s['llama-server']['cancelled_streams']} streams short"
                   if s["llama-server"]["cancelled_streams"] else "end-of-text stops differ")
            print(f"note: the sides generated different amounts of text (median output tokens "
                  f"{toks[0]:.0f} vs {toks[1]:.0f}: {why}); compare with care")
    if any(s.get(k, {}).get("cancelled_streams") for k in kinds):
        print("note: 'cut streams' counts the streams llama-server ended early ('cancel task' in "
              "its log): a mid-stream error event such as 'The model produced output that does "
              "not match the expected Content-only format' (its chat-output parser failing on "
              "the generated bytes, common with random-weight models), which bench-serve does "
              "not count as an error; such a request ends with fewer tokens")


def range_arg(s):
    m = re.fullmatch(r"(\d+):(\d+)", s)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise argparse.ArgumentTypeError(f"want LO:HI with 1 <= LO <= HI, got '{s}'")
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--realm", default=None, help="realm binary (default build/realm, "
                    "build/bin/realm, else realm on PATH)")
    ap.add_argument("--llama-server", default=None, help="llama-server binary (default: under "
                    "~/.cache/realm-peer/llama.cpp-native, else on PATH)")
    ap.add_argument("--model", required=True, help="the GGUF file both servers load")
    ap.add_argument("--model-name", default="m", help="the name requests use (default m)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-c", type=int, default=8, help="concurrent streams (default 8)")
    ap.add_argument("--requests", type=int, default=4,
                    help="requests per stream, bench-serve's --requests (default 4)")
    ap.add_argument("--max-tokens", type=range_arg, default="16:128")
    ap.add_argument("--prompt-words", type=range_arg, default="8:64")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--alternations", type=int, default=5)
    ap.add_argument("--ctx", type=int, default=2048, help="context per sequence: realm -c CTX, "
                    "llama-server -c CTX*C (default 2048)")
    ap.add_argument("--realm-arg", action="append", default=[], metavar="ARG",
                    help="extra arguments to realm serve, split like a shell line (repeatable; "
                    "write it with '=' when it starts with '-': --realm-arg='--kv-budget-mb 64')")
    ap.add_argument("--llama-arg", action="append", default=[], metavar="ARG",
                    help="extra arguments to llama-server, as --realm-arg (e.g. "
                    "--llama-arg='--cache-ram 0')")
    ap.add_argument("--skip-llama", action="store_true", help="run realm serve only")
    ap.add_argument("--no-warmup", action="store_true",
                    help="no untimed warm-up completion before each timed run")
    ap.add_argument("--start-timeout", type=float, default=180, help="seconds (default 180)")
    ap.add_argument("--json", metavar="OUT", help="write every raw run and the summary")
    ap.add_argument("--keep-logs", action="store_true", help="keep the temporary folder")
    a = ap.parse_args()
    a.realm = a.realm or default_realm()
    a.llama_server = a.llama_server or default_llama_server()
    a.model = os.path.abspath(a.model)
    a.realm_arg = [w for x in a.realm_arg for w in shlex.split(x)]
    a.llama_arg = [w for x in a.llama_arg for w in shlex.split(x)]
    if not os.path.isfile(a.model):
        ap.error(f"no model file {a.model}")
    for name, path in [("--realm", a.realm)] + ([] if a.skip_llama else
                                                 [("--llama-server", a.llama_server)]):
        if not (shutil.which(path) or (os.path.isfile(path) and os.access(path, os.X_OK))):
            ap.error(f"{name}: {path} is not an executable")
    if min(a.threads, a.c, a.requests, a.alternations, a.ctx) < 1:
        ap.error("--threads, -c, --requests, --alternations and --ctx must be >= 1")

    # A SIGTERM to this script unwinds like Ctrl-C, so the finally blocks stop the servers.
    def on_term(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    cpu = cpu_info()
    kinds = ["realm"] + ([] if a.skip_llama else ["llama-server"])
    realm_version = subprocess.run([a.realm, "--version"], capture_output=True,
                                   text=True).stdout.strip()
    print(f"CPU: {cpu['model']}, {cpu['cores']} cores, avx512f: "
          f"{'yes' if cpu['avx512f'] else 'no'} (avx512_vnni: "
          f"{'yes' if cpu['avx512_vnni'] else 'no'}, avx2: {'yes' if cpu['avx2'] else 'no'}); "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"model {a.model}; {a.threads} threads; -c {a.c} streams x {a.requests} requests; "
          f"max tokens {a.max_tokens}, prompt words {a.prompt_words}, seed {a.seed}; "
          f"{a.alternations} alternations; {realm_version} ({a.realm})"
          + ("" if a.skip_llama else f"; llama-server {a.llama_server}"))
    tmp = tempfile.mkdtemp(prefix="serve-compare-")
    b = Bench(a, tmp)
    b.had_errors = False
    b.contended = False
    runs, ok = [], False
    try:
        b.setup_realm_store()
        for i in range(a.alternations):
            for kind in (kinds if i % 2 == 0 else kinds[::-1]):
                runs.append(b.one_run(kind, i))
        ok = True
    except Failure as e:
        print(f"serve_compare: error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("serve_compare: interrupted", file=sys.stderr)
    finally:
        for srv in list(Server.live):
            srv.stop(timeout=10)
        summary = summarize(runs, kinds)
        if runs:
            print()
            print_table(summary, kinds)
            if b.contended:
                print("note: other processes used more than 10% of the CPU during some runs "
                      "(see 'other processes' CPU' above): llama.cpp's thread pool waits for every "
                      "thread at each step and slows down far more than realm's when a core is "
                      "taken, so such runs do not measure the servers; rerun on a quiet machine")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"command": sys.argv, "cpu": cpu, "realm_version": realm_version,
                           "args": vars(a),
                           "complete": ok, "runs": runs, "summary": summary}, f, indent=2)
                f.write("\n")
            print(f"raw runs and summary: {a.json}")
        if ok and not a.keep_logs and not b.had_errors:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"logs: {tmp}", file=sys.stderr if not ok else sys.stdout)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
