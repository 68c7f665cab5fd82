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
                      "--json", "-t", "2", "--logits", logits_path, "--no-sandbox")
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

    # The sandbox (default guest) gives the same ids and text as the native loop for every prompt.
    for p in ref["prompts"]:
        r = realm_cmd("run", "-m", stories, "-p", p["prompt"], "-n", "64", "--temp", "0",
                      "--json", "-t", "2")
        check(r.returncode == 0, f"sandbox run {p['prompt']!r}: exit {r.returncode} {r.stderr}")
        if r.returncode != 0:
            continue
        j = json.loads(r.stdout)
        check(j["prompt_ids"] == p["prompt_token_ids"], f"sandbox prompt ids {j['prompt_ids']}")
        check(j["ids"] == p["continuation_token_ids"], f"sandbox {p['prompt']!r}: ids differ")
        check(j["text"] == p["continuation_text"], f"sandbox {p['prompt']!r}: text {j['text']!r}")
        check(j["stop"] == "length", f"sandbox stop {j['stop']}")
    # The same on the 32k-vocab Llama-2 tokenizer model: sandbox ids == native ids == llama.cpp's.
    tiny = os.path.join(shared, "models/llama-2-tiny-random.gguf")
    tref = json.load(open(os.path.join(shared, "models/reference/llama-2-tiny-random.json")))
    for p in tref["prompts"]:
        outs = []
        for mode in ([], ["--no-sandbox"]):
            r = realm_cmd("run", "-m", tiny, "-p", p["prompt"], "-n", "64", "--temp", "0",
                          "-c", "512", "--json", "-t", "2", *mode)
            check(r.returncode == 0, f"tiny {mode} {p['prompt']!r}: {r.stderr}")
            outs.append(json.loads(r.stdout)["ids"] if r.returncode == 0 else None)
        check(outs[0] is not None and outs[0] == outs[1],
              f"tiny {p['prompt']!r}: sandbox and native ids differ")
        check(outs[1] == p["continuation_token_ids"], f"tiny {p['prompt']!r}: ids differ from llama.cpp")
    # Sampled (seeded) generation with penalties and a stop string: sandbox == native.
    args = ["run", "-m", stories, "-p", "Once upon a time", "-n", "48", "--seed", "7",
            "--repeat-penalty", "1.1", "--stop", "park", "--json", "-t", "2"]
    a = realm_cmd(*args)
    b = realm_cmd(*args, "--no-sandbox")
    check(a.returncode == 0 and b.returncode == 0, f"seeded runs: {a.stderr} {b.stderr}")
    if a.returncode == 0 and b.returncode == 0:
        ja, jb = json.loads(a.stdout), json.loads(b.stdout)
        check(ja["ids"] == jb["ids"] and ja["text"] == jb["text"] and ja["stop"] == jb["stop"],
              f"seeded sandbox vs native differ: {ja['ids']} / {jb['ids']}")
    # --logits gives the same bytes in the sandbox as natively; a custom guest that traps ends
    # with a clear error.
    sb_logits, nat_logits = os.path.join(tmp, "sb.bin"), os.path.join(tmp, "nat.bin")
    r = realm_cmd("run", "-m", stories, "-p", "Lily wanted to", "-n", "2", "--logits", sb_logits)
    r2 = realm_cmd("run", "-m", stories, "-p", "Lily wanted to", "-n", "2", "--logits", nat_logits,
                   "--no-sandbox")
    check(r.returncode == 0 and r2.returncode == 0 and
          open(sb_logits, "rb").read() == open(nat_logits, "rb").read(),
          f"--logits in the sandbox: {r.returncode} {r.stderr!r}")
    guests = os.path.join(os.path.dirname(os.path.abspath(realm)), "guests")
    trap_guest = os.path.join(guests, "sbx_unreachable.wasm")
    if os.path.exists(trap_guest):
        r = realm_cmd("run", "-m", stories, "-p", "x", "--guest", trap_guest)
        check(r.returncode == 1 and "guest trapped" in r.stderr and "unreachable" in r.stderr,
              f"trapping guest: {r.returncode} {r.stderr!r}")
    # The two guests that used to kill the process: a start section (SIGSEGV) is refused at load;
    # events of the wrong types (SIGABRT in the event consumer) are refused by the host.
    start_guest = os.path.join(guests, "sbx_x_start_section.wasm")
    if os.path.exists(start_guest):
        r = realm_cmd("run", "-m", stories, "-p", "x", "--guest", start_guest)
        check(r.returncode == 1 and "start section" in r.stderr,
              f"start-section guest: {r.returncode} {r.stderr!r}")
    events_guest = os.path.join(guests, "sbx_bad_events.wasm")
    if os.path.exists(events_guest):
        r = realm_cmd("run", "-m", stories, "-p", "x", "--json", "--guest", events_guest)
        check(r.returncode == 0 and json.loads(r.stdout)["text"] == "ok",
              f"wrongly typed events: {r.returncode} {r.stderr!r} {r.stdout!r}")
    # The example custom guest (its own stop rule: one sentence by default) through --guest.
    sentence_guest = os.path.join(guests, "realm_sentence.wasm")
    if os.path.exists(sentence_guest):
        r = realm_cmd("run", "-m", stories, "-p", "Once upon a time", "-n", "64", "--temp", "0",
                      "--json", "--guest", sentence_guest)
        check(r.returncode == 0, f"--guest realm_sentence: {r.stderr}")
        if r.returncode == 0:
            j = json.loads(r.stdout)
            want = ref["prompts"][0]["continuation_token_ids"]
            check(j["stop"] == "stop" and j["text"].endswith(".") and
                  j["ids"] == want[:len(j["ids"])] and len(j["ids"]) < 64,
                  f"--guest realm_sentence: {j}")
    r = realm_cmd("run", "-m", stories, "-p", "x", "--guest", stories)
    check(r.returncode == 1 and "not a WebAssembly module" in r.stderr, f"non-wasm guest: {r.stderr!r}")

    # Streaming output equals the JSON text.
    r = realm_cmd("run", "-m", stories, "-p", "Once upon a time", "-n", "16", "--temp", "0")
    check(r.returncode == 0 and r.stdout.rstrip("\n") == ref["prompts"][0]["continuation_text"][:len(r.stdout.rstrip("\n"))],
          f"streamed text {r.stdout!r}")

    # Same seed, same output; errors are clear.
    a = realm_cmd("run", "-m", stories, "-p", "Once", "-n", "24", "--seed", "5", "--json")
    b = realm_cmd("run", "-m", stories, "-p", "Once", "-n", "24", "--seed", "5", "--json")
    check(a.returncode == 0 and json.loads(a.stdout)["ids"] == json.loads(b.stdout)["ids"],
          "same seed gave different ids")
    for mode in ([], ["--no-sandbox"]):
        r = realm_cmd("run", "-m", stories, "-p", "Once upon a time", "-n", "100", "-c", "64", *mode)
        check(r.returncode == 1 and "exceed the context size 64" in r.stderr,
              f"ctx error {mode}: {r.stderr!r}")
    r = realm_cmd("run", "-m", stories, "-p", "x", "--kv-type", "q8")
    check(r.returncode == 2 and "--kv-type" in r.stderr, f"kv-type error: {r.stderr!r}")
    r = realm_cmd("run", "-m", os.path.join(shared, "vocab/ggml-vocab-llama-spm.gguf"), "-p", "x")
    check(r.returncode == 1 and "missing tensor" in r.stderr, f"vocab-only model: {r.stderr!r}")

    # Chunk invariance end to end: prompt lengths around the kernels' blocks and tiles and the old
    # 256-token chunks give the same ids in the sandbox as natively, and the same --logits bytes
    # whatever the per-pass budget (-b) cuts them into.
    synth = os.path.join(shared, "models/quant/synth-128x2.Q4_K_M.gguf")
    words = ("the of and to in is was for on that with as by at from this have an are or be not "
             "but his they which one had you were her all she there would their we him been has "
             "when who will more no if out so said what up its about into than them can only "
             "other new some could time these two may then do first any my now such like").split()
    text_words = [words[(i * 7919) % len(words)] for i in range(1200)]

    def n_tokens(k):
        r = realm_cmd("tokenize", "-m", synth, "-p", " ".join(text_words[:k]), "--add-special")
        return len(json.loads(r.stdout))

    def prompt_near(target):  # the shortest word prefix with at least `target` tokens
        lo, hi = 1, len(text_words)
        while lo < hi:
            mid = (lo + hi) // 2
            if n_tokens(mid) >= target:
                hi = mid
            else:
                lo = mid + 1
        return " ".join(text_words[:lo])

    for target in (63, 64, 65, 255, 256, 257, 287, 293, 511, 512, 513):
        prompt = prompt_near(target)
        runs = {}
        for mode in ([], ["--no-sandbox"]):
            r = realm_cmd("run", "-m", synth, "-p", prompt, "-n", "24", "--temp", "0", "--json",
                          "-t", "2", "-c", "1024", *mode)
            check(r.returncode == 0, f"{target}-token prompt {mode}: {r.stderr}")
            runs[bool(mode)] = json.loads(r.stdout) if r.returncode == 0 else None
        if runs[False] and runs[True]:
            check(runs[False]["ids"] == runs[True]["ids"],
                  f"{len(runs[True]['prompt_ids'])}-token prompt: sandbox and native ids differ")
        blobs = set()
        for batch in ("512", "1", "7", "64", "256"):
            path = os.path.join(tmp, f"logits-b{batch}.bin")
            r = realm_cmd("run", "-m", synth, "-p", prompt, "-n", "1", "--temp", "0", "-t", "2",
                          "-c", "1024", "-b", batch, "--no-sandbox", "--logits", path)
            check(r.returncode == 0, f"-b {batch}: {r.stderr}")
            if r.returncode == 0:
                blobs.add(open(path, "rb").read())
        check(len(blobs) == 1, f"{target}-token prompt: --logits differ between -b values")
    r = realm_cmd("run", "-m", stories, "-p", "x", "-b", "0")
    check(r.returncode == 2 and "--batch-size" in r.stderr, f"-b 0: {r.returncode} {r.stderr!r}")
    r = realm_cmd("run", "-m", stories, "-p", "x", "-t", "-1")
    check(r.returncode == 2 and "--threads" in r.stderr, f"-t -1: {r.returncode} {r.stderr!r}")
    r = realm_cmd("run", "-m", stories, "-p", "x", "-n", "2", "-t", "0", "-c", "0")
    check(r.returncode == 0, f"-t 0 -c 0 (every core, the default context): {r.stderr!r}")

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
