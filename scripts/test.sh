#!/usr/bin/env bash
# The test command: installs what is missing, builds with g++ (everything) and with clang 14
# (low layers under ASan/UBSan, plus the fuzzers), checks formatting, fuzzes the GGUF reader for a
# bounded, seeded run, and runs every CTest test in both builds.
# Shared test data is read from ../shared (override with REALM_SHARED_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
shared=${REALM_SHARED_DIR:-$root/../shared}
jobs=${REALM_JOBS:-$(nproc)}
fuzz_seconds=${REALM_FUZZ_SECONDS:-60}
fuzz_request_seconds=${REALM_FUZZ_REQUEST_SECONDS:-20}
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
# Clones in different folders share the cache: paths under the checkout are hashed relative to it,
# and the working directory (in the debug info) is not hashed.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root}
export CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}

step() { printf '\n== %s ==\n' "$*"; }

step "setup"
scripts/setup.sh

step "format check"
files=$(git ls-files '*.cc' '*.h')
clang-format-14 --dry-run --Werror $files

step "build (g++ 12, everything)"
scripts/build.sh -DREALM_SHARED_DIR="$shared"

step "build (clang 14, low layers, ASan+UBSan, fuzzers)"
CC=clang-14 CXX=clang++-14 cmake -S . -B build-clang -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DREALM_LOW_LAYERS_ONLY=ON -DREALM_SANITIZE=ON -DREALM_FUZZ=ON \
  -DREALM_SHARED_DIR="$shared" >/dev/null
ninja -C build-clang -j"$jobs"

step "fuzz gguf reader (seed 1, ${fuzz_seconds}s)"
rm -rf build-clang/fuzz && mkdir -p build-clang/fuzz/corpus build-clang/fuzz/artifacts
build-clang/bin/gguf_fuzz_seeds build-clang/fuzz/seeds \
  "$shared"/models/*.gguf "$shared"/models/quant/*.gguf "$shared"/vocab/*.gguf
build-clang/bin/gguf_fuzz -seed=1 -max_total_time="$fuzz_seconds" -max_len=65536 \
  -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix=build-clang/fuzz/artifacts/ \
  build-clang/fuzz/corpus build-clang/fuzz/seeds fuzz/regressions/gguf 2>build-clang/fuzz/log.txt ||
  { tail -50 build-clang/fuzz/log.txt; echo "fuzzer found a problem: see build-clang/fuzz/artifacts"; exit 1; }
grep -E '^stat::number_of_executed_units|Done [0-9]+ runs' build-clang/fuzz/log.txt || true

step "fuzz the server's request validation (seed 1, ${fuzz_request_seconds}s)"
mkdir -p build-clang/fuzz/openai-corpus
build-clang/bin/openai_fuzz -seed=1 -max_total_time="$fuzz_request_seconds" -max_len=8192 \
  -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=build-clang/fuzz/artifacts/ \
  build-clang/fuzz/openai-corpus fuzz/seeds/openai 2>build-clang/fuzz/openai-log.txt ||
  { tail -50 build-clang/fuzz/openai-log.txt; echo "fuzzer found a problem: see build-clang/fuzz/artifacts"; exit 1; }
grep -E '^stat::number_of_executed_units' build-clang/fuzz/openai-log.txt || true

step "tests (clang 14, ASan+UBSan)"
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-clang -j"$jobs" --output-on-failure --timeout 900

step "tests (g++ 12)"
ctest --test-dir build -j"$jobs" --output-on-failure --timeout 900
