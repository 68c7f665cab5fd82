// `realm serve` against the official `openai` npm client on 127.0.0.1: completions and chat
// completions, streamed and not, give the text `realm run` gives for the same greedy request, with
// exact usage; the SDK's stream helpers accept the chunks; errors have OpenAI's status and shape;
// SIGTERM mid-stream exits 0.
//   node server_test.mjs --realm build/bin/realm --shared ../shared
import {spawn, spawnSync} from "node:child_process";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {test, after, before} from "node:test";

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, v, i, a) =>
  (v.startsWith("--") ? [...acc, [v.slice(2), a[i + 1]]] : acc), []));
const realm = args.realm, shared = args.shared;
let OpenAI, ResponsesWS, WebSocket;
try {
  ({default: OpenAI} = await import("openai"));
  ({ResponsesWS} = await import("openai/resources/responses/ws"));
  ({WebSocket} = await import("ws"));
} catch {
  console.log("SKIP: the openai package is not installed (scripts/setup.sh installs it)");
  process.exit(77);
}
const model = path.join(shared, "models/stories260K.gguf");
const guests = args.guests;
const home = fs.mkdtempSync(path.join(os.tmpdir(), "realm-serve-"));
const db = path.join(home, "realm.db");

// The CLI on the test's database.
function cli(...argv) {
  const r = spawnSync(realm, [...argv, "--db", db], {encoding: "utf8"});
  assert.equal(r.status, 0, `realm ${argv.join(" ")}: ${r.stderr}`);
  return r.stdout;
}
function newKey(tenant) {
  return cli("keys", "create", "--tenant", tenant).split("\n")[0].trim();
}

function startServer(extra = []) {
  const ctx = extra.includes("-c") ? [] : ["-c", "512"];
  const proc = spawn(realm, ["serve", "--model", `stories=${model}`, "--port", "0", "-t", "2",
                             ...ctx, "--db", db, ...extra],
                     {stdio: ["ignore", "ignore", "pipe"]});
  let log = "";
  const ready = new Promise((resolve, reject) => {
    proc.stderr.on("data", (d) => {
      log += d;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
      if (m) resolve(Number(m[1]));
    });
    proc.on("exit", (code) => reject(new Error(`realm serve exited with ${code}: ${log}`)));
  });
  return {proc, ready, log: () => log};
}

function realmRun(prompt, n) {
  const r = spawnSync(realm, ["run", "-m", model, "-p", prompt, "-n", String(n), "--temp", "0",
                              "--json", "-t", "2"], {encoding: "utf8"});
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let server, port, client, base, key;
const clientFor = (k, opts = {}) =>
  new OpenAI({baseURL: `http://127.0.0.1:${port}/v1`, apiKey: k, maxRetries: 0, ...opts});
before(async () => {
  cli("tenants", "create", "main", "--concurrency", "64");
  key = newKey("main");
  server = startServer();
  port = await server.ready;
  base = `http://127.0.0.1:${port}`;
  client = clientFor(key);
});
after(() => server.proc.kill("SIGKILL"));

test("completions equal realm run, streamed and not, with exact usage", async () => {
  const want = realmRun("Once upon a time", 32);
  const r = await client.completions.create({model: "stories", prompt: "Once upon a time",
                                             max_tokens: 32, temperature: 0});
  assert.equal(r.object, "text_completion");
  assert.equal(r.choices[0].text, want.text);
  assert.equal(r.choices[0].finish_reason, "length");
  assert.deepEqual(r.usage, {prompt_tokens: want.prompt_ids.length, completion_tokens: 32,
                             total_tokens: want.prompt_ids.length + 32,
                             prompt_tokens_details: {cached_tokens: 0}});
  const stream = await client.completions.create({model: "stories", prompt: "Once upon a time",
                                                  max_tokens: 32, temperature: 0, stream: true,
                                                  stream_options: {include_usage: true}});
  let text = "", finish = null, usage = null, afterUsage = 0;
  for await (const chunk of stream) {
    if (usage) ++afterUsage;
    if (chunk.usage) usage = chunk.usage;
    else assert.equal(chunk.usage, null);
    for (const c of chunk.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(text, want.text);
  assert.equal(finish, "length");
  assert.equal(usage.completion_tokens, 32);
  assert.equal(usage.prompt_tokens, want.prompt_ids.length);
  assert.equal(afterUsage, 0, "the usage chunk comes last");
});

test("chat completions equal realm run on the rendered template; the SDK stream helper accepts them", async () => {
  const messages = [{role: "user", content: "Tell me a story"}];
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "realm-serve-")), "m.json");
  fs.writeFileSync(file, JSON.stringify(messages));
  const t = spawnSync(realm, ["template", "-m", model, "-f", file], {encoding: "utf8"});
  assert.equal(t.status, 0, t.stderr);
  const want = realmRun(t.stdout, 24);
  const r = await client.chat.completions.create({model: "stories", messages, max_tokens: 24,
                                                  temperature: 0});
  assert.equal(r.object, "chat.completion");
  assert.equal(r.choices[0].message.role, "assistant");
  assert.equal(r.choices[0].message.content, want.text);
  const runner = client.chat.completions.stream({model: "stories", messages, max_tokens: 24,
                                                 temperature: 0,
                                                 stream_options: {include_usage: true}});
  let roles = 0;
  runner.on("chunk", (c) => { for (const ch of c.choices) if (ch.delta.role) ++roles; });
  const final = await runner.finalChatCompletion();
  assert.equal(final.choices[0].message.content, want.text);
  assert.equal(final.choices[0].finish_reason, "length");
  assert.equal(roles, 1, "role only in the first delta");
  assert.equal(final.usage.completion_tokens, 24);
});

