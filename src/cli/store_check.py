#!/usr/bin/env python3
"""End-to-end check of `realm tenants|keys|usage` against a real store in a temp dir: the tenant
life cycle, keys (printed once, listed without the key, revoked), usage on an empty database and on
rows inserted with sqlite3, and bad inputs (exit 1 or 2, one clear message)."""
import calendar
import json
import os
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time

realm = sys.argv[1]
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


with tempfile.TemporaryDirectory() as tmp:
    db = os.path.join(tmp, "state", "realm.db")  # the folder does not exist yet
    env = dict(os.environ, REALM_HOME=os.path.join(tmp, "home"))

    def run(*args, store=True):
        extra = ["--db", db] if store else []
        return subprocess.run([realm, *args, *extra], capture_output=True, text=True, timeout=60,
                              env=env)

    def ok(*args):
        r = run(*args)
        check(r.returncode == 0, f"{' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
        return r

    def fails(args, code, needle):
        r = run(*args)
        check(r.returncode == code, f"{' '.join(args)}: exit {r.returncode}, want {code}")
        check(needle in r.stderr, f"{' '.join(args)}: stderr {r.stderr!r} lacks {needle!r}")
        if code == 1:
            check(r.stderr.startswith("realm: error: "), f"{' '.join(args)}: {r.stderr!r}")
        check(r.stdout == "", f"{' '.join(args)}: printed {r.stdout!r}")
        return r

    # Tenants: create, show, update, list, delete.
    guest = os.path.join(tmp, "g.wasm")
    open(guest, "wb").write(b"\0asm\x01\0\0\0")
    ok("tenants", "create", "acme", "--models", "llama,qwen", "--rpm", "60", "--tpm", "5000",
       "--concurrency", "2", "--daily-tokens", "100000", "--memory-mb", "128", "--weight", "2.5",
       "--guest", guest)
    check(os.path.exists(db) and os.path.exists(db + ".secret"), "db or secret not created")
    check(stat.S_IMODE(os.stat(db + ".secret").st_mode) == 0o600, "secret file not 0600")
    ok("tenants", "create", "beta")
    t = json.loads(ok("tenants", "show", "acme", "--json").stdout)
    want = {"id": "acme", "models": ["llama", "qwen"], "guest": guest, "rpm": 60, "tpm": 5000,
            "concurrency": 2, "daily_tokens": 100000, "memory_mb": 128, "weight": 2.5}
    for k, v in want.items():
        check(t.get(k) == v, f"show acme: {k} = {t.get(k)!r}, want {v!r}")
    check(isinstance(t.get("created_at"), int) and t["created_at"] > 1600000000, "created_at")
    check("updated_at" in t, "updated_at missing")
    text = ok("tenants", "show", "acme").stdout
    check("rpm:" in text and "60" in text and "llama,qwen" in text, f"show text: {text!r}")

    # update changes only the options given.
    u = json.loads(ok("tenants", "update", "acme", "--rpm", "0", "--models", "", "--json").stdout)
    check(u["rpm"] == 0 and u["models"] == [], f"update: {u}")
    check(u["tpm"] == 5000 and u["weight"] == 2.5 and u["guest"] == guest, f"update kept: {u}")
    u = json.loads(ok("tenants", "update", "acme", "--models", "*", "--guest", "", "--json").stdout)
    check(u["models"] == [] and u["guest"] == "", f"update '*' / guest '': {u}")
    lst = json.loads(ok("tenants", "list", "--json").stdout)
    check([x["id"] for x in lst] == ["acme", "beta"], f"list: {lst}")
    text = ok("tenants", "list").stdout
    check(text.splitlines()[0].split()[0] == "ID" and "beta" in text, f"list text: {text!r}")

    # Keys.
    r = ok("keys", "create", "--tenant", "acme", "--name", "ci")
    key = r.stdout.splitlines()[0] if r.stdout else ""
    check(key.startswith("rk-") and len(key) == 67, f"key {key!r}")
    key_id = r.stderr.split()[0] if r.stderr else ""
    check(key_id.startswith("key_") and len(key_id) == 16, f"key id on stderr: {r.stderr!r}")
    r = ok("keys", "create", "--admin")
    admin_key = r.stdout.strip()
    check(admin_key.startswith("rk-"), f"admin key {admin_key!r}")
    ok("keys", "create", "--tenant", "beta")
    keys = json.loads(ok("keys", "list", "--json").stdout)
    check(len(keys) == 3, f"keys list: {keys}")
    for k in keys:
        check(set(k) == {"id", "tenant", "name", "admin", "created_at", "revoked_at"}, f"{k}")
    check(key not in json.dumps(keys) and key[3:] not in json.dumps(keys), "key in keys list")
    acme_keys = json.loads(ok("keys", "list", "--tenant", "acme", "--json").stdout)
    check([k["id"] for k in acme_keys] == [key_id], f"keys list --tenant acme: {acme_keys}")
    check(acme_keys and acme_keys[0]["name"] == "ci" and acme_keys[0]["revoked_at"] is None,
          f"{acme_keys}")
    admins = [k for k in keys if k["admin"]]
    check(len(admins) == 1 and admins[0]["tenant"] is None, f"admin key: {admins}")
    text = ok("keys", "list").stdout
    check(key_id in text and key not in text, f"keys list text: {text!r}")
    r = ok("keys", "revoke", key_id)
    check(key_id in r.stdout, f"revoke: {r.stdout!r}")
    acme_keys = json.loads(ok("keys", "list", "--tenant", "acme", "--json").stdout)
    check(acme_keys and isinstance(acme_keys[0]["revoked_at"], int), f"revoked: {acme_keys}")
    # Neither key nor its hex is in any database file.
    blob = b"".join(open(os.path.join(os.path.dirname(db), f), "rb").read()
                    for f in os.listdir(os.path.dirname(db)) if not f.endswith(".secret"))
    check(key.encode() not in blob and key[3:].encode() not in blob, "key text in the database")
    check(admin_key[3:].encode() not in blob, "admin key text in the database")

    # Usage: empty, then rows written straight into the usage table.
    e = json.loads(ok("usage", "--json").stdout)
    check(e["rows"] == [] and e["total"]["requests"] == 0 and e["since"] is None, f"empty: {e}")
    check("total" in ok("usage").stdout, "empty usage text")
    now_ms = int(time.time() * 1000)
    day = 24 * 3600 * 1000
    con = sqlite3.connect(db)
    rows = [  # ts_ms, tenant, model, prompt, completion, cached, status
        (now_ms - 1000, "acme", "llama", 10, 5, 2, 200),
        (now_ms - 2000, "acme", "llama", 20, 7, 0, 500),
        (now_ms - 3000, "acme", "qwen", 3, 1, 0, 200),
        (now_ms - 4000, "beta", "llama", 100, 50, 40, 200),
        (now_ms - 10 * day, "acme", "llama", 1000, 1000, 0, 200),
        (calendar.timegm((2020, 1, 1, 0, 0, 0)) * 1000, "beta", "old", 1, 1, 1, 200),
    ]
    con.executemany("INSERT INTO usage (ts_ms, tenant, model, prompt_tokens, completion_tokens, "
                    "cached_tokens, status, request_id, key_id, endpoint, duration_ms, "
                    "finish_reason) VALUES (?, ?, ?, ?, ?, ?, ?, 'r', 'k', '/v1/completions', 1, "
                    "'stop')", rows)
    con.commit()
    con.close()
    a = json.loads(ok("usage", "--json").stdout)
    check(len(a["rows"]) == 4 and a["total"]["requests"] == 6, f"all time: {a}")
    w = json.loads(ok("usage", "--since", "7d", "--json").stdout)
    want_rows = [
        {"tenant": "acme", "model": "llama", "requests": 2, "errors": 1, "prompt_tokens": 30,
         "completion_tokens": 12, "cached_tokens": 2},
        {"tenant": "acme", "model": "qwen", "requests": 1, "errors": 0, "prompt_tokens": 3,
         "completion_tokens": 1, "cached_tokens": 0},
        {"tenant": "beta", "model": "llama", "requests": 1, "errors": 0, "prompt_tokens": 100,
         "completion_tokens": 50, "cached_tokens": 40},
    ]
    check(w["rows"] == want_rows, f"--since 7d rows: {w['rows']}")
    check(w["total"] == {"requests": 4, "errors": 1, "prompt_tokens": 133,
                         "completion_tokens": 63, "cached_tokens": 42}, f"total: {w['total']}")
    check(isinstance(w["since"], str) and w["since"].endswith("Z"), f"since: {w['since']}")
    t1 = json.loads(ok("usage", "--tenant", "acme", "--since", "24h", "--json").stdout)
    check([(r["tenant"], r["model"]) for r in t1["rows"]] == [("acme", "llama"), ("acme", "qwen")],
          f"--tenant acme: {t1['rows']}")
    d = json.loads(ok("usage", "--since", "2021-01-01", "--json").stdout)
    check(d["total"]["requests"] == 5 and d["since"] == "2021-01-01T00:00:00Z", f"date: {d}")
    f = json.loads(ok("usage", "--since", "2019-12-31T23:59:59Z", "--json").stdout)
    check(f["total"]["requests"] == 6, f"full time: {f['total']}")
    m = json.loads(ok("usage", "--since", "30m", "--json").stdout)
    check(m["total"]["requests"] == 4, f"30m: {m['total']}")
    # The object is the admin API's (GET /admin/usage): these fields, in this order.
    check(list(m) == ["since", "since_ms", "tenant", "rows", "total"], f"usage fields: {list(m)}")
    check(m["tenant"] is None and isinstance(m["since_ms"], int), f"usage: {m}")
    check(e["since_ms"] == 0 and e["tenant"] is None, f"empty usage: {e}")
    check(t1["tenant"] == "acme", f"--tenant acme: {t1['tenant']}")
    check(d["since_ms"] == calendar.timegm((2021, 1, 1, 0, 0, 0)) * 1000, f"since_ms: {d}")
    u = json.loads(ok("usage", "--since", str(calendar.timegm((2021, 1, 1, 0, 0, 0))),
                      "--json").stdout)  # Unix seconds
    check(u["total"]["requests"] == 5 and u["since"] == "2021-01-01T00:00:00Z", f"unix: {u}")
    check(json.loads(ok("usage", "--since", "2w", "--json").stdout)["total"]["requests"] == 5,
          "--since 2w")
    check(json.loads(ok("usage", "--since", "90s", "--json").stdout)["total"]["requests"] == 4,
          "--since 90s")
    text = ok("usage", "--since", "7d").stdout
    lines = text.splitlines()
    check(any(l.split()[:3] == ["acme", "llama", "2"] for l in lines if l.strip()), f"{text!r}")
    check(lines and lines[-1].split()[:2] == ["total", "4"], f"usage total line: {text!r}")

    # Deleting a tenant revokes its keys; its usage stays.
    r = ok("tenants", "delete", "beta")
    check("deleted" in r.stdout, f"delete: {r.stdout!r}")
    keys = json.loads(ok("keys", "list", "--json").stdout)
    check(len(keys) == 3 and all(k["revoked_at"] for k in keys if not k["admin"]), f"{keys}")
    check(json.loads(ok("usage", "--tenant", "beta", "--json").stdout)["total"]["requests"] == 2,
          "beta's usage went with the tenant")

    # Bad inputs.
    fails(("tenants", "show", "nobody"), 1, "no tenant 'nobody'")
    fails(("tenants", "update", "nobody", "--rpm", "1"), 1, "no tenant 'nobody'")
    fails(("tenants", "delete", "nobody"), 1, "no tenant 'nobody'")
    fails(("tenants", "create", "acme"), 1, "already exists")
    fails(("tenants", "create", "bad id"), 1, "tenant id 'bad id' is invalid")
    fails(("tenants", "create", "x", "--weight", "0"), 1, "weight must be a finite number > 0")
    fails(("tenants", "create", "x", "--weight", "-2"), 1, "got -2")
    fails(("tenants", "create", "x", "--weight", "abc"), 2, "--weight")
    fails(("tenants", "create", "x", "--rpm", "-1"), 1, "rpm must be >= 0")
    fails(("tenants", "create", "x", "--concurrency", "0"), 1, "concurrency must be >= 1")
    fails(("tenants", "create", "x", "--memory-mb", "5000"), 1, "memory_mb must be in 1..4096")
    fails(("tenants", "create", "x", "--models", "a,,b"), 2, "--models")
    fails(("tenants", "create", "x", "--guest", os.path.join(tmp, "missing.wasm")), 1,
          "missing.wasm")
    notwasm = os.path.join(tmp, "not.wasm")
    open(notwasm, "w").write("hello")
    fails(("tenants", "create", "x", "--guest", notwasm), 1, "not a wasm module")
    check(run("tenants", "show", "x").returncode == 1, "a failed create left tenant x")
    fails(("keys", "create", "--tenant", "nobody"), 1, "no tenant 'nobody'")
    fails(("keys", "create"), 2, "--tenant T or --admin")
    fails(("keys", "create", "--tenant", "acme", "--admin"), 2, "excludes")
    fails(("keys", "list", "--tenant", "nobody"), 1, "no tenant 'nobody'")
    fails(("keys", "revoke", "key_000000000000"), 1, "no key 'key_000000000000'")
    for since in ("yesterday", "2024-13-01", "2024-02-30", "2024-01-01T25:00:00Z", "7x", "h",
                  "2024-01-01 00:00:00", "", "-5", "1234567890123"):
        fails(("usage", "--since", since), 2, "--since")
    fails(("tenants",), 2, "")  # a subcommand is required

    # A missing secret while keys are active is refused (no new secret that fails every key).
    os.rename(db + ".secret", db + ".secret.saved")
    fails(("keys", "list"), 1, "is missing but")
    check(not os.path.exists(db + ".secret"), "a missing secret was made anew")
    os.rename(db + ".secret.saved", db + ".secret")
    ok("keys", "list")

    # A garbage database and an unusable folder are errors, not crashes.
    garbage = os.path.join(tmp, "garbage.db")
    open(garbage, "wb").write(b"Z" * 8192)
    r = subprocess.run([realm, "tenants", "list", "--db", garbage], capture_output=True,
                       text=True, timeout=60)
    check(r.returncode == 1 and r.stderr.startswith("realm: error: ") and
          "not a database" in r.stderr, f"garbage db: {r.returncode} {r.stderr!r}")
    r = subprocess.run([realm, "tenants", "list", "--db", os.path.join(guest, "x", "realm.db")],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 1 and r.stderr.startswith("realm: error: "),
          f"unusable folder: {r.returncode} {r.stderr!r}")
    # A newer schema is refused.
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version = 999")
    con.commit()
    con.close()
    fails(("tenants", "list"), 1, "newer")

    # --secret-file and the default location ($REALM_HOME).
    other = os.path.join(tmp, "other")
    r = subprocess.run([realm, "tenants", "create", "z", "--db", os.path.join(other, "r.db"),
                        "--secret-file", os.path.join(other, "my.secret")], capture_output=True,
                       text=True, timeout=60)
    check(r.returncode == 0 and os.path.exists(os.path.join(other, "my.secret")) and
          not os.path.exists(os.path.join(other, "r.db.secret")), f"--secret-file: {r.stderr!r}")
    r = run("tenants", "create", "home", store=False)
    check(r.returncode == 0 and os.path.exists(os.path.join(tmp, "home", "realm.db")),
          f"$REALM_HOME default: {r.returncode} {r.stderr!r}")

for f in failures:
    print("FAIL:", f)
print(f"store CLI checked, {len(failures)} failures")
sys.exit(1 if failures else 0)
