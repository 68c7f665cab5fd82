// Realm against llama.cpp on every llama-family variant the loader claims: tiny random-weight
// models written by `realm synth` (qwen2: q/k/v biases, tied output, NeoX RoPE; llama3:
// rope_freqs.weight; llama with linear RoPE scaling, rope.scaling.attn_factor and tied output) are
// run by `realm run` and by
// llama.cpp (node-llama-cpp@3.21.1's prebuilt CPU addon) on the same prompt ids. Compared: the
// log-softmax of the last prompt position over the whole vocabulary (max |delta|), and the greedy
// ids up to the first near-tie, once with an F32 KV cache and flash attention off in llama.cpp
// (realm --kv-type f32) and once with both defaults (F16 KV cache, llama.cpp's flash attention).
//
// Usage: node llamacpp_archs_test.mjs --realm BIN --shared DIR --out DIR [--threads N]
// Exit status: 0 pass, 1 mismatch or error, 77 skipped (node-llama-cpp is not installed: run
// scripts/setup.sh).
import {spawnSync} from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const NEAR_TIE = 1e-3;    // greedy ids are compared up to a step whose top-2 gap is below this
const N_GREEDY = 16;

const args = {threads: "1"};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
for (const k of ["realm", "shared", "out"]) {
  if (!args[k]) {
    console.error(`usage: node ${path.basename(process.argv[1])} --realm BIN --shared DIR --out DIR [--threads N]`);
    process.exit(1);
  }
}

let getLlama;
try {
  ({getLlama} = await import("node-llama-cpp"));
} catch (e) {
  console.log(`SKIP: node-llama-cpp is not installed in tests/js (run scripts/setup.sh): ${e.message}`);
  process.exit(77);
}