test("responses (stateless) give the chat text, streamed and not", async () => {
  const messages = [{role: "system", content: "Be kind."}, {role: "user", content: "Tell me a story"}];
  const chat = await client.chat.completions.create({model: "stories", messages, max_tokens: 20,
                                                     temperature: 0});
  const want = chat.choices[0].message.content;
  const r = await client.responses.create({model: "stories", instructions: "Be kind.",
                                           input: "Tell me a story", max_output_tokens: 20,
                                           temperature: 0});
  assert.equal(r.object, "response");
  assert.equal(r.output_text, want);
  assert.equal(r.status, "incomplete");
  assert.equal(r.usage.output_tokens, 20);
  assert.equal(r.usage.input_tokens, chat.usage.prompt_tokens);
  const items = await client.responses.create({model: "stories", max_output_tokens: 20,
                                               temperature: 0, input: [
    {role: "developer", content: "Be kind."},
    {type: "message", role: "user", content: [{type: "input_text", text: "Tell me a story"}]}]});
  assert.equal(items.output_text, want);
  const types = [];
  const stream = client.responses.stream({model: "stories", instructions: "Be kind.",
                                          input: "Tell me a story", max_output_tokens: 20,
                                          temperature: 0});
  stream.on("event", (e) => types.push(e.type));
  const final = await stream.finalResponse();
  assert.equal(final.output_text, want);
  assert.equal(types[0], "response.created");
  assert.equal(types[types.length - 1], "response.incomplete");
  assert.ok(types.includes("response.output_text.delta"));
  await assert.rejects(client.responses.create({model: "stories", input: "x",
                                                previous_response_id: "resp_1"}),
                       (e) => e.status === 400 && e.param === "previous_response_id" &&
                              e.code === "previous_response_not_found");
  // A stored response continues over HTTP: the second turn equals the whole conversation.
  const first = await client.responses.create({model: "stories", input: "Tell me a story",
                                               max_output_tokens: 6, temperature: 0});
  const second = await client.responses.create({model: "stories", input: "And then?",
                                                previous_response_id: first.id,
                                                max_output_tokens: 8, temperature: 0});
  const whole = await client.responses.create({model: "stories", max_output_tokens: 8,
                                               temperature: 0, input: [
    {role: "user", content: "Tell me a story"}, {role: "assistant", content: first.output_text},
    {role: "user", content: "And then?"}]});
  assert.equal(second.output_text, whole.output_text);
  assert.equal(second.usage.input_tokens, whole.usage.input_tokens);
});

test("models, and errors with OpenAI's statuses and shapes", async () => {
  const list = await client.models.list();
  assert.deepEqual(list.data.map((m) => m.id), ["stories"]);
  assert.equal((await client.models.retrieve("stories")).id, "stories");
  await assert.rejects(client.models.retrieve("nope"), (e) => e.status === 404);
  await assert.rejects(client.completions.create({model: "nope", prompt: "x"}),
                       (e) => e.status === 404 && e.code === "model_not_found" && e.param === "model");
  await assert.rejects(client.completions.create({model: "stories", prompt: "x", temperature: "hot"}),
                       (e) => e.status === 400 && e.param === "temperature" && /"hot"/.test(e.message));
  await assert.rejects(client.completions.create({model: "stories", prompt: "x", n: 2}),
                       (e) => e.status === 400 && e.param === "n");
  await assert.rejects(client.completions.create({model: "stories", prompt: "x", max_tokens: 600}),
                       (e) => e.status === 400 && e.code === "context_length_exceeded");
  const auth = {authorization: `Bearer ${key}`};
  let res = await fetch(`${base}/v1/completions`, {method: "POST", body: "{", headers: auth});
  assert.equal(res.status, 400);
  assert.ok(res.headers.get("x-request-id"));
  assert.equal((await res.json()).error.type, "invalid_request_error");
  res = await fetch(`${base}/v1/nothing`);
  assert.equal(res.status, 404);
  res = await fetch(`${base}/v1/completions`);
  assert.equal(res.status, 405);
  res = await fetch(`${base}/v1/completions`, {method: "POST", body: "x".repeat(2 << 20),
                                               headers: auth});
  assert.equal(res.status, 413);
  res = await fetch(`${base}/health`);
  assert.deepEqual(await res.json(), {status: "ok"});
});

test("32 concurrent streams from 4 tenants each get the text they get alone (same seed)", async () => {
  const clients = [];
  for (let t = 0; t < 4; ++t) {
    cli("tenants", "create", `crowd${t}`, "--concurrency", "8");
    clients.push(clientFor(newKey(`crowd${t}`)));
  }
  await sleep(600);  // the server reloads tenants and keys within a second
  const req = (seed) => ({model: "stories", prompt: "Once upon a time", max_tokens: 48,
                          temperature: 0.9, seed});
  const alone = [];
  for (let i = 0; i < 4; ++i) alone.push((await client.completions.create(req(i))).choices[0].text);
  const runs = Array.from({length: 32}, async (_, k) => {
    const stream = await clients[k % 4].completions.create({...req(k % 4), stream: true});
    let text = "";
    for await (const chunk of stream) for (const c of chunk.choices) text += c.text;
    return text;
  });
  const texts = await Promise.all(runs);
  texts.forEach((t, k) => assert.equal(t, alone[k % 4], `stream ${k}`));
});

test("/metrics: Prometheus text with vLLM-style names; token counters follow usage exactly", async () => {
  const scrape = async () => {
    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type"), /text\/plain/);
    return res.text();
  };
  const value = (text, series) => {
    const line = text.split("\n").find((l) => l.startsWith(series + " "));
    return line ? Number(line.slice(series.length + 1)) : 0;
  };
  const before = await scrape();
  for (const name of ["realm:num_requests_running", "realm:num_requests_waiting",
                      "realm:requests_total", "realm:prompt_tokens_total",
                      "realm:generation_tokens_total", "realm:time_to_first_token_seconds",
                      "realm:inter_token_latency_seconds", "realm:e2e_request_latency_seconds",
                      "realm:request_queue_time_seconds", "realm:rate_limited_total",
                      "realm:admission_rejections_total", "realm:sandbox_faults_total",
                      "realm:active_sessions", "realm:kv_cache_bytes"]) {
    assert.ok(before.includes(`# TYPE ${name} `), name);
  }
  const r = await client.completions.create({model: "stories", prompt: "Once upon a time",
                                             max_tokens: 12, temperature: 0});
  const after = await scrape();
  const gen = 'realm:generation_tokens_total{model="stories",tenant="main"}';
  const prompt = 'realm:prompt_tokens_total{model="stories",tenant="main"}';
  const ok = 'realm:requests_total{model="stories",tenant="main",status="200"}';
  assert.equal(value(after, gen) - value(before, gen), r.usage.completion_tokens);
  assert.equal(value(after, prompt) - value(before, prompt), r.usage.prompt_tokens);
  assert.equal(value(after, ok) - value(before, ok), 1);
  const ttft = 'realm:time_to_first_token_seconds_count{model="stories",tenant="main"}';
  assert.equal(value(after, ttft) - value(before, ttft), 1);
  const itl = 'realm:inter_token_latency_seconds_count{model="stories",tenant="main"}';
  assert.equal(value(after, itl) - value(before, itl), 11);
  assert.equal(value(after, "realm:num_requests_running"), 0);
});

