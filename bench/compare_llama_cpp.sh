#!/usr/bin/env bash
# Side-by-side speed of realm and llama.cpp's llama-bench on the same files, machine and threads.
#
#   bench/compare_llama_cpp.sh [--isa native|avx2] [--runs N] [--threads "1 2"] [--files "..."]
#
# - Finds or builds llama-bench from the llama.cpp source bundled in node-llama-cpp@3.21.1, outside
#   the repository (cached in $REALM_PEER_DIR, default ~/.cache/realm-peer/llama.cpp-<isa>). The
#   avx2 build has GGML_NATIVE off and only AVX2/FMA/F16C on, for an AVX2 comparison on any x86
#   machine; realm then runs with REALM_ISA=avx2. Building takes 13-25 minutes on 2 cores, once.
# - Creates the benchmark files with `realm synth` (random weights, llama-spm vocab) in
#   $REALM_BENCH_DIR (default ~/.cache/realm-bench).
# - Alternates `llama-bench -p 128 -n 64 -r 1` and `realm bench -p 128 -n 64 -r 1` N times (default
#   10) per file and thread count, and prints one table: medians of pp128 and tg64 for both, the
#   ratios realm / llama.cpp (median of the per-run ratios, min-max), peak RSS (GNU time) and load
#   time (realm: its load_ms; llama.cpp: the wall time of a `-p 0 -n 1` run minus its one token, an
#   upper bound: it includes process start and llama-bench's warm-up).
# Never run in CI (it refuses when CI is set).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
[ -z "${CI:-}" ] || { echo "compare_llama_cpp.sh: not in CI" >&2; exit 1; }

isa=native
runs=10
threads="1 2"
files="llama-134m:Q4_K_M llama-134m:Q8_0 llama-134m:Q4_0 llama-134m:Q6_K llama-134m:F16 llama-134m:BF16 tinyllama-1.1b:Q4_K_M tinyllama-1.1b:Q8_0"
while [ $# -gt 0 ]; do
  case "$1" in
    --isa) isa=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --files) files=$2; shift 2 ;;
    *) echo "usage: $0 [--isa native|avx2] [--runs N] [--threads \"1 2\"] [--files \"preset:TYPE ...\"]" >&2; exit 2 ;;
  esac
done
case "$isa" in native | avx2) ;; *) echo "--isa native or avx2" >&2; exit 2 ;; esac

realm=$root/build/bin/realm
[ -x "$realm" ] || { echo "build realm first (scripts/build.sh)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }
realm_env=()
[ "$isa" = avx2 ] && realm_env=(REALM_ISA=avx2)

# ---- the peer ----------------------------------------------------------------------------------
peer=${REALM_PEER_DIR:-$HOME/.cache/realm-peer}/llama.cpp-$isa
bench_bin=$peer/build/bin/llama-bench
if [ ! -x "$bench_bin" ]; then
  bundle=$root/tests/js/node_modules/node-llama-cpp/llama/gitRelease.bundle
  if [ ! -f "$bundle" ]; then
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack node-llama-cpp@3.21.1 >/dev/null && tar xzf node-llama-cpp-3.21.1.tgz)
    bundle=$tmp/package/llama/gitRelease.bundle
  fi
  mkdir -p "$(dirname "$peer")"
  [ -d "$peer/.git" ] || git clone -q "$bundle" "$peer"
  flags=(-DGGML_NATIVE=ON)
  [ "$isa" = avx2 ] && flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
                                -DGGML_AVX512=OFF)
  echo "building llama-bench ($isa) in $peer (once; 13-25 minutes on 2 cores)" >&2
  cmake -S "$peer" -B "$peer/build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${flags[@]}" \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF >/dev/null
  ninja -C "$peer/build" llama-bench >/dev/null
fi

