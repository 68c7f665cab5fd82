#!/usr/bin/env python3
"""End-to-end check of `realm pull` and `realm models` against a local hub mirror (mirror.py)
serving fixtures built here from the shared models: pull by repo:quant, by file and by URL; a
second pull is a no-op; resume after a cut connection (within one run and across runs, and when
the server ignores Range); a wrong published sha256, a non-GGUF file, a missing repo or quant, a
gated repo (HF_TOKEN, never sent to the CDN host); a full disk (RLIMIT_FSIZE, and a small tmpfs
when mount works); a split model; `realm run -m NAME` giving the same text as the file itself.
Usage: pull_check.py REALM SHARED_DIR"""
import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mirror as mirror_mod  # noqa: E402

realm, shared = sys.argv[1], sys.argv[2]
quant_dir = os.path.join(shared, "models/quant")
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg, file=sys.stderr)
    return cond


def sha(path):
    return mirror_mod.sha256_file(path)


tmp = tempfile.mkdtemp(prefix="realm_hub_test_")
fx = os.path.join(tmp, "fixtures")
os.makedirs(fx)
q8 = os.path.join(quant_dir, "synth-128x2.Q8_0.gguf")
q4 = os.path.join(quant_dir, "synth-128x2.Q4_K_M.gguf")
q2 = os.path.join(quant_dir, "synth-128x2.Q2_K.gguf")
q6 = os.path.join(quant_dir, "synth-128x2.Q6_K.gguf")
not_gguf = os.path.join(fx, "not-a-model.bin")
with open(not_gguf, "wb") as f:
    f.write(b"this is not a GGUF file\n" * 1000)
# A split pair written by `realm split` (llama.cpp's gguf-split layout): 21 tensors, 11 per shard.
shards = subprocess.run([realm, "split", q6, os.path.join(fx, "tiny-Q6_K"), "--max-tensors", "11"],
                        capture_output=True, text=True, check=True).stdout.split()
assert len(shards) == 2, shards

localhost_ok = "127.0.0.1" in {a[4][0] for a in socket.getaddrinfo("localhost", 80)}
files = {
    "tiny.Q8_0.gguf": {"path": q8},
    "tiny.Q4_K_M.gguf": {"path": q4},
    "tiny.Q2_K.gguf": {"path": q2, "sha256": "ab" * 32},  # published sha256 is wrong
    "tiny.Q5_0.gguf": {"path": not_gguf},                 # not a GGUF file
    "split/tiny-Q6_K-00001-of-00002.gguf": {"path": shards[0]},
    "split/tiny-Q6_K-00002-of-00002.gguf": {"path": shards[1]},
}
repos = {
    "test/tiny-GGUF": {"files": files},
    "test/gated-GGUF": {"files": {"gated.Q8_0.gguf": {"path": q8}}, "token": "secret-token",
                        "cdn_host": "localhost" if localhost_ok else "127.0.0.1"},
}
m = mirror_mod.Mirror(repos, plain={"tiny.gguf": q8,
                                    "big.gguf": os.path.join(quant_dir, "synth-128x2.f32.gguf")})
home = os.path.join(tmp, "home")
base_env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "XDG_CACHE_HOME")}
base_env.update(HF_ENDPOINT=m.endpoint, REALM_HOME=home, REALM_PULL_BACKOFF_MS="50")


def realm_cmd(*args, env=None, preexec=None, home_dir=None):
    e = dict(base_env, **(env or {}))
    if home_dir:
        e["REALM_HOME"] = home_dir
    return subprocess.run([realm, *args], capture_output=True, text=True, timeout=300, env=e,
                          preexec_fn=preexec)


def models(home_dir=None):
    r = realm_cmd("models", "list", "--json", home_dir=home_dir)
    check(r.returncode == 0, f"models list: {r.returncode} {r.stderr}")
    return {e["name"]: e for e in json.loads(r.stdout or "[]")}


def staged(home_dir=None):
    """Files left in the staging area (downloads in progress)."""
    root = os.path.join(home_dir or home, "models", ".partial")
    out = []
    for d, _, fs in os.walk(root):
        out += [os.path.relpath(os.path.join(d, f), root) for f in fs]
    return sorted(out)