test("a client that disconnects mid-stream does not hurt the next request", async () => {
  const ctl = new AbortController();
  const stream = await client.completions.create({model: "stories", prompt: "Once upon a time",
                                                  max_tokens: 400, temperature: 0, stream: true},
                                                 {signal: ctl.signal});
  let n = 0;
  try {
    for await (const _ of stream) if (++n === 3) ctl.abort();
  } catch (e) {
    assert.ok(ctl.signal.aborted, String(e));
  }
  // Its session is freed at once (the generation stops within a token).
  const deadline = Date.now() + 2000;
  let sessions = -1;
  while (Date.now() < deadline) {
    const m = await (await fetch(`${base}/metrics`)).text();
    const line = m.split("\n").find((l) => l.startsWith('realm:active_sessions{model="stories"}'));
    sessions = Number(line.split(" ")[1]);
    if (sessions === 0) break;
    await sleep(20);
  }
  assert.equal(sessions, 0);
  const want = realmRun("Once upon a time", 8);
  const r = await client.completions.create({model: "stories", prompt: "Once upon a time",
                                             max_tokens: 8, temperature: 0});
  assert.equal(r.choices[0].text, want.text);
});

test("keys: missing, unknown and revoked keys get 401; a tenant's models are enforced (403)", async () => {
  cli("tenants", "create", "narrow", "--models", "other");
  const narrowKey = newKey("narrow");
  const doomed = newKey("main");
  await sleep(600);
  for (const k of ["", "rk-0000", `${key}x`]) {
    const res = await fetch(`${base}/v1/completions`, {method: "POST",
      headers: k ? {authorization: `Bearer ${k}`} : {},
      body: JSON.stringify({model: "stories", prompt: "x", max_tokens: 1})});
    assert.equal(res.status, 401, k);
    assert.equal((await res.json()).error.code, "invalid_api_key");
    assert.ok(res.headers.get("x-request-id"));
  }
  await assert.rejects(clientFor(narrowKey).completions.create({model: "stories", prompt: "x"}),
                       (e) => e.status === 403 && e.param === "model");
  assert.deepEqual((await clientFor(narrowKey).models.list()).data, []);
  const ok = await clientFor(doomed).completions.create({model: "stories", prompt: "x", max_tokens: 1});
  assert.equal(ok.usage.completion_tokens, 1);
  const id = JSON.parse(cli("keys", "list", "--tenant", "main", "--json"))
                 .find((k) => k.revoked_at === null && k.id !== undefined && k.name === "").id;
  assert.ok(id);
  // Revoke every key of the tenant but the main one: the revoked ones stop within a second.
  for (const k of JSON.parse(cli("keys", "list", "--tenant", "main", "--json"))) {
    if (k.revoked_at === null) cli("keys", "revoke", k.id);
  }
  const fresh = newKey("main");
  await sleep(1100);
  await assert.rejects(clientFor(doomed).completions.create({model: "stories", prompt: "x"}),
                       (e) => e.status === 401);
  key = fresh;
  client = clientFor(key);
  const again = await client.completions.create({model: "stories", prompt: "x", max_tokens: 1});
  assert.equal(again.choices.length, 1);
  // The database holds no key.
  assert.ok(!fs.readFileSync(db).includes(Buffer.from(fresh)));
});

test("rate limits: 429 with Retry-After and rate-limit headers; reservations cannot be overdrawn", async () => {
  cli("tenants", "create", "rpm", "--rpm", "2");
  cli("tenants", "create", "tpm", "--tpm", "60");
  const rpmKey = newKey("rpm"), tpmKey = newKey("tpm");
  await sleep(600);
  const post = (k, body) => fetch(`${base}/v1/completions`, {method: "POST",
    headers: {authorization: `Bearer ${k}`}, body: JSON.stringify(body)});
  const small = {model: "stories", prompt: "Once", max_tokens: 2, temperature: 0};
  let res = await post(rpmKey, small);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-ratelimit-limit-requests"), "2");
  assert.equal(res.headers.get("x-ratelimit-remaining-requests"), "1");
  assert.match(res.headers.get("x-ratelimit-reset-requests"), /^[0-9.]+(ms|s)$/);
  assert.equal((await post(rpmKey, small)).status, 200);
  res = await post(rpmKey, small);
  assert.equal(res.status, 429);
  const retryS = Number(res.headers.get("retry-after"));
  const retryMs = Number(res.headers.get("retry-after-ms"));
  assert.ok(retryS >= 1 && retryS <= 120 && retryMs > 0 && retryMs <= 120000, `${retryS} ${retryMs}`);
  const body = await res.json();
  assert.equal(body.error.code, "rate_limit_exceeded");
  assert.equal(body.error.type, "requests");
  // Tokens per minute: prompt + max_tokens is reserved at admission, so two concurrent requests
  // of 40 each cannot both pass a bucket of 60.
  const big = {model: "stories", prompt: "Once", max_tokens: 38, temperature: 0};
  const both = await Promise.all([post(tpmKey, big), post(tpmKey, big)]);
  assert.deepEqual(both.map((r) => r.status).sort(), [200, 429]);
  // More than the limit in one request: 429 that tells the SDK not to retry.
  res = await post(tpmKey, {...big, max_tokens: 100});
  assert.equal(res.status, 429);
  assert.equal(res.headers.get("x-should-retry"), "false");
});