# ---- the files ---------------------------------------------------------------------------------
dir=${REALM_BENCH_DIR:-$HOME/.cache/realm-bench}
mkdir -p "$dir"
vocab=${REALM_SHARED_DIR:-$root/../shared}/vocab/ggml-vocab-llama-spm.gguf
for f in $files; do
  out=$dir/${f%%:*}-${f##*:}.gguf
  [ -f "$out" ] || "$realm" synth "$out" --preset "${f%%:*}" --type "${f##*:}" --vocab "$vocab" >&2
done

# ---- the runs ----------------------------------------------------------------------------------
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
flags=$(grep -m1 "^flags" /proc/cpuinfo)
has512=no
[[ "$flags" == *avx512f* ]] && has512=yes
echo "CPU: $cpu (AVX-512: $has512); comparison: $isa; $runs alternations per cell"
python3 - "$realm" "$bench_bin" "$dir" "$runs" "$threads" "$isa" "${realm_env[*]:-}" $files <<'EOF'
import json, os, re, statistics, subprocess, sys, time

realm, peer, d, runs, threads, isa, renv = sys.argv[1:8]
files = sys.argv[8:]
env = dict(os.environ)
if renv:
    k, v = renv.split("=")
    env[k] = v

def timed(cmd, e=None):
    """stdout and the peak RSS (KiB) of a command, through GNU time."""
    r = subprocess.run(["/usr/bin/time", "-f", "RSS %M", *cmd], capture_output=True, text=True,
                       env=e or os.environ, check=True)
    return r.stdout, int(re.findall(r"RSS (\d+)", r.stderr)[-1])

def llama(path, t, p, n):
    out, rss = timed([peer, "-m", path, "-p", str(p), "-n", str(n), "-t", str(t), "-r", "1", "-o", "json"])
    tests = json.loads(out)
    pp = next((x["avg_ts"] for x in tests if x["n_prompt"] > 0), None)
    tg = next((x["avg_ts"] for x in tests if x["n_gen"] > 0), None)
    return pp, tg, rss

def ours(path, t):
    out, rss = timed([realm, "bench", "-m", path, "-p", "128", "-n", "64", "-t", str(t), "-r", "1", "--json"], env)
    j = json.loads(out)
    return j["pp"]["tps"], j["tg"]["tps"], rss, j["load_ms"], j["isa"]

def span(v):
    return f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})"

print("| file | ISA | threads | realm pp128 | llama.cpp pp128 | pp ratio | realm tg64 | llama.cpp tg64 | tg ratio | RSS MiB realm / llama.cpp | load ms realm / llama.cpp |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for f in files:
    path = os.path.join(d, f.replace(":", "-") + ".gguf")
    for t in threads.split():
        R = {"pp": [], "tg": [], "lpp": [], "ltg": [], "rss": [], "lrss": [], "load": [], "lload": []}
        used = "?"
        for _ in range(int(runs)):
            lpp, ltg, lrss = llama(path, t, 128, 64)
            pp, tg, rss, load, used = ours(path, t)
            R["pp"].append(pp); R["tg"].append(tg); R["lpp"].append(lpp); R["ltg"].append(ltg)
            R["rss"].append(rss / 1024); R["lrss"].append(lrss / 1024); R["load"].append(load)
            t0 = time.monotonic()
            _, one_tg, _ = llama(path, t, 0, 1)
            R["lload"].append(max(0.0, (time.monotonic() - t0) * 1000 - 1000 / one_tg))
        ppr = [a / b for a, b in zip(R["pp"], R["lpp"])]
        tgr = [a / b for a, b in zip(R["tg"], R["ltg"])]
        m = statistics.median
        print(f"| {f} | {used} | {t} | {m(R['pp']):.0f} | {m(R['lpp']):.0f} | {span(ppr)} | "
              f"{m(R['tg']):.0f} | {m(R['ltg']):.0f} | {span(tgr)} | {m(R['rss']):.0f} / {m(R['lrss']):.0f} | "
              f"{m(R['load']):.0f} / {m(R['lload']):.0f} |", flush=True)
EOF
