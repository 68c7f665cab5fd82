#!/usr/bin/env bash
# Installs every system dependency of Realm from Debian 12 packages. Idempotent: packages already
# present are skipped, so a second run does no network work.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git python3
  clang-14 lld-14 libclang-rt-14-dev clang-format-14
  wasi-libc libc++-14-dev-wasm32 libc++abi-14-dev-wasm32 libclang-rt-14-dev-wasm32
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libfmt-dev
  libpcre2-dev python3-jinja2
  libicu-dev
  libssl-dev
  libboost1.81-dev
  libsqlite3-dev sqlite3
  libcurl4-openssl-dev libxxhash-dev
  libuv1 libc-ares2 libnghttp2-14 libbrotli1 libicu72 libssl3 zlib1g
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all system packages present"
fi

# V8 (Debian's libnode108 / libnode-dev, Node 18's V8 10.2) for the sandbox. Where Node.js came from
# another source, `apt-get install libnode-dev` is refused (its dependency chain wants Debian's
# nodejs), so the two packages are downloaded and unpacked into a project-local prefix, .deps/libnode
# (ignored by git); the build finds it there (src/sandbox/CMakeLists.txt). Idempotent.
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
libnode_prefix="$repo_root/.deps/libnode"
if [ -f /usr/include/node/v8.h ] && ls /usr/lib/x86_64-linux-gnu/libnode.so* >/dev/null 2>&1; then
  echo "setup: libnode-dev installed system-wide"
elif [ -f "$libnode_prefix/usr/include/node/v8.h" ] && [ -f "$libnode_prefix/usr/lib/x86_64-linux-gnu/libnode.so.108" ]; then
  echo "setup: libnode present in $libnode_prefix"
else
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      --no-remove libnode-dev >/dev/null 2>&1; then
    echo "setup: installed libnode-dev"
  else
    echo "setup: apt-get install libnode-dev refused; unpacking libnode108 + libnode-dev into $libnode_prefix"
    dl="$(mktemp -d)"
    chmod 777 "$dl"
    (cd "$dl" && apt-get download libnode108 libnode-dev)
    mkdir -p "$libnode_prefix"
    for deb in "$dl"/*.deb; do dpkg-deb -x "$deb" "$libnode_prefix"; done
    rm -rf "$dl"
  fi
fi

# Node.js modules of the tests against llama.cpp (tests/js: node-llama-cpp@3.21.1, pinned by its
# package-lock.json). Only the linux-x64 CPU build of its prebuilt addon is installed: the CUDA and
# Vulkan builds are optional dependencies (~600 MB) that --omit=optional leaves out, and
# --ignore-scripts skips its postinstall, which would build llama.cpp from source (~25 min) where
# no prebuilt binary fits. Needs Node.js >= 20 with npm on x86-64 Linux; elsewhere those tests
# report themselves skipped. Idempotent: a stamp holds the hash of the manifests installed.
js_dir="$repo_root/tests/js"
js_stamp="$js_dir/node_modules/.realm-manifest-sha256"
js_want=$(cat "$js_dir/package.json" "$js_dir/package-lock.json" | sha256sum | cut -d' ' -f1)
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$(uname -sm)" != "Linux x86_64" ] || [ "$node_major" -lt 20 ] || ! command -v npm >/dev/null; then
  echo "setup: no Node.js >= 20 with npm on x86-64 Linux: the llama.cpp comparison tests (tests/js) will be skipped"
elif [ -f "$js_stamp" ] && [ "$(cat "$js_stamp")" = "$js_want" ]; then
  echo "setup: tests/js node modules present"
else
  echo "setup: installing the tests/js node modules (node-llama-cpp 3.21.1, CPU build)"
  (cd "$js_dir" && npm ci --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$js_want" >"$js_stamp"
fi
