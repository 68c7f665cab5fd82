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
