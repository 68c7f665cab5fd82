#!/usr/bin/env bash
# Configures and builds Realm with g++ into build/ (binary: build/bin/realm).
# Usage: scripts/build.sh [extra cmake args...]
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${REALM_JOBS:-$(nproc)}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=gcc -DCMAKE_CXX_COMPILER=g++ "$@" >/dev/null
ninja -C build -j"$jobs"