test("the SDK honours Retry-After on 429 and gets through", async () => {
  cli("tenants", "create", "rpm60", "--rpm", "60");
  const k = newKey("rpm60");
  await sleep(600);
  const small = {model: "stories", prompt: "x", max_tokens: 1};
  const c0 = clientFor(k);
  let limited = null;
  for (let i = 0; i < 80 && !limited; ++i) {
    await c0.completions.create(small).catch((e) => { limited = e; });
  }
  assert.ok(limited && limited.status === 429, String(limited));
  // One request's worth comes back each second: retry-after says so, and the SDK waits for it.
  assert.ok(Number(limited.headers.get("retry-after-ms")) <= 1000);
  const t0 = Date.now();
  const r = await clientFor(k, {maxRetries: 2}).completions.create(small);
  assert.equal(r.usage.completion_tokens, 1);
  assert.ok(Date.now() - t0 < 5000);
});

test("--chat-template: chat prompts use the given template", async () => {
  const file = path.join(home, "plain.jinja");
  fs.writeFileSync(file, "{% for m in messages %}{{ m.content }}\n{% endfor %}");
  const s = startServer(["--chat-template", file]);
  const p = await s.ready;
  try {
    const c = new OpenAI({baseURL: `http://127.0.0.1:${p}/v1`, apiKey: key, maxRetries: 0});
    const r = await c.chat.completions.create({model: "stories", max_tokens: 16, temperature: 0,
                                               messages: [{role: "user", content: "Once upon a time"}]});
    const want = realmRun("Once upon a time\n", 16);
    assert.equal(r.choices[0].message.content, want.text);
    assert.equal(r.usage.prompt_tokens, want.prompt_ids.length);
  } finally {
    s.proc.kill("SIGKILL");
  }
});

test("daily quota: the last request is cut by length, then 429 with x-should-retry: false", async () => {
  cli("tenants", "create", "daily", "--daily-tokens", "30");
  const k = newKey("daily");
  await sleep(600);
  const c = clientFor(k, {maxRetries: 2});
  const r = await c.completions.create({model: "stories", prompt: "Once upon a time",
                                        max_tokens: 100, temperature: 0});
  assert.equal(r.choices[0].finish_reason, "length");
  assert.equal(r.usage.total_tokens, 30);
  const t0 = Date.now();
  await assert.rejects(c.completions.create({model: "stories", prompt: "Once", max_tokens: 1}),
                       (e) => e.status === 429 && e.code === "insufficient_quota");
  assert.ok(Date.now() - t0 < 400, "the SDK did not retry");
});

test("queue: a tenant over its concurrency waits; a full queue gets 503, which the SDK retries", async () => {
  cli("tenants", "create", "single", "--concurrency", "1");
  const k = newKey("single");
  await sleep(600);
  const want = realmRun("Once upon a time", 40).text;
  // Two requests at once with room to queue: both complete, one after the other.
  const c = clientFor(k);
  const two = await Promise.all([0, 1].map(() => c.completions.create(
    {model: "stories", prompt: "Once upon a time", max_tokens: 40, temperature: 0})));
  for (const r of two) assert.equal(r.choices[0].text, want);
  // No queue: the second gets 503 + Retry-After; with retries the SDK gets through.
  const s = startServer(["--tenant-queue", "0"]);
  const p = await s.ready;
  try {
    const url = `http://127.0.0.1:${p}/v1`;
    const first = new OpenAI({baseURL: url, apiKey: k, maxRetries: 0}).completions.create(
      {model: "stories", prompt: "Once upon a time", max_tokens: 300, temperature: 0});
    await sleep(100);
    const res = await fetch(`${url}/completions`, {method: "POST",
      headers: {authorization: `Bearer ${k}`},
      body: JSON.stringify({model: "stories", prompt: "x", max_tokens: 1})});
    assert.equal(res.status, 503);
    assert.ok(Number(res.headers.get("retry-after")) >= 1);
    const retried = await new OpenAI({baseURL: url, apiKey: k, maxRetries: 5}).completions.create(
      {model: "stories", prompt: "x", max_tokens: 1});
    assert.equal(retried.usage.completion_tokens, 1);
    await first;
  } finally {
    s.proc.kill("SIGKILL");
  }
});

test("a hostile guest gets errors while other tenants keep succeeding; lying counts do not bill", async () => {
  cli("tenants", "create", "hostile", "--guest", path.join(guests, "sbx_unreachable.wasm"));
  cli("tenants", "create", "liar", "--guest", path.join(guests, "sbx_lying_counts.wasm"));
  const bad = clientFor(newKey("hostile")), liar = clientFor(newKey("liar"));
  await sleep(600);
  const good = Array.from({length: 4}, () => client.completions.create(
    {model: "stories", prompt: "Once upon a time", max_tokens: 16, temperature: 0}));
  const hostile = Array.from({length: 4}, () => bad.completions.create(
    {model: "stories", prompt: "Once upon a time", max_tokens: 16}).then(() => null, (e) => e));
  const want = realmRun("Once upon a time", 16).text;
  for (const r of await Promise.all(good)) assert.equal(r.choices[0].text, want);
  for (const e of await Promise.all(hostile)) {
    assert.ok(e && e.status === 502, String(e));
    assert.equal(e.code, "guest_failed");
  }
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, /realm:sandbox_faults_total\{cause="[a-z ]+"\} [1-9]/);
  const r = await liar.completions.create({model: "stories", prompt: "Once upon a time",
                                           max_tokens: 5});
  const prompt = realmRun("Once upon a time", 1).prompt_ids.length;
  assert.deepEqual(r.usage, {prompt_tokens: prompt, completion_tokens: 5, total_tokens: prompt + 5,
                             prompt_tokens_details: {cached_tokens: 0}});
  await sleep(500);  // usage rows are written in batches
  const u = JSON.parse(cli("usage", "--tenant", "liar", "--json"));
  assert.equal(u.total.prompt_tokens, prompt);
  assert.equal(u.total.completion_tokens, 5);
});

test("usage rows: realm usage sums every request per tenant and model", async () => {
  cli("tenants", "create", "billed");
  const c = clientFor(newKey("billed"));
  await sleep(600);
  let prompt = 0, completion = 0;
  for (const n of [3, 5, 7]) {
    const r = await c.completions.create({model: "stories", prompt: "Once upon a time",
                                          max_tokens: n, temperature: 0});
    prompt += r.usage.prompt_tokens;
    completion += r.usage.completion_tokens;
  }
  await assert.rejects(c.completions.create({model: "stories", prompt: "x", max_tokens: 9999}));
  await sleep(500);
  const u = JSON.parse(cli("usage", "--tenant", "billed", "--json"));
  assert.equal(u.rows.length, 1);
  assert.equal(u.rows[0].model, "stories");
  assert.equal(u.rows[0].requests, 4);
  assert.equal(u.rows[0].errors, 1);
  assert.equal(u.total.prompt_tokens, prompt);
  assert.equal(u.total.completion_tokens, completion);
});