try:
    # 1. By repo:quant (lower case): the name, the bytes, the resolve -> CDN redirect.
    r = realm_cmd("pull", "test/tiny-GGUF:q8_0")
    check(r.returncode == 0, f"pull q8_0: {r.returncode} {r.stderr}")
    check(r.stdout.strip() == "test/tiny-GGUF:Q8_0", f"pull printed {r.stdout!r}")
    ms = models()
    e = ms.get("test/tiny-GGUF:Q8_0")
    if check(e is not None, f"not listed: {list(ms)}"):
        check(os.path.basename(e["path"]) == "tiny.Q8_0.gguf", f"path {e['path']}")
        check(sha(e["path"]) == sha(q8), "pulled bytes differ")
        check(e["files"][0]["sha256"] == sha(q8), "manifest sha256")
        check(e["source"] == {"kind": "hub", "endpoint": m.endpoint, "repo": "test/tiny-GGUF",
                              "revision": "main"}, f"source {e['source']}")
        check(os.path.isfile(os.path.join(e["dir"], "manifest.json")), "no manifest.json")
    check(len(m.requests("/test/tiny-GGUF/resolve/main/tiny.Q8_0.gguf")) == 1, "no resolve")
    check(len(m.requests("/cdn/test/tiny-GGUF/tiny.Q8_0.gguf")) == 1, "no CDN download")
    check(staged() == [], f"staging not empty: {staged()}")

    # 2. A second pull is a no-op that says so.
    m.clear_log()
    r = realm_cmd("pull", "test/tiny-GGUF:Q8_0")
    check(r.returncode == 0 and "already" in r.stderr, f"second pull: {r.stderr}")
    check(r.stdout.strip() == "test/tiny-GGUF:Q8_0", "second pull name")
    check(m.requests("/cdn") == [] and m.requests("/api") == [], "second pull downloaded")

    # 3. show (manifest + GGUF summary), run and tokenize through the store name.
    r = realm_cmd("models", "show", "test/tiny-GGUF:Q8_0", "--json")
    check(r.returncode == 0, f"show: {r.stderr}")
    if r.returncode == 0:
        j = json.loads(r.stdout)
        check(j["gguf"]["architecture"] == "llama", f"arch {j['gguf'].get('architecture')}")
        check(j["gguf"]["quant"] == "Q8_0", f"quant {j['gguf'].get('quant')}")
        check(j["gguf"]["n_tensors"] > 0, "n_tensors")
    r = realm_cmd("models", "show", "test/tiny-GGUF:Q8_0")
    check(r.returncode == 0 and "architecture: llama" in r.stdout, f"show text: {r.stdout}")
    prompt = ["-p", "Once upon a time", "-n", "4", "--temp", "0", "-t", "2"]
    a = realm_cmd("run", "-m", "test/tiny-GGUF:Q8_0", *prompt)
    b = realm_cmd("run", "-m", q8, *prompt)
    check(a.returncode == 0 and b.returncode == 0, f"run: {a.stderr} {b.stderr}")
    check(a.stdout == b.stdout, f"run by name {a.stdout!r} != by path {b.stdout!r}")
    a = realm_cmd("tokenize", "-m", "test/tiny-GGUF:Q8_0", "-p", "hello world")
    b = realm_cmd("tokenize", "-m", q8, "-p", "hello world")
    check(a.returncode == 0 and a.stdout == b.stdout, f"tokenize: {a.stdout} {b.stdout}")
    r = realm_cmd("info", "test/tiny-GGUF:Q8_0", "--json")
    check(r.returncode == 0 and json.loads(r.stdout)["architecture"] == "llama", "info by name")

    # 4. The default quant (Q4_K_M), and owner/repo resolving to it.
    r = realm_cmd("pull", "test/tiny-GGUF", "--quiet")
    check(r.returncode == 0 and r.stdout.strip() == "test/tiny-GGUF:Q4_K_M",
          f"default quant: {r.stdout} {r.stderr}")
    check(r.stderr == "", f"--quiet printed {r.stderr!r}")
    r = realm_cmd("info", "test/tiny-GGUF", "--json")
    check(r.returncode == 0 and json.loads(r.stdout)["file"].endswith("tiny.Q4_K_M.gguf"),
          "owner/repo means :Q4_K_M")

    # 5. By file in the repo, and by URL (the ETag carries the sha256).
    r = realm_cmd("pull", "test/tiny-GGUF/tiny.Q4_K_M.gguf")
    check(r.returncode == 0 and r.stdout.strip() == "test/tiny-GGUF/tiny.Q4_K_M.gguf",
          f"by file: {r.stdout} {r.stderr}")
    url = f"{m.endpoint}/cdn/test/tiny-GGUF/tiny.Q8_0.gguf"
    r = realm_cmd("pull", url)
    url_name = f"127.0.0.1:{m.port}/cdn/test/tiny-GGUF/tiny.Q8_0.gguf"
    check(r.returncode == 0 and r.stdout.strip() == url_name, f"by URL: {r.stdout} {r.stderr}")
    check("publishes no sha256" not in r.stderr, "URL sha256 from the ETag not used")
    ms = models()
    check(url_name in ms and ms[url_name]["source"] == {"kind": "url", "url": url},
          f"URL entry: {ms.get(url_name)}")
    r = realm_cmd("info", url_name, "--json")
    check(r.returncode == 0, f"info by URL name: {r.stderr}")
    r = realm_cmd("pull", f"{m.endpoint}/plain/tiny.gguf")
    check(r.returncode == 0 and "publishes no sha256" in r.stderr,
          f"URL without sha256: {r.returncode} {r.stderr}")

    # 6. Resume after a cut connection, within one run (curl retries with Range) ...
    check(realm_cmd("models", "rm", "test/tiny-GGUF:Q8_0").returncode == 0, "rm")
    m.clear_log()
    m.cut["tiny.Q8_0.gguf"] = 200000
    r = realm_cmd("pull", "test/tiny-GGUF:Q8_0")
    check(r.returncode == 0, f"pull after cut: {r.stderr}")
    cdn = m.requests("/cdn/test/tiny-GGUF/tiny.Q8_0.gguf")
    check(len(cdn) == 2 and cdn[1][2].get("Range") == "bytes=200000-",
          f"resume requests: {[c[2].get('Range') for c in cdn]}")
    check(sha(models()["test/tiny-GGUF:Q8_0"]["path"]) == sha(q8), "resumed bytes differ")
    # ... across runs (no retries: the first run fails and keeps the partial) ...
    check(realm_cmd("models", "rm", "test/tiny-GGUF:Q8_0").returncode == 0, "rm")
    m.cut["tiny.Q8_0.gguf"] = 300000
    r = realm_cmd("pull", "test/tiny-GGUF:Q8_0", env={"REALM_PULL_RETRIES": "0"})
    check(r.returncode == 1 and "resume" in r.stderr, f"cut, no retries: {r.stderr}")
    check(staged() == ["test%2Ftiny-GGUF%3AQ8_0/tiny.Q8_0.gguf.partial"], f"partial: {staged()}")
    check("test/tiny-GGUF:Q8_0" not in models(), "a failed pull is listed")
    m.clear_log()
    r = realm_cmd("pull", "test/tiny-GGUF:Q8_0")
    cdn = m.requests("/cdn/test/tiny-GGUF/tiny.Q8_0.gguf")
    check(r.returncode == 0 and len(cdn) == 1 and cdn[0][2].get("Range") == "bytes=300000-",
          f"resume across runs: {r.stderr} {[c[2].get('Range') for c in cdn]}")
    check(sha(models()["test/tiny-GGUF:Q8_0"]["path"]) == sha(q8), "resumed bytes differ")
    # ... and when the server answers the Range request with the whole file (200): from 0.
    check(realm_cmd("models", "rm", "test/tiny-GGUF:Q8_0").returncode == 0, "rm")
    m.cut["tiny.Q8_0.gguf"] = 100000
    m.ignore_range.add("tiny.Q8_0.gguf")
    r = realm_cmd("pull", "test/tiny-GGUF:Q8_0")
    check(r.returncode == 0, f"200 to a range request: {r.stderr}")
    check(sha(models()["test/tiny-GGUF:Q8_0"]["path"]) == sha(q8), "restarted bytes differ")

    # 7. A wrong published sha256: rejected, nothing in the store or staging.
    r = realm_cmd("pull", "test/tiny-GGUF:Q2_K")
    check(r.returncode == 1 and "sha256 mismatch" in r.stderr and "ab" * 32 in r.stderr,
          f"sha mismatch: {r.stderr}")
    check("test/tiny-GGUF:Q2_K" not in models() and staged() == [], f"left: {staged()}")
    # 8. Not a GGUF file: rejected the same way.
    r = realm_cmd("pull", "test/tiny-GGUF:Q5_0")
    check(r.returncode == 1 and "not a valid GGUF file" in r.stderr, f"non-GGUF: {r.stderr}")
    check("test/tiny-GGUF:Q5_0" not in models() and staged() == [], f"left: {staged()}")
    # 9. A missing repo, quant or file: named (and the quants the repo has listed).
    r = realm_cmd("pull", "test/nope-GGUF:Q8_0")
    check(r.returncode == 1 and "test/nope-GGUF" in r.stderr and "not found" in r.stderr,
          f"missing repo: {r.stderr}")
    r = realm_cmd("pull", "test/tiny-GGUF:Q3_K_M")
    check(r.returncode == 1 and "Q3_K_M" in r.stderr and "Q4_K_M" in r.stderr and
          "Q8_0" in r.stderr and "Q6_K" in r.stderr, f"missing quant: {r.stderr}")
    r = realm_cmd("pull", "test/tiny-GGUF/nothere.gguf")
    check(r.returncode == 1 and "nothere.gguf" in r.stderr, f"missing file: {r.stderr}")
    r = realm_cmd("pull", "not a spec")
    check(r.returncode == 2, f"bad SPEC exit {r.returncode}")
    r = realm_cmd("run", "-m", "test/never-pulled", "-p", "x")
    check(r.returncode == 1 and "neither a file nor a pulled model" in r.stderr and
          "realm pull" in r.stderr, f"unresolved -m: {r.stderr}")

    # 10. A gated repo: 401 mentions HF_TOKEN; with it the pull works, and the token goes to the
    # hub host but not to the CDN host the download is redirected to.
    r = realm_cmd("pull", "test/gated-GGUF:Q8_0")
    check(r.returncode == 1 and "HF_TOKEN" in r.stderr and "401" in r.stderr, f"gated: {r.stderr}")
    m.clear_log()
    r = realm_cmd("pull", "test/gated-GGUF:Q8_0", env={"HF_TOKEN": "secret-token"})
    check(r.returncode == 0, f"gated with token: {r.stderr}")
    auth = lambda reqs: [q[2].get("Authorization") for q in reqs]  # noqa: E731
    check(auth(m.requests("/api/models/test/gated-GGUF")) == ["Bearer secret-token"],
          "token not sent to the API")
    check(auth(m.requests("/test/gated-GGUF/resolve")) == ["Bearer secret-token"],
          "token not sent to resolve")
    if localhost_ok:
        check(auth(m.requests("/cdn/test/gated-GGUF")) == [None], "token sent to the CDN host")

    # 11. A split model: every shard, in one entry, the first shard resolved.
    r = realm_cmd("pull", "test/tiny-GGUF:Q6_K")
    check(r.returncode == 0, f"split pull: {r.stderr}")
    e = models().get("test/tiny-GGUF:Q6_K")
    if check(e is not None, "split entry missing"):
        check([f["name"] for f in e["files"]] == ["tiny-Q6_K-00001-of-00002.gguf",
                                                   "tiny-Q6_K-00002-of-00002.gguf"],
              f"split files {e['files']}")
        check(e["path"].endswith("tiny-Q6_K-00001-of-00002.gguf"), f"split path {e['path']}")
        for f, s in zip(e["files"], shards):
            check(sha(os.path.join(e["dir"], f["name"])) == sha(s), f"shard {f['name']} bytes")
        r = realm_cmd("models", "show", "test/tiny-GGUF:Q6_K", "--json")
        check(r.returncode == 0 and json.loads(r.stdout)["gguf"]["n_tensors"] == 21,
              f"split show: {r.stdout[:200]} {r.stderr}")
        # Whether the model loader opens split models is up to the loader; when it does, the
        # text must match the unsplit file's.
        a = realm_cmd("run", "-m", "test/tiny-GGUF:Q6_K", *prompt)
        if a.returncode == 0:
            b = realm_cmd("run", "-m", q6, *prompt)
            check(a.stdout == b.stdout, f"split run {a.stdout!r} != {b.stdout!r}")
        else:
            print("note: the loader does not open split models yet:", a.stderr.strip())

    # 12. A full disk, as the file size limit (RLIMIT_FSIZE, SIGXFSZ ignored: EFBIG) ...
    home2 = os.path.join(tmp, "home2")

    def limit_fsize():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (150000, 150000))

    r = realm_cmd("pull", "test/tiny-GGUF:Q8_0", preexec=limit_fsize, home_dir=home2)
    check(r.returncode == 1 and "disk full" in r.stderr and "tiny.Q8_0.gguf.partial" in r.stderr,
          f"EFBIG: {r.returncode} {r.stderr}")
    check(models(home2) == {}, "EFBIG left an entry")
    check(staged(home2) == ["test%2Ftiny-GGUF%3AQ8_0/tiny.Q8_0.gguf.partial"],
          f"EFBIG partial: {staged(home2)}")
    r = realm_cmd("pull", "test/tiny-GGUF:Q8_0", home_dir=home2)
    check(r.returncode == 0 and sha(models(home2)["test/tiny-GGUF:Q8_0"]["path"]) == sha(q8),
          f"resume after EFBIG: {r.stderr}")
    # ... and a small tmpfs (ENOSPC) when this machine lets us mount one.
    mnt = os.path.join(tmp, "tmpfs")
    os.makedirs(mnt)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", mnt],
                             capture_output=True).returncode == 0
    if mounted:
        try:
            # The size is known from the listing: refused before downloading.
            r = realm_cmd("pull", "test/tiny-GGUF:Q8_0", home_dir=mnt)
            check(r.returncode == 1 and "disk full" in r.stderr and "needs" in r.stderr,
                  f"tmpfs, known size: {r.stderr}")
            # By URL (the size is not known beforehand): ENOSPC while writing.
            r = realm_cmd("pull", f"{m.endpoint}/plain/big.gguf", home_dir=mnt)
            check(r.returncode == 1 and "disk full" in r.stderr and
                  "No space left on device" in r.stderr, f"tmpfs ENOSPC: {r.stderr}")
            check(models(mnt) == {}, "ENOSPC left an entry")
        finally:
            subprocess.run(["umount", mnt])
    else:
        print("note: mount -t tmpfs not permitted here; ENOSPC covered by RLIMIT_FSIZE only")

    # 13. rm: gone, and the name no longer resolves.
    r = realm_cmd("models", "rm", "test/tiny-GGUF")
    check(r.returncode == 0 and "removed test/tiny-GGUF:Q4_K_M" in r.stdout, f"rm: {r.stdout}")
    check("test/tiny-GGUF:Q4_K_M" not in models(), "rm left the entry")
    r = realm_cmd("info", "test/tiny-GGUF")
    check(r.returncode == 1 and "neither a file nor a pulled model" in r.stderr, "rm'd resolves")
    r = realm_cmd("models", "rm", "test/tiny-GGUF")
    check(r.returncode == 1 and "no pulled model" in r.stderr, f"rm twice: {r.stderr}")
finally:
    m.stop()
    shutil.rmtree(tmp, ignore_errors=True)

if failures:
    print(f"{len(failures)} failure(s)", file=sys.stderr)
    sys.exit(1)
print("hub pull checks passed")
