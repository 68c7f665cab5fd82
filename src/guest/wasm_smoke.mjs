// Runs the built guest modules under Node's V8 with a mock host (no model): checks the exports
// and imports of docs/abi.md, a request end to end (greedy, stop strings, EOS, logprobs, client
// gone), the hostile-call answers of the exports, and prints the guest's cost per token (time in
// realm_generate outside the host's decode import).
//   node wasm_smoke.mjs realm_default.wasm [realm_sentence.wasm]
import fs from 'node:fs';
import assert from 'node:assert/strict';

const N_VOCAB = 32000, EOS = 2, BOS = 1;
const enc = new TextEncoder(), dec = new TextDecoder();

// Token i >= 3 renders as the byte (i - 3) % 256 for ids < 259, else as "w<i>".
function piece(id) {
  if (id < 3) return new Uint8Array(0);
  if (id < 259) return new Uint8Array([id - 3]);
  return enc.encode(' w' + id);
}

function makeHost(opts = {}) {
  const h = { events: [], decodeMs: 0, decodeCalls: 0, sessions: new Set(), memory: null,
              goneAfter: opts.goneAfter ?? Infinity, script: opts.script ?? null };
  let nextSession = 1;
  const mem = () => new Uint8Array(h.memory.buffer);
  const str = (p, n) => dec.decode(mem().slice(p, p + n));
  const sized = (bytes, p, cap) => {
    if (bytes.length <= cap) mem().set(bytes, p);
    return bytes.length;
  };
  const history = new Map();
  h.realm = {
    model_open: (p, n) => (str(p, n) === 'denied' ? -4 : 7),
    model_info: (m, p, cap) => sized(enc.encode(JSON.stringify(
        {n_vocab: N_VOCAB, n_ctx_train: 2048, bos: BOS, eos: EOS, eog: [EOS], add_bos: true})), p, cap),
    tokenize: (m, p, n, flags, out, cap) => {
      const bytes = mem().slice(p, p + n);
      const ids = [...((flags & 1) ? [BOS] : []), ...Array.from(bytes, (b) => b + 3)];
      if (ids.length <= cap) new Int32Array(h.memory.buffer, out, ids.length).set(ids);
      return ids.length;
    },
    token_piece: (m, id, p, cap) => sized(piece(id), p, cap),
    chat_template: (m, p, n, add, out, cap) => {
      const msgs = JSON.parse(str(p, n));
      return sized(enc.encode(msgs.map((x) => `<${x.role}>${x.content}`).join('') + (add ? '<assistant>' : '')), out, cap);
    },
    session_open: (m, nctx) => { const s = nextSession++; h.sessions.add(s); history.set(s, []); return s; },
    session_close: (s) => (h.sessions.delete(s) ? 0 : -3),
    session_truncate: (s, n) => 0,
    decode: (s, tp, n, lp, cap) => {
      const t0 = performance.now();
      if (!h.sessions.has(s)) return -3;
      if (cap < N_VOCAB) return -6;
      const toks = history.get(s);
      for (const t of new Int32Array(h.memory.buffer, tp, n)) toks.push(t);
      const step = toks.length;
      const logits = new Float32Array(h.memory.buffer, lp, N_VOCAB);
      // A deterministic pseudo-random row; the scripted winner (if any) gets a clear margin.
      let x = (step * 2654435761) >>> 0;
      for (let i = 0; i < N_VOCAB; ++i) {
        x = (x * 1664525 + 1013904223) >>> 0;
        logits[i] = (x >>> 8) / 16777216.0 * 4.0;
      }
      if (h.script) {
        const k = h.decodeCalls;
        if (k < h.script.length) logits[h.script[k]] = 10.0;
      }
      h.decodeCalls++;
      h.decodeMs += performance.now() - t0;
      return N_VOCAB;
    },
    emit: (kind, p, n) => {
      h.events.push({kind, json: JSON.parse(str(p, n))});
      return h.events.filter((e) => e.kind === 1).length >= h.goneAfter ? 1 : 0;
    },
    log: (lvl, p, n) => {},
    clock_ms: () => performance.now(),
    host_error: (p, cap) => sized(enc.encode(h.hostError ?? ''), p, cap),
  };
  // Time spent in host imports (the mock's own cost, decode included) is not guest time.
  h.importMs = 0;
  for (const [name, f] of Object.entries(h.realm)) {
    h.realm[name] = (...args) => {
      const t0 = performance.now();
      try {
        return f(...args);
      } finally {
        h.importMs += performance.now() - t0;
      }
    };
  }
  h.wasi = {
    fd_write: () => 8, fd_close: () => 8, fd_seek: () => 8, fd_fdstat_get: () => 8,
    random_get: (p, n) => { mem().fill(4, p, p + n); return 0; },
    proc_exit: (c) => { throw new Error('proc_exit ' + c); },
    environ_get: () => 0, environ_sizes_get: () => 0, args_get: () => 0, args_sizes_get: () => 0,
    clock_time_get: () => 0,
  };
  return h;
}

