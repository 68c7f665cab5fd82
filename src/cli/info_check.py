#!/usr/bin/env python3
"""End-to-end check of `realm info`: every GGUF in the shared data loads, `--json` has the contract
fields, tensor_type_counts agree with the per-tensor type maps in models/quant/reference.json, and
corrupt files fail with exit code 1 and one clear error line."""
import json
import os
import subprocess
import sys
import tempfile

realm, shared = sys.argv[1], sys.argv[2]
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


def info(path, *extra):
    return subprocess.run([realm, "info", path, *extra], capture_output=True, text=True, timeout=60)


reference = json.load(open(os.path.join(shared, "models/quant/reference.json")))
expected_counts = {}
for entry in reference["files"]:
    counts = {}
    for t in entry["tensor_types"].values():
        counts[t] = counts.get(t, 0) + 1
    check(counts == entry["tensor_type_counts"], f"reference.json inconsistent for {entry['file']}")
    expected_counts[entry["file"]] = counts

n_files = 0
for sub in ("models", "models/quant", "vocab"):
    folder = os.path.join(shared, sub)
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".gguf"):
            continue
        path = os.path.join(folder, name)
        n_files += 1
        r = info(path, "--json")
        check(r.returncode == 0, f"{name}: exit {r.returncode}: {r.stderr.strip()}")
        if r.returncode != 0:
            continue
        j = json.loads(r.stdout)
        for field in ("architecture", "n_tensors", "tensor_type_counts", "file_size", "metadata"):
            check(field in j, f"{name}: missing field {field}")
        check(j["file_size"] == os.path.getsize(path), f"{name}: file_size {j['file_size']}")
        check(sum(j["tensor_type_counts"].values()) == j["n_tensors"], f"{name}: counts sum")
        tokens = j["metadata"].get("tokenizer.ggml.tokens")
        check(isinstance(tokens, dict) and tokens.get("count", 0) > 0,
              f"{name}: token list not summarized: {str(tokens)[:80]}")
        if sub == "models/quant":
            check(j["tensor_type_counts"] == expected_counts.get(name),
                  f"{name}: tensor_type_counts {j['tensor_type_counts']} != "
                  f"reference {expected_counts.get(name)}")
        text = info(path)
        check(text.returncode == 0 and "architecture:" in text.stdout, f"{name}: text output")

check(n_files >= 30, f"only {n_files} GGUF files found under {shared}")

# Corrupt inputs: exit code 1 and a single clear message.
good = open(os.path.join(shared, "models/stories260K.gguf"), "rb").read()
with tempfile.TemporaryDirectory() as tmp:
    cases = {
        "bad-magic": (b"GGUX" + good[4:], "not a GGUF file"),
        "truncated": (good[: len(good) // 2], "outside the data section"),
        "empty": (b"", "file truncated while reading magic"),
        "bad-version": (good[:4] + b"\x07\x00\x00\x00" + good[8:], "unsupported GGUF version 7"),
    }
    for case, (data, needle) in cases.items():
        p = os.path.join(tmp, case + ".gguf")
        open(p, "wb").write(data)
        r = info(p, "--json")
        check(r.returncode == 1, f"{case}: exit {r.returncode}")
        check(r.stdout == "", f"{case}: printed to stdout")
        check(r.stderr.startswith("realm: error: ") and needle in r.stderr,
              f"{case}: stderr {r.stderr!r}")
    r = info(os.path.join(tmp, "missing.gguf"))
    check(r.returncode == 1 and "cannot open" in r.stderr, f"missing file: {r.stderr!r}")

for f in failures:
    print("FAIL:", f)
print(f"{n_files} files checked, {len(failures)} failures")
sys.exit(1 if failures else 0)
