#!/usr/bin/env python3
"""Edits a built wasm module into one the C toolchain will not produce (for the hostile-guest tests).

    wasm_edit.py add-start EXPORT IN OUT      # a start section calling the function exported as EXPORT
    wasm_edit.py rename-export OLD NEW IN OUT
"""
import sys


def read_uleb(b, i):
    n = shift = 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return n, i


def uleb(n):
    out = bytearray()
    while True:
        c = n & 0x7F
        n >>= 7
        out.append(c | (0x80 if n else 0))
        if not n:
            return bytes(out)


def sections_of(data):
    assert data[:8] == b"\0asm\1\0\0\0", "not a wasm module"
    out, i = [], 8
    while i < len(data):
        sid = data[i]
        size, i = read_uleb(data, i + 1)
        out.append([sid, data[i:i + size]])
        i += size
    return out


def exports_of(payload):
    n, i = read_uleb(payload, 0)
    out = []
    for _ in range(n):
        length, i = read_uleb(payload, i)
        name = payload[i:i + length].decode()
        i += length
        kind = payload[i]
        index, i = read_uleb(payload, i + 1)
        out.append((name, kind, index))
    return out


def main():
    op, args = sys.argv[1], sys.argv[2:]
    src, dst = args[-2], args[-1]
    secs = sections_of(open(src, "rb").read())
    at = next(k for k, s in enumerate(secs) if s[0] == 7)
    exports = exports_of(secs[at][1])
    if op == "add-start":
        index = next(i for name, kind, i in exports if name == args[0] and kind == 0)
        secs.insert(at + 1, [8, uleb(index)])
    elif op == "rename-export":
        exports = [(args[1] if name == args[0] else name, kind, i) for name, kind, i in exports]
        payload = uleb(len(exports))
        for name, kind, i in exports:
            payload += uleb(len(name.encode())) + name.encode() + bytes([kind]) + uleb(i)
        secs[at][1] = payload
    else:
        sys.exit(f"unknown operation {op}")
    with open(dst, "wb") as f:
        f.write(b"\0asm\1\0\0\0")
        for sid, payload in secs:
            f.write(bytes([sid]) + uleb(len(payload)) + payload)


if __name__ == "__main__":
    main()
