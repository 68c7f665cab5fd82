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
let OpenAI;
try {
  ({default: OpenAI} = await import("openai"));
} catch {
  console.log("SKIP: the openai package is not installed (scripts/setup.sh installs it)");
  process.exit(77);
}
const model = path.join(shared, "models/stories260K.gguf");

function startServer(extra = []) {
  const proc = spawn(realm, ["serve", "--model", `stories=${model}`, "--port", "0", "-t", "2",
                             "-c", "512", ...extra], {stdio: ["ignore", "ignore", "pipe"]});
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

let server, port, client;
before(async () => {
  server = startServer();
  port = await server.ready;
  client = new OpenAI({baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "unused", maxRetries: 0});
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
                             total_tokens: want.prompt_ids.length + 32});
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
                       (e) => e.status === 400 && e.param === "previous_response_id");
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
  const base = `http://127.0.0.1:${port}`;
  let res = await fetch(`${base}/v1/completions`, {method: "POST", body: "{"});
  assert.equal(res.status, 400);
  assert.ok(res.headers.get("x-request-id"));
  assert.equal((await res.json()).error.type, "invalid_request_error");
  res = await fetch(`${base}/v1/nothing`);
  assert.equal(res.status, 404);
  res = await fetch(`${base}/v1/completions`);
  assert.equal(res.status, 405);
  res = await fetch(`${base}/v1/completions`, {method: "POST", body: "x".repeat(2 << 20)});
  assert.equal(res.status, 413);
  res = await fetch(`${base}/health`);
  assert.deepEqual(await res.json(), {status: "ok"});
});

test("32 concurrent streams each get the text they get alone (same seed)", async () => {
  const req = (seed) => ({model: "stories", prompt: "Once upon a time", max_tokens: 48,
                          temperature: 0.9, seed});
  const alone = [];
  for (let i = 0; i < 4; ++i) alone.push((await client.completions.create(req(i))).choices[0].text);
  const runs = Array.from({length: 32}, async (_, k) => {
    const stream = await client.completions.create({...req(k % 4), stream: true});
    let text = "";
    for await (const chunk of stream) for (const c of chunk.choices) text += c.text;
    return text;
  });
  const texts = await Promise.all(runs);
  texts.forEach((t, k) => assert.equal(t, alone[k % 4], `stream ${k}`));
});

test("/metrics: Prometheus text with vLLM-style names; token counters follow usage exactly", async () => {
  const base = `http://127.0.0.1:${port}`;
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
                      "realm:inter_token_latency_seconds", "realm:e2e_request_latency_seconds"]) {
    assert.ok(before.includes(`# TYPE ${name} `), name);
  }
  const r = await client.completions.create({model: "stories", prompt: "Once upon a time",
                                             max_tokens: 12, temperature: 0});
  const after = await scrape();
  const gen = 'realm:generation_tokens_total{model="stories"}';
  const prompt = 'realm:prompt_tokens_total{model="stories"}';
  const ok = 'realm:requests_total{model="stories",status="200"}';
  assert.equal(value(after, gen) - value(before, gen), r.usage.completion_tokens);
  assert.equal(value(after, prompt) - value(before, prompt), r.usage.prompt_tokens);
  assert.equal(value(after, ok) - value(before, ok), 1);
  const ttft = 'realm:time_to_first_token_seconds_count{model="stories"}';
  assert.equal(value(after, ttft) - value(before, ttft), 1);
  const itl = 'realm:inter_token_latency_seconds_count{model="stories"}';
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
  const want = realmRun("Once upon a time", 8);
  const r = await client.completions.create({model: "stories", prompt: "Once upon a time",
                                             max_tokens: 8, temperature: 0});
  assert.equal(r.choices[0].text, want.text);
});

test("SIGTERM mid-stream: the stream finishes within the grace period and the server exits 0", async () => {
  const s = startServer(["--grace-s", "10"]);
  const p = await s.ready;
  const c = new OpenAI({baseURL: `http://127.0.0.1:${p}/v1`, apiKey: "unused", maxRetries: 0});
  const exited = new Promise((resolve) => s.proc.on("exit", (code) => resolve(code)));
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
});
