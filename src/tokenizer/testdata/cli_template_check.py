#!/usr/bin/env python3
"""End-to-end check of `realm template`: for every ../shared/vocab GGUF with a chat template, and
for llama-spm (no template: the ChatML fallback), renders message lists with the realm binary and
with python3-jinja2 (render_jinja.make_env), using the BOS/EOS texts read from the GGUF here, and
compares the bytes. Also checks exit codes for errors.

Usage: cli_template_check.py REALM_BIN SHARED_DIR
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import render_jinja  # noqa: E402

CHATML = ("{%- for message in messages -%}\n"
          "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}\n"
          "{%- endfor -%}\n"
          "{%- if add_generation_prompt -%}\n"
          "{{- '<|im_start|>assistant\\n' -}}\n"
          "{%- endif -%}\n")

SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
           11: "<q", 12: "<d"}


def read_gguf_metadata(path):
    """The metadata key/values of a GGUF v2/v3 file (minimal reader for this check)."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, data, pos)[0]
        pos += struct.calcsize(fmt)
        return v

    def string():
        nonlocal pos
        n = take("<Q")
        s = data[pos:pos + n].decode("utf-8", errors="replace")
        pos += n
        return s

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("<I"), take("<Q")
            return [value(et) for _ in range(n)]
        return take(SCALARS[t])

    assert data[:4] == b"GGUF"
    pos = 4
    take("<I")  # version
    take("<Q")  # n_tensors
    n_kv = take("<Q")
    md = {}
    for _ in range(n_kv):
        k = string()
        md[k] = value(take("<I"))
    return md


def main():
    realm, shared = sys.argv[1], sys.argv[2]
    env = render_jinja.make_env()
    msg_dir = os.path.join(HERE, "messages")
    message_files = ["system_user.json", "multi_turn.json", "unicode.json", "tools.json",
                     "roles_not_alternating.json"]
    failures = 0
    checked = 0
    vocab_dir = os.path.join(shared, "vocab")
    for name in sorted(os.listdir(vocab_dir)):
        if not name.endswith(".gguf"):
            continue
        path = os.path.join(vocab_dir, name)
        md = read_gguf_metadata(path)
        src = md.get("tokenizer.chat_template")
        if src is None and name != "ggml-vocab-llama-spm.gguf":
            continue
        if src is None:
            src = CHATML
        tokens = md.get("tokenizer.ggml.tokens", [])
        bos = tokens[md["tokenizer.ggml.bos_token_id"]] if "tokenizer.ggml.bos_token_id" in md else ""
        eos = tokens[md["tokenizer.ggml.eos_token_id"]] if "tokenizer.ggml.eos_token_id" in md else ""
        for mf in message_files:
            with open(os.path.join(msg_dir, mf), encoding="utf-8") as f:
                doc = json.load(f)
            ctx = dict(doc) if isinstance(doc, dict) else {"messages": doc}
            for gen in (True, False):
                ctx.update(add_generation_prompt=gen, bos_token=bos, eos_token=eos)
                try:
                    want, want_ok = env.from_string(src).render(**ctx).encode("utf-8"), True
                except Exception:  # noqa: BLE001
                    want, want_ok = b"", False
                cmd = [realm, "template", "-m", path, "-f", os.path.join(msg_dir, mf)]
                if not gen:
                    cmd.append("--no-generation-prompt")
                r = subprocess.run(cmd, capture_output=True)
                checked += 1
                ok = (r.returncode == 0 and r.stdout == want) if want_ok else (
                    r.returncode == 1 and r.stdout == b"" and r.stderr.startswith(b"realm: error: "))
                if not ok:
                    failures += 1
                    print(f"MISMATCH {name} {mf} gen={gen}: rc={r.returncode}\n"
                          f"  realm:  {r.stdout[:300]!r} {r.stderr[:300]!r}\n  jinja2: {want[:300]!r}")
    # Usage errors.
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write('{"not_messages": []}')
        bad = f.name
    for cmd in ([realm, "template", "-m", "/nonexistent.gguf", "-f", bad],
                [realm, "template", "-m", os.path.join(vocab_dir, "ggml-vocab-qwen2.gguf"), "-f", bad]):
        r = subprocess.run(cmd, capture_output=True)
        checked += 1
        if r.returncode != 1 or not r.stderr.startswith(b"realm: error: "):
            failures += 1
            print(f"expected an error from {cmd}: rc={r.returncode} {r.stderr!r}")
    os.unlink(bad)
    print(f"{checked} checks, {failures} failures")
    return 1 if failures or checked < 40 else 0


if __name__ == "__main__":
    sys.exit(main())
