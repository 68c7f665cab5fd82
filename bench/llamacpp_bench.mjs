// llama.cpp peer for `realm bench`: the same pp/tg measurement through node-llama-cpp@3.21.1's
// prebuilt llama.cpp addon. Usage: node llamacpp_bench.mjs MODEL.gguf PP TG REPS THREADS
// (run from a folder where node-llama-cpp@3.21.1 is installed; bench/compare.sh does that).
import {getLlama} from "node-llama-cpp";

const [model, pp, tg, reps, threads] = process.argv.slice(2);
const nPP = Number(pp), nTG = Number(tg), nReps = Number(reps), nThreads = Number(threads);
const llama = await getLlama({gpu: false, logLevel: "error"});
const m = await llama.loadModel({modelPath: model, gpuLayers: 0});
const vocab = m.tokens;
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
let seed = 1;
const rand = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed; };
const nVocab = m.fileInsights.tokenizer?.tokens?.length ?? 32000;
const randomTokens = (n) => Array.from({length: n}, () => 3 + (rand() % (nVocab - 3)));
const ppTps = [], tgTps = [];
for (let r = 0; r < nReps + 1; r++) {
  if (nPP > 0) {
    const ctx = await m.createContext({contextSize: Math.max(nPP, 64), batchSize: Math.max(nPP, 64), threads: nThreads, sequences: 1});
    const seq = ctx.getSequence();
    const t0 = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(randomTokens(nPP));
    const dt = (performance.now() - t0) / 1000;
    if (r > 0) ppTps.push(nPP / dt);
    await ctx.dispose();
  }
  if (nTG > 0) {
    const ctx = await m.createContext({contextSize: nTG + 64, batchSize: 64, threads: nThreads, sequences: 1});
    const seq = ctx.getSequence();
    // Greedy generation through the addon's own loop (one decode per token, as llama-bench tg):
    // the first token comes from the 1-token prompt, the clock starts after it.
    let i = 0, t0 = 0;
    for await (const token of seq.evaluate(randomTokens(1), {temperature: 0})) {
      if (i === 0) t0 = performance.now();
      if (++i > nTG) break;
    }
    const dt = (performance.now() - t0) / 1000;
    if (r > 0) tgTps.push(nTG / dt);
    await ctx.dispose();
  }
}
console.log(JSON.stringify({pp: {n: nPP, tps: median(ppTps), runs: ppTps}, tg: {n: nTG, tps: median(tgTps), runs: tgTps}}));
await m.dispose();