const MODELS = [
  {preset: "qwen2-tiny", vocab: "qwen2"},
  {preset: "llama3-tiny", vocab: "llama-bpe"},
  {preset: "llama-linear-tiny", vocab: "llama-bpe"},
];
const PROMPTS = [
  "The quick brown fox jumps over the lazy dog",
  // > 64 tokens: a prompt that long takes llama.cpp's tiled flash-attention kernel (F16 cache),
  // realm its one-query kernel for every row (docs/model.md), so the default config allows more.
  Array.from({length: 12}, (_, i) => `Step ${i + 1}: count the apples, then the pears.`).join(" "),
];
// tolerance: max |delta log-prob|. With an F32 cache both sides do the same arithmetic up to
// float summation order (measured <= 1.4e-5). With the defaults (F16 cache, flash attention) realm
// follows llama.cpp's F16 arithmetic, but the last-bit differences of the F32 matmuls now and then
// round a K/V cache entry or the F16 V accumulator to the neighbouring F16 value (2^-11 relative),
// which random weights amplify: measured 1e-5 .. 3e-3, as model_test sees against a native
// llama.cpp build (synth-256x2.f32). That check guards against gross errors in the F16 path.
// For prompts of >= 64 tokens llama.cpp switches to its tiled kernel (F32 query and accumulator),
// while realm keeps the one-query arithmetic for every row so that its logits never depend on how
// a prompt is split into steps: there the two differ by the F16 accumulator's rounding, measured
// 2.4e-2 .. 5.6e-2 (tiledTolerance).
const CONFIGS = [
  {name: "f32kv", tolerance: 1e-4, realm: ["--kv-type", "f32"],
   ctx: {flashAttention: false, experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32"}},
  {name: "default", tolerance: 2e-2, tiledTolerance: 0.1, realm: [], ctx: {}},
];

function run(cmd, argv) {
  const r = spawnSync(cmd, argv, {encoding: "utf8", maxBuffer: 1 << 26});
  if (r.status !== 0) {
    throw new Error(`${cmd} ${argv.join(" ")} failed (status ${r.status}):\n${r.stderr}${r.stdout}`);
  }
  return r.stdout;
}

// log-softmax in double.
function logSoftmax(logits) {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(logits, (v) => v - lse);
}

// node-llama-cpp gives probabilities (expf(l - max) / sum, in float); their logs, renormalized in
// double so that the rounding of its float sum cancels.
function logProbsFromProbabilities(probs, nVocab) {
  const lp = new Float64Array(nVocab).fill(-Infinity);
  let sum = 0;
  for (const [, p] of probs) sum += p;
  for (const [t, p] of probs) lp[t] = Math.log(p) - Math.log(sum);
  return lp;
}

fs.mkdirSync(args.out, {recursive: true});
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const threads = Number(args.threads);
let failures = 0;
const t0 = performance.now();

for (const m of MODELS) {
  const file = path.join(args.out, `${m.preset}.gguf`);
  run(args.realm, ["synth", file, "--preset", m.preset, "--seed", "1", "-t", "1",
                   "--vocab", path.join(args.shared, "vocab", `ggml-vocab-${m.vocab}.gguf`)]);
  const model = await llama.loadModel({modelPath: file, gpuLayers: 0});
  for (const cfg of CONFIGS) {
    for (const [pi, prompt] of PROMPTS.entries()) {
      const logitsFile = path.join(args.out, `${m.preset}.${cfg.name}.p${pi}.logits`);
      const realm = JSON.parse(run(args.realm, [
        "run", "-m", file, "-p", prompt, "-n", String(N_GREEDY), "--temp", "0", "--json",
        "--no-sandbox", "-t", String(threads), "-c", "256", "--logits", logitsFile, ...cfg.realm]));
      const buf = fs.readFileSync(logitsFile);
      const logits = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
      const nVocab = logits.length;

      const ctx = await model.createContext({contextSize: 256, batchSize: 256, threads, sequences: 1, ...cfg.ctx});
      const seq = ctx.getSequence();
      const steps = [];
      for await (const out of seq.evaluateWithMetadata(realm.prompt_ids, {probabilities: true}, {temperature: 0})) {
        const it = out.probabilities.entries();
        const [, p1] = it.next().value;
        const second = it.next().value;
        const gap = second ? Math.log(p1) - Math.log(second[1]) : Infinity;
        steps.push({token: out.token, gap, probs: steps.length === 0 ? out.probabilities : null});
        if (steps.length >= N_GREEDY) break;
      }
      await ctx.dispose();

      const problems = [];
      const ref = logProbsFromProbabilities(steps[0].probs, nVocab);
      if (steps[0].probs.size !== nVocab) problems.push(`llama.cpp gave ${steps[0].probs.size} probabilities, realm ${nVocab} logits`);
      const ours = logSoftmax(logits);
      let maxDelta = 0, compared = 0;
      for (let t = 0; t < nVocab; ++t) {
        if (!(ref[t] > -80)) continue;  // float underflow in llama.cpp's probabilities
        maxDelta = Math.max(maxDelta, Math.abs(ours[t] - ref[t]));
        ++compared;
      }
      const tolerance = cfg.tiledTolerance && realm.prompt_ids.length >= 64 ? cfg.tiledTolerance : cfg.tolerance;
      if (!(maxDelta <= tolerance)) problems.push(`max |delta log-prob| ${maxDelta.toExponential(2)} > ${tolerance}`);

      // Greedy ids up to the first near-tie (where a 1e-4 difference may pick the other token).
      let same = 0, note = "";
      for (; same < steps.length && same < realm.ids.length; ++same) {
        if (steps[same].gap < NEAR_TIE) { note = `, near-tie at step ${same} (gap ${steps[same].gap.toExponential(1)})`; break; }
        if (steps[same].token !== realm.ids[same]) {
          problems.push(`greedy ids differ at step ${same}: realm ${realm.ids[same]}, llama.cpp ${steps[same].token}`);
          break;
        }
      }
      if (!note && same < N_GREEDY && steps.length !== realm.ids.length && !problems.length) {
        problems.push(`generation lengths differ: realm ${realm.ids.length}, llama.cpp ${steps.length}`);
      }
      const ok = problems.length === 0;
      if (!ok) ++failures;
      console.log(`${ok ? "PASS" : "FAIL"} ${m.preset.padEnd(17)} ${cfg.name.padEnd(7)} prompt ${pi} ` +
                  `(${String(realm.prompt_ids.length).padStart(3)} tokens): max |delta log-prob| ` +
                  `${maxDelta.toExponential(2)} (tolerance ${tolerance}) over ${compared} tokens, greedy ${same}/${N_GREEDY} equal${note}` +
                  (ok ? "" : `\n     ${problems.join("\n     ")}`));
    }
  }
  await model.dispose();
  if (!failures) {  // keep the files of a failure for a closer look; else free the disk space
    for (const f of fs.readdirSync(args.out)) {
      if (f.startsWith(`${m.preset}.`)) fs.rmSync(path.join(args.out, f));
    }
  }
}
await llama.dispose();
console.log(`${failures ? "FAILED" : "passed"}: ${MODELS.length} models x ${CONFIGS.length} configs x ` +
            `${PROMPTS.length} prompts, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
process.exit(failures ? 1 : 0);