test("admin API: tenants and keys over HTTP with an admin key; tenant keys are refused", async () => {
  const admin = cli("keys", "create", "--admin").split("\n")[0].trim();
  await sleep(600);
  const call = (k, method, p, body) => fetch(`${base}${p}`, {method,
    headers: {authorization: `Bearer ${k}`}, body: body && JSON.stringify(body)});
  assert.equal((await call(key, "GET", "/admin/tenants")).status, 401);
  let res = await call(admin, "POST", "/admin/tenants", {id: "viahttp", rpm: 7});
  assert.equal(res.status, 201);
  assert.equal((await res.json()).rpm, 7);
  res = await call(admin, "PATCH", "/admin/tenants/viahttp", {tpm: 1000});
  assert.deepEqual([(await res.json()).tpm, res.status], [1000, 200]);
  res = await call(admin, "POST", "/admin/keys", {tenant: "viahttp", name: "h"});
  assert.equal(res.status, 201);
  const k = (await res.json()).key;
  assert.match(k, /^rk-[0-9a-f]{64}$/);
  // Admin changes apply at once.
  const r = await clientFor(k).completions.create({model: "stories", prompt: "x", max_tokens: 1});
  assert.equal(r.usage.completion_tokens, 1);
  res = await call(admin, "DELETE", "/admin/tenants/viahttp");
  assert.equal(res.status, 200);
  await assert.rejects(clientFor(k).completions.create({model: "stories", prompt: "x"}),
                       (e) => e.status === 401);
  assert.equal((await call(admin, "GET", "/admin/tenants/viahttp")).status, 404);
  assert.equal((await call(admin, "POST", "/admin/tenants", {id: "bad id!"})).status, 400);
});

const synth = path.join(shared, "models/quant/synth-256x2.Q4_K_M.gguf");
const adminCall = (p, k, method, route, body) => fetch(`http://127.0.0.1:${p}${route}`, {method,
  headers: {authorization: `Bearer ${k}`}, body: body && JSON.stringify(body)});

test("models: loading and unloading one model while another streams does not touch the stream; unloaded models get 404", async () => {
  const admin = cli("keys", "create", "--admin").split("\n")[0].trim();
  await sleep(600);
  const call = (...a) => adminCall(port, admin, ...a);
  const want = realmRun("Once upon a time", 48);
  const stream = await client.completions.create({model: "stories", prompt: "Once upon a time",
                                                  max_tokens: 48, temperature: 0, stream: true});
  let text = "", first = true, finish = null;
  for await (const chunk of stream) {
    if (first) {  // mid-stream: load, use, list and unload another model
      first = false;
      let res = await call("POST", "/admin/models", {name: "synth", model: synth});
      const rec = await res.json();
      assert.equal(res.status, 201, JSON.stringify(rec));
      assert.equal(rec.state, "ready");
      assert.equal((await call("POST", "/admin/models", {name: "synth", model: synth})).status, 409);
      assert.equal((await call("POST", "/admin/models", {name: "x", model: "/no/such.gguf"})).status, 404);
      const r = await client.completions.create({model: "synth", prompt: "Hello", max_tokens: 3,
                                                 temperature: 0});
      assert.ok(r.usage.completion_tokens >= 1);
      let ids = (await client.models.list()).data.map((m) => m.id).sort();
      assert.deepEqual(ids, ["stories", "synth"]);
      res = await call("GET", "/admin/models");
      assert.deepEqual((await res.json()).data.map((m) => m.name).sort(), ["stories", "synth"]);
      res = await call("DELETE", "/admin/models/synth");
      const u = await res.json();
      assert.equal(res.status, 200, JSON.stringify(u));
      assert.deepEqual([u.unloaded, u.cancelled], [true, 0]);
      await assert.rejects(client.completions.create({model: "synth", prompt: "x", max_tokens: 1}),
                           (e) => e.status === 404 && e.code === "model_not_found");
      assert.equal((await call("DELETE", "/admin/models/synth")).status, 404);
      ids = (await client.models.list()).data.map((m) => m.id);
      assert.deepEqual(ids, ["stories"]);
    }
    for (const c of chunk.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(text, want.text);
  assert.equal(finish, "length");
  // A tenant key may not manage models.
  assert.equal((await adminCall(port, key, "GET", "/admin/models")).status, 401);
});

test("models: a memory budget unloads the idle LRU model; an unload cancels what still runs at its timeout; packed weights are cached", async () => {
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), "realm-pack-"));
  const s = startServer(["--models-memory-mb", "2", "--pack-cache", cache, "-c", "4096"]);
  const p = await s.ready;
  try {
    const admin = cli("keys", "create", "--admin").split("\n")[0].trim();
    await sleep(600);
    const call = (...a) => adminCall(p, admin, ...a);
    const c = new OpenAI({baseURL: `http://127.0.0.1:${p}/v1`, apiKey: key, maxRetries: 0});
    // stories (1.1 MiB) + synth (1.1 MiB) exceed 2 MiB: the idle stories goes.
    let res = await call("POST", "/admin/models", {name: "synth", model: synth});
    let rec = await res.json();
    assert.equal(res.status, 201, JSON.stringify(rec));
    assert.equal(rec.pack_cache, "written");
    assert.deepEqual((await c.models.list()).data.map((m) => m.id), ["synth"]);
    await assert.rejects(c.completions.create({model: "stories", prompt: "x", max_tokens: 1}),
                         (e) => e.status === 404);
    res = await call("DELETE", "/admin/models/synth");
    assert.equal(res.status, 200);
    res = await call("POST", "/admin/models", {name: "synth", model: synth});
    rec = await res.json();
    assert.equal(rec.pack_cache, "hit", "the second load maps the packed weights");
    // A stream that keeps running (a reader that never reads) holds synth: loading stories
    // does not fit and nothing idle can go (503); unloading synth waits, then cancels it.
    const net = await import("node:net");
    const body = JSON.stringify({model: "synth", prompt: "Hello", max_tokens: 4000,
                                 temperature: 0, stream: true, logprobs: 5});
    const sock = net.connect(p, "127.0.0.1");
    sock.on("error", () => {});
    let got = "";
    sock.on("data", (d) => { got += d; });
    sock.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n` +
               `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    while (!got.includes("data: ")) await sleep(20);
    sock.pause();
    res = await call("POST", "/admin/models", {name: "stories", model: path.join(shared, "models/stories260K.gguf")});
    assert.equal(res.status, 503, await res.text());
    const t0 = Date.now();
    res = await call("DELETE", "/admin/models/synth?timeout_s=0.5");
    const u = await res.json();
    assert.equal(res.status, 200, JSON.stringify(u));
    assert.ok(u.waited === 1 && u.cancelled <= 1, JSON.stringify(u));
    assert.ok(Date.now() - t0 < 5000, `the unload took ${Date.now() - t0} ms`);
    assert.deepEqual((await c.models.list()).data, []);
    sock.destroy();
    res = await call("POST", "/admin/models", {name: "stories", model: path.join(shared, "models/stories260K.gguf")});
    assert.equal(res.status, 201);
    assert.equal((await c.completions.create({model: "stories", prompt: "x", max_tokens: 2}))
                     .usage.completion_tokens, 2);
  } finally {
    s.proc.kill("SIGKILL");
    fs.rmSync(cache, {recursive: true, force: true});
  }
});

