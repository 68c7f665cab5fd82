#!/usr/bin/env python3
"""End-to-end check of `realm run` and `realm perplexity` against llama.cpp's reference outputs."""
import json
import os
import struct
import subprocess
import sys
import tempfile

realm, shared = sys.argv[1], sys.argv[2]
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


def realm_cmd(*args):
    return subprocess.run([realm, *args], capture_output=True, text=True, timeout=300)


stories = os.path.join(shared, "models/stories260K.gguf")
ref = json.load(open(os.path.join(shared, "models/reference/stories260K.json")))
with tempfile.TemporaryDirectory() as tmp:
    for p in ref["prompts"]:
        logits_path = os.path.join(tmp, "logits.bin")
        r = realm_cmd("run", "-m", stories, "-p", p["prompt"], "-n", "64", "--temp", "0",
                      "--json", "-t", "2", "--logits", logits_path)
        check(r.returncode == 0, f"run {p['prompt']!r}: exit {r.returncode} {r.stderr}")
        if r.returncode != 0:
            continue
        j = json.loads(r.stdout)
        check(j["prompt_ids"] == p["prompt_token_ids"], f"prompt ids {j['prompt_ids']}")
        check(j["ids"] == p["continuation_token_ids"], f"{p['prompt']!r}: ids differ")
        check(j["text"] == p["continuation_text"], f"{p['prompt']!r}: text {j['text']!r}")
        check(j["stop"] == "length", f"stop {j['stop']}")
        for k in ("prompt_ms", "prompt_tps", "gen_ms", "gen_tps"):
            check(isinstance(j["timings"].get(k), (int, float)), f"timings.{k} missing")
        raw = open(logits_path, "rb").read()
        check(len(raw) == 4 * p["first_step_n_vocab"], f"logits file has {len(raw)} bytes")
        logits = struct.unpack(f"<{len(raw) // 4}f", raw)
        for top in p["first_step_top5_logits_raw"]:
            check(abs(logits[top["id"]] - top["logit"]) < 1e-3,
                  f"logit {top['id']}: {logits[top['id']]} vs {top['logit']}")

    # Streaming output equals the JSON text.
    r = realm_cmd("run", "-m", stories, "-p", "Once upon a time", "-n", "16", "--temp", "0")
    check(r.returncode == 0 and r.stdout.rstrip("\n") == ref["prompts"][0]["continuation_text"][:len(r.stdout.rstrip("\n"))],
          f"streamed text {r.stdout!r}")

    # Same seed, same output; errors are clear.
    a = realm_cmd("run", "-m", stories, "-p", "Once", "-n", "24", "--seed", "5", "--json")
    b = realm_cmd("run", "-m", stories, "-p", "Once", "-n", "24", "--seed", "5", "--json")
    check(a.returncode == 0 and json.loads(a.stdout)["ids"] == json.loads(b.stdout)["ids"],
          "same seed gave different ids")
    r = realm_cmd("run", "-m", stories, "-p", "Once upon a time", "-n", "100", "-c", "64")
    check(r.returncode == 1 and "exceed the context size 64" in r.stderr, f"ctx error: {r.stderr!r}")
    r = realm_cmd("run", "-m", stories, "-p", "x", "--kv-type", "q8")
    check(r.returncode == 2 and "--kv-type" in r.stderr, f"kv-type error: {r.stderr!r}")
    r = realm_cmd("run", "-m", os.path.join(shared, "vocab/ggml-vocab-llama-spm.gguf"), "-p", "x")
    check(r.returncode == 1 and "missing tensor" in r.stderr, f"vocab-only model: {r.stderr!r}")

    # Perplexity, as llama-perplexity.
    pref = json.load(open(os.path.join(shared, "models/reference/perplexity.json")))
    text = os.path.join(shared, "models/reference/perplexity-text.txt")
    for ctx, want in pref["results"].items():
        r = realm_cmd("perplexity", "-m", stories, "-f", text, "-c", ctx, "--json", "-t", "2")
        check(r.returncode == 0, f"perplexity -c {ctx}: {r.stderr}")
        if r.returncode == 0:
            got = json.loads(r.stdout)["ppl"]
            check(abs(got - want["final"]) <= 1e-3 * want["final"], f"ppl c={ctx}: {got} vs {want['final']}")

for f in failures:
    print("FAIL:", f)
print(f"run/perplexity checks: {len(failures)} failures")
sys.exit(1 if failures else 0)