function instantiate(module, opts) {
  const h = makeHost(opts);
  h.memory = new WebAssembly.Memory({initial: 64, maximum: 1024});  // 4 MiB, cap 64 MiB
  const inst = new WebAssembly.Instance(module, {env: {memory: h.memory}, realm: h.realm,
                                                 wasi_snapshot_preview1: h.wasi});
  inst.exports._initialize();
  h.x = inst.exports;
  return h;
}

function put(h, s) {
  const bytes = enc.encode(s);
  const p = h.x.realm_alloc(bytes.length);
  assert.ok(p > 0);
  new Uint8Array(h.memory.buffer).set(bytes, p);
  return [p, bytes.length];
}

function generate(h, handle, req) {
  h.events = [];
  const [p, n] = put(h, typeof req === 'string' ? req : JSON.stringify(req));
  const rc = h.x.realm_generate(handle, p, n);
  h.x.realm_free(p);
  return rc;
}

function lastError(h, handle) {
  const need = h.x.realm_last_error(handle, 0, 0);
  if (need <= 0) return '';
  const p = h.x.realm_alloc(need);
  assert.equal(h.x.realm_last_error(handle, p, need), need);
  const s = str(h, p, need);
  h.x.realm_free(p);
  return s;
}
const str = (h, p, n) => dec.decode(new Uint8Array(h.memory.buffer).slice(p, p + n));

const [defaultPath, sentencePath] = process.argv.slice(2);
const mod = new WebAssembly.Module(fs.readFileSync(defaultPath));
const exportNames = WebAssembly.Module.exports(mod).map((e) => e.name).sort();
assert.deepEqual(exportNames, ['_initialize', 'realm_abi_version', 'realm_alloc', 'realm_delete',
                               'realm_free', 'realm_generate', 'realm_last_error', 'realm_new']);
const imports = WebAssembly.Module.imports(mod);
assert.ok(imports.some((i) => i.module === 'env' && i.name === 'memory' && i.kind === 'memory'));
for (const i of imports) {
  assert.ok(i.module === 'realm' || i.module === 'wasi_snapshot_preview1' || i.module === 'env', i.module);
}

// --- ABI misuse answers ---
{
  const h = instantiate(mod);
  assert.equal(h.x.realm_abi_version(), 1);
  assert.equal(generate(h, 1, {prompt: 'x'}), -3, 'generate before new');
  assert.match(lastError(h, 0), /handle 1/);
  const a = h.x.realm_new();
  assert.ok(a > 0);
  assert.equal(h.x.realm_delete(a + 1), -3, 'forged handle');
  assert.equal(h.x.realm_delete(a), 0);
  assert.equal(h.x.realm_delete(a), -3, 'double delete');
  assert.equal(generate(h, a, {prompt: 'x'}), -3, 'use after free');
  const b = h.x.realm_new();
  assert.notEqual(b, a, 'a reused slot gets a new generation');
  assert.equal(generate(h, a, {prompt: 'x'}), -3, 'stale handle after slot reuse');
  assert.equal(generate(h, b, '{"prompt": '), -1);
  assert.match(lastError(h, b), /invalid JSON/);
  assert.equal(generate(h, b, {prompt: 'x', messages: []}), -1);
  assert.equal(generate(h, b, {prompt: 'x', top_p: 0}), -1);
  assert.equal(generate(h, b, {prompt: 'x', model: 'denied'}), -4);
  assert.match(lastError(h, b), /model_open\("denied"\).*REALM_E_DENIED/);
  assert.equal(h.x.realm_generate(b, 0x7ffffff0, 100), -2, "request range outside memory");
  assert.equal(h.x.realm_last_error(b, 0x7ffffff0, 100), -2);
  assert.equal(h.x.realm_last_error(12345, 0, 0), -3);
  assert.equal(h.sessions.size, 0, 'sessions closed on every path');
}