// The Responses API's WebSocket mode through the SDK's ResponsesWS: events by stream_id.
function wsSession(k = key) {
  const rws = new ResponsesWS(clientFor(k));
  const lanes = new Map();  // stream_id -> {events, done}
  const all = [];  // every event in arrival order
  const lane = (id) => {
    if (!lanes.has(id)) {
      let resolve;
      const done = new Promise((r) => { resolve = r; });
      lanes.set(id, {events: [], done, resolve});
    }
    return lanes.get(id);
  };
  rws.on("event", (e) => {
    all.push(e);
    const l = lane(e.stream_id ?? null);
    l.events.push(e);
    if (["response.completed", "response.incomplete", "error"].includes(e.type)) l.resolve(e);
  });
  rws.on("error", () => {});  // error events are collected above
  const run = async (params) => {
    const l = lane(params.stream_id ?? null);
    const start = l.events.length;
    rws.send({type: "response.create", ...params});
    const ends = () => l.events.slice(start).find((e) =>
      ["response.completed", "response.incomplete", "error"].includes(e.type));
    while (!ends()) await new Promise((r) => setTimeout(r, 5));
    return {end: ends(), events: l.events.slice(start)};
  };
  return {rws, run, lanes, all};
}

test("WebSocket mode: the same text as HTTP; previous_response_id continues; lanes run concurrently", async () => {
  const req = {model: "stories", instructions: "Be kind.", input: "Tell me a story",
               max_output_tokens: 20, temperature: 0};
  const http = await client.responses.create(req);
  const {rws, run, all} = wsSession();
  const one = await run(req);
  assert.equal(one.end.type, "response.incomplete");
  assert.equal(one.end.response.output.map((o) => o.content[0].text).join(""), http.output_text);
  assert.equal(one.events[0].type, "response.created");
  assert.deepEqual(one.events.map((e) => e.sequence_number), one.events.map((_, i) => i));
  // A second turn with previous_response_id = the whole conversation in one request.
  const second = await run({model: "stories", input: "And then?", max_output_tokens: 12,
                            temperature: 0, previous_response_id: one.end.response.id,
                            instructions: "Be kind."});
  const whole = await client.responses.create({model: "stories", instructions: "Be kind.",
    max_output_tokens: 12, temperature: 0, input: [
      {role: "user", content: "Tell me a story"},
      {role: "assistant", content: http.output_text}, {role: "user", content: "And then?"}]});
  assert.equal(second.end.response.output[0].content[0].text, whole.output_text);
  assert.equal(second.end.response.usage.input_tokens, whole.usage.input_tokens);
  // store: false responses continue on the same socket only.
  const local = await run({model: "stories", input: "Hi", max_output_tokens: 4, temperature: 0,
                           store: false});
  const cont = await run({model: "stories", input: "More", max_output_tokens: 4, temperature: 0,
                          previous_response_id: local.end.response.id});
  assert.notEqual(cont.end.type, "error");
  await assert.rejects(client.responses.create({model: "stories", input: "More",
                                                previous_response_id: local.end.response.id}),
                       (e) => e.status === 400 && e.code === "previous_response_not_found");
  // Two lanes at once: each lane's events carry its stream_id, and they interleave.
  const long = {model: "stories", input: "Once upon a time", max_output_tokens: 300, temperature: 0};
  const [a, b] = await Promise.all([run({...long, stream_id: "a"}), run({...long, stream_id: "b"})]);
  for (const [r, id] of [[a, "a"], [b, "b"]]) {
    assert.ok(r.events.every((e) => e.stream_id === id));
    assert.equal(r.end.type, "response.incomplete");
  }
  assert.equal(a.end.response.output[0].content[0].text, b.end.response.output[0].content[0].text);
  const at = (id, type) => all.findIndex((e) => e.stream_id === id && e.type === type);
  assert.ok(at("b", "response.output_text.delta") < at("a", "response.incomplete"), "lanes overlap");
  assert.ok(at("a", "response.output_text.delta") < at("b", "response.incomplete"), "lanes overlap");
  rws.close();
});

