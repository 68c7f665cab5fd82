#!/usr/bin/env python3
"""Before/after benchmark of two realm builds on one model, alternating runs (noisy machines).

    bench/ab_binaries.py --old OLD/realm --new NEW/realm -m model.gguf [-r 5] [-t 2] [--depth 932]

Per run and binary: `realm run --no-sandbox -n 64 --json` on a prompt of DEPTH tokens (prefill
tokens/s, then decode at that depth) and `realm bench -r 3 --json` (pp128, tg64). Prints the
medians of each and the median of the per-run ratios new/old with their min-max. REALM_ISA in the
environment applies to both.
"""
import argparse
import json
import statistics
import subprocess

WORDS = ("the of and to in is was for on that with as by at from this have an are or be not but "
         "his they which one had you were her all she there would their we him been has when who "
         "will more no if out so said what up its about into than them can only other new some "
         "could time these two may then do first any my now such like our over man me even most "
         "made after also did many before must through back years where much your way well down "
         "should because each just those people how too little state good very make world still "
         "own see men work long get here between both life being under never day same another "
         "know while last might us great old year off come since against go came right used take "
         "three").split()


def prompt_of(realm, model, depth):
    """The shortest prefix of a fixed word sequence that tokenizes to at least `depth` tokens."""
    words = [WORDS[(i * 7919) % len(WORDS)] for i in range(depth * 2)]

    def n_tokens(k):
        out = subprocess.run([realm, "tokenize", "-m", model, "-p", " ".join(words[:k]),
                              "--add-special"], capture_output=True, text=True, check=True)
        return len(json.loads(out.stdout))

    lo, hi = 1, len(words)
    while lo < hi:
        mid = (lo + hi) // 2
        if n_tokens(mid) >= depth:
            hi = mid
        else:
            lo = mid + 1
    return " ".join(words[:lo])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", required=True)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-r", "--runs", type=int, default=5)
    ap.add_argument("-t", "--threads", default="2")
    ap.add_argument("--depth", type=int, default=932)
    a = ap.parse_args()
    prompt = prompt_of(a.new, a.model, a.depth)
    keys = [f"pp{a.depth}", f"tg@{a.depth}", "pp128", "tg64"]
    res = {b: {k: [] for k in keys} for b in ("old", "new")}
    for _ in range(a.runs):
        for b, exe in (("old", a.old), ("new", a.new)):
            out = subprocess.run([exe, "run", "-m", a.model, "-p", prompt, "-n", "64", "--temp", "0",
                                  "--json", "--no-sandbox", "-t", a.threads],
                                 capture_output=True, text=True, check=True).stdout
            t = json.loads(out)["timings"]
            res[b][keys[0]].append(t["prompt_tps"])
            res[b][keys[1]].append(t["gen_tps"])
            out = subprocess.run([exe, "bench", "-m", a.model, "-t", a.threads, "-r", "3", "--json"],
                                 capture_output=True, text=True, check=True).stdout
            j = json.loads(out)
            res[b]["pp128"].append(j["pp"]["tps"])
            res[b]["tg64"].append(j["tg"]["tps"])
    for k in keys:
        old, new = res["old"][k], res["new"][k]
        ratios = [y / x for x, y in zip(old, new)]
        print(f"{k:8s} old {statistics.median(old):7.0f}  new {statistics.median(new):7.0f}  "
              f"ratio {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
