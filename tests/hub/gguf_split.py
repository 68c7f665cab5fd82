#!/usr/bin/env python3
"""Splits a GGUF file in two the way llama.cpp's gguf-split does: PREFIX-00001-of-00002.gguf holds
every metadata key of the input and the first half of the tensors, PREFIX-00002-of-00002.gguf the
rest; both carry split.no (u16, 0-based), split.count (u16) and split.tensors.count (i32). Tensor
bytes are copied unchanged. Used by the hub tests to build a split model from a shared file."""
import struct
import sys

SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
          11: "<q", 12: "<d"}


class Reader:
    def __init__(self, data):
        self.d, self.p = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.p)[0]
        self.p += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = self.d[self.p:self.p + n]
        self.p += n
        return s.decode("utf-8")

    def value(self, t):
        if t in SCALAR:
            return self.take(SCALAR[t])
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("<I"), self.take("<Q")
            return [self.value(et) for _ in range(n)]
        raise ValueError(f"bad GGUF value type {t}")


def gguf_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def kv(key, t, v):
    return gguf_str(key) + struct.pack("<I", t) + struct.pack(SCALAR[t], v)


def split(path, prefix):
    data = open(path, "rb").read()
    r = Reader(data)
    assert data[:4] == b"GGUF", f"{path}: not a GGUF file"
    r.p = 4
    version, n_tensors, n_kv = r.take("<I"), r.take("<Q"), r.take("<Q")
    kv_start = r.p
    alignment, align_kv = 32, b""
    for _ in range(n_kv):
        start = r.p
        key = r.string()
        t = r.take("<I")
        v = r.value(t)
        if key == "general.alignment":
            alignment, align_kv = v, data[start:r.p]
        assert not key.startswith("split."), f"{path} is already split"
    kv_bytes = data[kv_start:r.p]
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        nd = r.take("<I")
        dims = [r.take("<Q") for _ in range(nd)]
        ttype, off = r.take("<I"), r.take("<Q")
        tensors.append((name, dims, ttype, off))
    data_start = (r.p + alignment - 1) // alignment * alignment
    body = data[data_start:]
    order = sorted(range(n_tensors), key=lambda i: tensors[i][3])
    region = {}
    for k, i in enumerate(order):
        end = tensors[order[k + 1]][3] if k + 1 < len(order) else len(body)
        region[i] = body[tensors[i][3]:end]
    half = n_tensors // 2
    groups = [order[:half], order[half:]]
    paths = []
    for no, group in enumerate(groups):
        split_kvs = (kv("split.no", 2, no) + kv("split.count", 2, 2) +
                     kv("split.tensors.count", 5, n_tensors))
        if no == 0:
            kvs, count = kv_bytes + split_kvs, n_kv + 3
        else:
            kvs, count = align_kv + split_kvs, (1 if align_kv else 0) + 3
        infos, blob = b"", b""
        for i in group:
            name, dims, ttype, _ = tensors[i]
            infos += gguf_str(name) + struct.pack("<I", len(dims))
            infos += b"".join(struct.pack("<Q", d) for d in dims)
            infos += struct.pack("<IQ", ttype, len(blob))
            blob += region[i]
            blob += b"\0" * ((-len(blob)) % alignment)
        head = b"GGUF" + struct.pack("<IQQ", version, len(group), count) + kvs + infos
        head += b"\0" * ((-len(head)) % alignment)
        out = f"{prefix}-{no + 1:05d}-of-00002.gguf"
        with open(out, "wb") as f:
            f.write(head + blob)
        paths.append(out)
    return paths


if __name__ == "__main__":
    print("\n".join(split(sys.argv[1], sys.argv[2])))