test("WebSocket mode: bad frames get error events and the socket stays open; cancel; auth", async () => {
  const url = `ws://127.0.0.1:${port}/v1/responses`;
  const open = (opts) => new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts.protocols ?? [], {headers: opts.headers ?? {}});
    const events = [];
    ws.on("message", (d) => events.push(JSON.parse(String(d))));
    ws.on("open", () => resolve({ws, events}));
    ws.on("error", reject);
  });
  const waitFor = async (events, pred) => {
    const deadline = Date.now() + 10000;
    while (Date.now() < deadline) {
      const e = events.find(pred);
      if (e) return e;
      await sleep(5);
    }
    throw new Error(`no such event in ${JSON.stringify(events).slice(0, 500)}`);
  };
  // The browser form of the key: the subprotocol openai-insecure-api-key.KEY.
  const {ws, events} = await open({protocols: [`openai-insecure-api-key.${key}`]});
  assert.equal(ws.protocol, `openai-insecure-api-key.${key}`);
  ws.send("not json");
  let e = await waitFor(events, (x) => x.type === "error");
  assert.equal(e.status, 400);
  ws.send(JSON.stringify({type: "bogus"}));
  ws.send(JSON.stringify({type: "response.create", model: "stories", input: "x", temperature: "hot"}));
  await waitFor(events, (x) => x.type === "error" && x.error.param === "temperature");
  ws.send(JSON.stringify({type: "response.create", model: "stories", input: "Hi",
                          max_output_tokens: 3, temperature: 0}));
  e = await waitFor(events, (x) => x.type === "response.incomplete");
  assert.equal(e.response.usage.output_tokens, 3);
  // response.cancel stops a running response.
  ws.send(JSON.stringify({type: "response.create", model: "stories", input: "Once upon a time",
                          max_output_tokens: 400, temperature: 0, stream_id: "c"}));
  const created = await waitFor(events, (x) => x.type === "response.created" && x.stream_id === "c");
  ws.send(JSON.stringify({type: "response.cancel", response_id: created.response.id}));
  const end = await waitFor(events, (x) => x.stream_id === "c" && x.type === "response.incomplete");
  assert.equal(end.response.status, "cancelled");
  assert.ok(end.response.usage.output_tokens < 400);
  // An abrupt close mid-stream leaves the server serving.
  ws.send(JSON.stringify({type: "response.create", model: "stories", input: "Once upon a time",
                          max_output_tokens: 400}));
  await waitFor(events, (x) => x.type === "response.output_text.delta");
  ws.terminate();
  const r = await client.responses.create({model: "stories", input: "Hi", max_output_tokens: 2});
  assert.equal(r.usage.output_tokens, 2);
  // No key, or a bad one: closed with 1008.
  for (const headers of [{}, {authorization: "Bearer rk-nope"}]) {
    const {ws: bad} = await open({headers});
    const code = await new Promise((resolve) => bad.on("close", (c) => resolve(c)));
    assert.equal(code, 1008);
  }
});

test("deadlines: a trickled request gets 408, an idle connection is closed, a stalled reader is cancelled", async () => {
  const net = await import("node:net");
  const s = startServer(["--read-timeout-s", "2", "--write-timeout-s", "1", "-c", "2048"]);
  const p = await s.ready;
  try {
    const t0 = Date.now();
    const answer = await new Promise((resolve) => {
      const sock = net.connect(p, "127.0.0.1");
      let got = "";
      const text = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{";
      let i = 0;
      const timer = setInterval(() => { if (i < text.length) sock.write(text[i++]); }, 100);
      sock.on("data", (d) => { got += d; });
      sock.on("close", () => { clearInterval(timer); resolve(got); });
      sock.on("error", () => {});
    });
    const took = Date.now() - t0;
    assert.match(answer, /^HTTP\/1\.1 408/);
    assert.ok(took >= 1900 && took < 4000, `closed after ${took} ms`);
    // An idle keep-alive connection is closed at the deadline too.
    const closed = await new Promise((resolve) => {
      const sock = net.connect(p, "127.0.0.1");
      const t1 = Date.now();
      sock.on("close", () => resolve(Date.now() - t1));
      sock.on("error", () => {});
    });
    assert.ok(closed >= 1900 && closed < 4000, `idle closed after ${closed} ms`);
    // A client that never reads its stream: past the write deadline the request is cancelled
    // (499) and its session freed; the server goes on serving.
    const body = JSON.stringify({model: "stories", messages: [{role: "user", content: "Hi"}],
                                 max_tokens: 2000, temperature: 0, stream: true, logprobs: true,
                                 top_logprobs: 20});  // about 3 MB of events
    const sock = net.connect(p, "127.0.0.1");
    sock.on("error", () => {});
    sock.pause();
    sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n` +
               `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    const metric = async (series) => {
      const m = await (await fetch(`http://127.0.0.1:${p}/metrics`)).text();
      const line = m.split("\n").find((l) => l.startsWith(series + " "));
      return line ? Number(line.slice(series.length + 1)) : 0;
    };
    const gone = 'realm:requests_total{model="stories",tenant="main",status="499"}';
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline && (await metric(gone)) < 1) await sleep(100);
    assert.equal(await metric(gone), 1);
    assert.equal(await metric('realm:active_sessions{model="stories"}'), 0);
    sock.destroy();
    const c = new OpenAI({baseURL: `http://127.0.0.1:${p}/v1`, apiKey: key, maxRetries: 0});
    assert.equal((await c.completions.create({model: "stories", prompt: "x", max_tokens: 2}))
                     .usage.completion_tokens, 2);
  } finally {
    s.proc.kill("SIGKILL");
  }
});

// The scheduler through the server: per-tenant prefix cache with cached_tokens, no reuse across
// tenants, multi-turn reuse over the WebSocket, preemption under a small KV budget, and 503 for a
// request that cannot fit even alone.
const scrapeValue = async (series) => {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line ? Number(line.slice(series.length + 1)) : 0;
};
const words = (n, seed) => Array.from({length: n}, (_, i) =>
  ["tom", "ran", "to", "the", "big", "red", "ball", "and", "sam", "saw", "a", "dog"][(i * 7 + seed) % 12])
  .join(" ");