// --- generation ---
{
  const h = instantiate(mod, {script: [3 + 72, 3 + 105, 300, 301, EOS]});  // "Hi w300 w301" EOS
  const g = h.x.realm_new();
  assert.equal(generate(h, g, {prompt: 'ab', max_tokens: 10, temperature: 0}), 0, lastError(h, g));
  const toks = h.events.filter((e) => e.kind === 1).map((e) => e.json);
  assert.deepEqual(toks.map((t) => t.id), [75, 108, 300, 301, EOS]);
  assert.equal(toks.map((t) => t.text).join(''), 'Hi w300 w301');
  assert.deepEqual(h.events.at(-1), {kind: 2, json: {finish_reason: 'eos', prompt_tokens: 3, completion_tokens: 5}});
  assert.equal(h.sessions.size, 0);

  // stop string, held back text, logprobs
  const h2 = instantiate(mod, {script: [3 + 72, 3 + 105, 300, 301, 302]});
  const g2 = h2.x.realm_new();
  assert.equal(generate(h2, g2, {prompt: 'ab', max_tokens: 10, temperature: 0, stop: [' w301'],
                                 logprobs: true, top_logprobs: 2}), 0, lastError(h2, g2));
  const t2 = h2.events.filter((e) => e.kind === 1).map((e) => e.json);
  assert.equal(t2.map((t) => t.text).join(''), 'Hi w300');
  assert.equal(t2.length, 4);
  assert.equal(t2[0].top_logprobs.length, 2);
  assert.equal(t2[0].top_logprobs[0].id, 75);
  assert.ok(t2[0].logprob < 0);
  assert.equal(t2[0].top_logprobs[0].logprob, t2[0].logprob);
  assert.equal(h2.events.at(-1).json.finish_reason, 'stop');

  // UTF-8 held across tokens: "é" = C3 A9 in two byte tokens
  const h3 = instantiate(mod, {script: [3 + 0xC3, 3 + 0xA9, 3 + 0x21]});
  const g3 = h3.x.realm_new();
  assert.equal(generate(h3, g3, {messages: [{role: 'user', content: 'hi'}], max_tokens: 3, temperature: 0}), 0);
  const t3 = h3.events.filter((e) => e.kind === 1).map((e) => e.json.text);
  assert.deepEqual(t3, ['', 'é', '!']);
  assert.equal(h3.events.at(-1).json.finish_reason, 'length');

  // client gone after 2 token events
  const h4 = instantiate(mod, {goneAfter: 2});
  const g4 = h4.x.realm_new();
  assert.equal(generate(h4, g4, {prompt: 'ab', max_tokens: 50}), 0);
  assert.equal(h4.events.filter((e) => e.kind === 1).length, 2);
  assert.equal(h4.events.at(-1).json.finish_reason, 'cancelled');
  assert.equal(h4.sessions.size, 0);
}

// --- per-token guest cost (outside the host's decode) ---
function cost(req) {
  const h = instantiate(mod);
  const g = h.x.realm_new();
  generate(h, g, {...req, max_tokens: 16});  // warm up (tier-up)
  h.importMs = 0;
  h.decodeCalls = 0;
  const t0 = performance.now();
  assert.equal(generate(h, g, {...req, max_tokens: 256, ignore_eos: true}), 0, lastError(h, g));
  const total = performance.now() - t0;
  return (1000 * (total - h.importMs)) / h.decodeCalls;
}
const greedy = cost({prompt: 'hello', temperature: 0});
const topk = cost({prompt: 'hello', temperature: 0.8, top_k: 40, seed: 1});
const greedyPen = cost({prompt: 'hello', temperature: 0, repeat_penalty: 1.1});
console.log(`guest code per token (imports excluded), n_vocab ${N_VOCAB}: greedy ${greedy.toFixed(1)} us, ` +
            `top-k 40 ${topk.toFixed(1)} us, greedy + repeat penalty ${greedyPen.toFixed(1)} us`);

// --- the example custom guest ---
if (sentencePath) {
  const smod = new WebAssembly.Module(fs.readFileSync(sentencePath));
  const h = instantiate(smod, {script: [3 + 72, 3 + 105, 3 + 46, 3 + 32, 300, 3 + 46]});  // "Hi. w300."
  const g = h.x.realm_new();
  assert.equal(generate(h, g, {prompt: 'ab', max_tokens: 10, temperature: 0}), 0, lastError(h, g));
  assert.equal(h.events.filter((e) => e.kind === 1).map((e) => e.json.text).join(''), 'Hi.');
  assert.equal(h.events.at(-1).json.finish_reason, 'stop');
  const h2 = instantiate(smod, {script: [3 + 72, 3 + 105, 3 + 46, 3 + 32, 300, 3 + 46]});
  const g2 = h2.x.realm_new();
  assert.equal(generate(h2, g2, {prompt: 'ab', max_tokens: 10, temperature: 0, max_sentences: 2}), 0);
  assert.equal(h2.events.filter((e) => e.kind === 1).map((e) => e.json.text).join(''), 'Hi.  w300.');
  const h3 = instantiate(smod, {script: [3 + 72]});
  const g3 = h3.x.realm_new();
  assert.equal(generate(h3, g3, {prompt: 'ab', max_tokens: 1, temperature: 0, ban_ids: [75]}), 0);
  assert.notEqual(h3.events[0].json.id, 75);
  assert.equal(generate(h3, g3, {prompt: 'ab', ban_ids: 'x'}), -1);
}
console.log('guest wasm smoke: ok');