test("prefix cache: a tenant's repeated system prompt is reused, bit-identical; another tenant's is not", async () => {
  cli("tenants", "create", "pfx-a", "--concurrency", "8");
  cli("tenants", "create", "pfx-b", "--concurrency", "8");
  const a = clientFor(newKey("pfx-a")), b = clientFor(newKey("pfx-b"));
  await sleep(600);
  const system = words(170, 1);
  const req = (q) => ({model: "stories", max_tokens: 16, temperature: 0,
                       messages: [{role: "system", content: system}, {role: "user", content: q}]});
  const hits = 'realm:prefix_cache_hits_total{model="stories"}';
  const h0 = await scrapeValue(hits);
  const first = await a.chat.completions.create(req("Tell me a story"));
  assert.equal(first.usage.prompt_tokens_details.cached_tokens, 0);
  const second = await a.chat.completions.create(req("Tell me a story"));
  const cached = second.usage.prompt_tokens_details.cached_tokens;
  assert.ok(cached >= first.usage.prompt_tokens - 32 && cached < first.usage.prompt_tokens, `cached ${cached}`);
  assert.equal(second.choices[0].message.content, first.choices[0].message.content);
  assert.equal(await scrapeValue(hits) - h0, cached);
  // Another question after the same system prompt: the system prompt's blocks are reused.
  const other = await a.chat.completions.create(req("Who is Sam?"));
  assert.ok(other.usage.prompt_tokens_details.cached_tokens >= 192, JSON.stringify(other.usage));
  // Tenant b sends the very same request: nothing is reused, the text is the same.
  const h1 = await scrapeValue(hits);
  const fromB = await b.chat.completions.create(req("Tell me a story"));
  assert.equal(fromB.usage.prompt_tokens_details.cached_tokens, 0);
  assert.equal(fromB.choices[0].message.content, first.choices[0].message.content);
  assert.equal(await scrapeValue(hits), h1);
  // Streamed usage reports it too.
  const stream = await a.chat.completions.create({...req("Tell me a story"), stream: true,
                                                  stream_options: {include_usage: true}});
  let usage;
  for await (const c of stream) if (c.usage) usage = c.usage;
  assert.equal(usage.prompt_tokens_details.cached_tokens, cached);
});

test("prefix cache: a WebSocket conversation with previous_response_id prefills only the new turn, with the cold run's text", async () => {
  cli("tenants", "create", "pfx-ws", "--concurrency", "8");
  cli("tenants", "create", "pfx-cold", "--concurrency", "8");
  const kWs = newKey("pfx-ws"), cold = clientFor(newKey("pfx-cold"));
  await sleep(600);
  const {rws, run} = wsSession(kWs);
  const instructions = words(120, 2);
  const one = await run({model: "stories", instructions, input: "Tell me a story",
                         max_output_tokens: 24, temperature: 0});
  assert.equal(one.end.response.usage.input_tokens_details.cached_tokens, 0);
  const firstText = one.end.response.output[0].content[0].text;
  const two = await run({model: "stories", instructions, input: "And then?", max_output_tokens: 16,
                         temperature: 0, previous_response_id: one.end.response.id});
  const u = two.end.response.usage;
  // The earlier turn (all but the last partial block of it) comes from the cache.
  assert.ok(u.input_tokens_details.cached_tokens >= one.end.response.usage.input_tokens - 32,
            JSON.stringify(u));
  // The same conversation, cold, by a tenant with nothing cached.
  const whole = await cold.responses.create({model: "stories", instructions, max_output_tokens: 16,
    temperature: 0, input: [{role: "user", content: "Tell me a story"},
                            {role: "assistant", content: firstText},
                            {role: "user", content: "And then?"}]});
  assert.equal(whole.usage.input_tokens_details.cached_tokens, 0);
  assert.equal(two.end.response.output[0].content[0].text, whole.output_text);
  assert.equal(u.input_tokens, whole.usage.input_tokens);
  rws.close();
});

test("KV budget: streams beyond the budget are preempted and still give their alone text; too large a request gets 503", async () => {
  cli("tenants", "create", "kvb", "--concurrency", "64");
  const k = newKey("kvb");
  const s = startServer(["--kv-budget-mb", "1", "-c", "4096"]);
  const p = await s.ready;
  try {
    const c = new OpenAI({baseURL: `http://127.0.0.1:${p}/v1`, apiKey: k, maxRetries: 0});
    const req = (i) => ({model: "stories", prompt: words(8 + i, i), max_tokens: 200,
                         temperature: 0.8, seed: i});
    const alone = [];
    for (let i = 0; i < 4; ++i) alone.push((await c.completions.create(req(i))).choices[0].text);
    const texts = await Promise.all(Array.from({length: 16}, async (_, j) => {
      const stream = await c.completions.create({...req(j % 4), stream: true});
      let text = "";
      for await (const chunk of stream) for (const ch of chunk.choices) text += ch.text;
      return text;
    }));
    texts.forEach((t, j) => assert.equal(t, alone[j % 4], `stream ${j}`));
    const metrics = await (await fetch(`http://127.0.0.1:${p}/metrics`)).text();
    const pre = /realm:num_preemptions_total\{model="stories"\} (\d+)/.exec(metrics);
    assert.ok(pre && Number(pre[1]) > 0, "some streams were preempted");
    assert.match(metrics, /realm:kv_cache_usage_perc\{model="stories"\} /);
    // One request larger than the whole budget: 503 with Retry-After, nothing else hurt.
    const res = await fetch(`http://127.0.0.1:${p}/v1/completions`, {method: "POST",
      headers: {authorization: `Bearer ${k}`, "content-type": "application/json"},
      body: JSON.stringify({model: "stories", prompt: "Once", max_tokens: 3000})});
    assert.equal(res.status, 503);
    assert.ok(res.headers.get("retry-after"));
    assert.equal((await res.json()).error.code, "kv_budget_exceeded");
    assert.equal((await c.completions.create(req(0))).choices[0].text, alone[0]);
  } finally {
    s.proc.kill("SIGKILL");
  }
});

test("SIGTERM mid-stream: the stream finishes within the grace period and the server exits 0", async () => {
  const s = startServer(["--grace-s", "10"]);
  const p = await s.ready;
  const c = new OpenAI({baseURL: `http://127.0.0.1:${p}/v1`, apiKey: key, maxRetries: 0});
  const exited = new Promise((resolve) => s.proc.on("exit", (code) => resolve(code)));
  const rowsBefore = JSON.parse(cli("usage", "--tenant", "main", "--json")).total.requests;
  const stream = await c.completions.create({model: "stories", prompt: "Once upon a time",
                                             max_tokens: 200, temperature: 0, stream: true});
  let text = "", finish = null, n = 0;
  for await (const chunk of stream) {
    if (++n === 2) s.proc.kill("SIGTERM");
    for (const ch of chunk.choices) {
      text += ch.text;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.equal(finish, "length");
  assert.equal(text, realmRun("Once upon a time", 200).text);
  assert.equal(await exited, 0, s.log());
  // Its usage row was written before the exit.
  assert.equal(JSON.parse(cli("usage", "--tenant", "main", "--json")).total.requests, rowsBefore + 1);
});
