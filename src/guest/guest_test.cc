// The default guest's own sources, compiled natively and driven through a host shim over the real
// engine, against engine::generate (the `realm run --no-sandbox` path): the same ids, text, finish
// reason and logprobs for the same request. Plus the SDK pieces: HandleTable, JSON, ABI misuse.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "engine/generate.h"
#include "gguf/writer.h"
#include "guest/guest_exports.h"
#include "guest/guest_json.h"
#include "guest/host_shim.h"
#include "guest/realm_guest.h"
#include "tokenizer/chat_template.h"
#include "util/test_data.h"

namespace realm::guest {
namespace {

using Json = nlohmann::json;

using test_data::shared_dir;

struct World {
  std::shared_ptr<const model::Model> model;
  std::unique_ptr<tok::Tokenizer> tokenizer;
  std::unique_ptr<engine::Engine> engine;
  testing::HostShim shim;
};

std::unique_ptr<World> load_path(const std::string& path) {
  auto w = std::make_unique<World>();
  auto m = model::Model::load(path);
  EXPECT_TRUE(m) << m.error().message;
  if (!m) return nullptr;
  w->model = *m;
  auto t = tok::Tokenizer::from_gguf(w->model->file());
  EXPECT_TRUE(t) << t.error().message;
  if (!t) return nullptr;
  w->tokenizer = std::make_unique<tok::Tokenizer>(std::move(*t));
  w->engine = std::make_unique<engine::Engine>(w->model, engine::EngineOptions{2, 512});
  auto tmpl = chat::chat_template_from_gguf(w->model->file());
  if (tmpl) {
    w->shim.chat_template = tmpl->source;
    w->shim.bos_text = tmpl->bos_token;
    w->shim.eos_text = tmpl->eos_token;
  }
  w->shim.engine = w->engine.get();
  w->shim.tokenizer = w->tokenizer.get();
  return w;
}

std::unique_ptr<World> load(const std::string& rel) {
  return load_path(shared_dir() + "/" + rel);
}

struct GuestRun {
  int32_t rc = 0;
  std::string error;
  std::vector<int32_t> ids;
  std::string text;
  std::string finish;
  int64_t prompt_tokens = -1, completion_tokens = -1;
  std::vector<Json> token_events;
};

std::string last_error(int32_t h) {
  std::string s(static_cast<size_t>(std::max(0, realm_last_error(h, nullptr, 0))), '\0');
  realm_last_error(h, s.data(), static_cast<int32_t>(s.size()));
  return s;
}

GuestRun run_guest(World& w, const Json& req, int32_t handle = 0) {
  w.shim.events.clear();
  testing::install(&w.shim);
  const int32_t h = handle ? handle : realm_new();
  EXPECT_GT(h, 0);
  const std::string body = req.dump();
  GuestRun r;
  r.rc = realm_generate(h, body.data(), static_cast<int32_t>(body.size()));
  if (r.rc != REALM_OK) r.error = last_error(h);
  for (const auto& e : w.shim.events) {
    Json j = Json::parse(e.json);
    if (e.kind == REALM_EMIT_TOKEN) {
      if (j["id"].get<int32_t>() >= 0) r.ids.push_back(j["id"].get<int32_t>());
      r.text += j["text"].get<std::string>();
      r.token_events.push_back(j);
    } else {
      r.finish = j["finish_reason"].get<std::string>();
      r.prompt_tokens = j["prompt_tokens"].get<int64_t>();
      r.completion_tokens = j["completion_tokens"].get<int64_t>();
    }
  }
  if (!handle) {
    EXPECT_EQ(realm_delete(h), REALM_OK);
  }
  EXPECT_TRUE(w.shim.sessions.empty()) << "the guest left a host session open";
  testing::install(nullptr);
  return r;
}

engine::GenerateParams params_of(const Json& req) {
  engine::GenerateParams p;
  p.max_tokens = req.value("max_tokens", 128);
  p.sampling.temperature = req.value("temperature", 0.8f);
  p.sampling.top_k = req.value("top_k", 40);
  p.sampling.top_p = req.value("top_p", 0.95f);
  p.sampling.min_p = req.value("min_p", 0.05f);
  p.sampling.repeat_penalty = req.value("repeat_penalty", 1.0f);
  p.sampling.penalty_last_n = req.value("repeat_last_n", 64);
  p.sampling.frequency_penalty = req.value("frequency_penalty", 0.0f);
  p.sampling.presence_penalty = req.value("presence_penalty", 0.0f);
  p.sampling.seed = req.value("seed", uint64_t{42});
  p.stop = req.value("stop", std::vector<std::string>{});
  p.ignore_eos = req.value("ignore_eos", false);
  p.logprobs = req.value("logprobs", false);
  p.n_logprobs = req.value("top_logprobs", 0);
  p.n_ctx = req.value("n_ctx", int64_t{0});
  return p;
}

// The native path for the same request, with its token events.
engine::GenerateResult run_native(World& w, const Json& req,
                                  std::vector<engine::TokenEvent>* events = nullptr) {
  std::vector<int32_t> prompt;
  if (req.contains("messages")) {
    auto messages = chat::value_from_json_text(req["messages"].dump());
    EXPECT_TRUE(messages);
    chat::ChatInputs in;
    in.messages = *messages;
    in.bos_token = w.shim.bos_text;
    in.eos_token = w.shim.eos_text;
    auto text =
        chat::render_chat(w.shim.chat_template.empty() ? std::string_view(chat::kChatmlTemplate)
                                                       : std::string_view(w.shim.chat_template),
                          in);
    EXPECT_TRUE(text);
    prompt = w.tokenizer->encode(*text, true, true);
  } else {
    prompt = w.tokenizer->encode(req["prompt"].get<std::string>(), true, true);
  }
  auto r = engine::generate(*w.engine, *w.tokenizer, prompt, params_of(req),
                            [&](const engine::TokenEvent& ev) {
                              if (events) events->push_back(ev);
                              return true;
                            });
  EXPECT_TRUE(r) << r.error().message;
  return r ? std::move(*r) : engine::GenerateResult{};
}

GuestRun expect_same(World& w, const Json& req) {
  SCOPED_TRACE(req.dump());
  std::vector<engine::TokenEvent> native_events;
  const engine::GenerateResult native = run_native(w, req, &native_events);
  GuestRun guest = run_guest(w, req);
  EXPECT_EQ(guest.rc, REALM_OK) << guest.error;
  if (guest.rc != REALM_OK) return guest;
  EXPECT_EQ(guest.ids, native.ids);
  EXPECT_EQ(guest.text, native.text);
  EXPECT_EQ(guest.finish, engine::finish_reason_name(native.finish));
  EXPECT_EQ(guest.prompt_tokens, static_cast<int64_t>(native.prompt_ids.size()));
  EXPECT_EQ(guest.completion_tokens, static_cast<int64_t>(native.ids.size()));
  // Event by event: the same text released per token.
  EXPECT_EQ(guest.token_events.size(), native_events.size());
  if (guest.token_events.size() != native_events.size()) return guest;
  for (size_t i = 0; i < native_events.size(); ++i) {
    EXPECT_EQ(guest.token_events[i]["text"].get<std::string>(), native_events[i].text) << i;
    EXPECT_EQ(guest.token_events[i]["id"].get<int32_t>(), native_events[i].id) << i;
    if (req.value("logprobs", false) && native_events[i].id >= 0) {
      EXPECT_FLOAT_EQ(guest.token_events[i]["logprob"].get<float>(), native_events[i].logprob);
      const auto& top = guest.token_events[i]["top_logprobs"];
      EXPECT_EQ(top.size(), native_events[i].top.size());
      for (size_t k = 0; k < std::min(top.size(), native_events[i].top.size()); ++k) {
        EXPECT_EQ(top[k]["id"].get<int32_t>(), native_events[i].top[k].id);
        EXPECT_FLOAT_EQ(top[k]["logprob"].get<float>(), native_events[i].top[k].logprob);
      }
    }
  }
  return guest;
}

TEST(DefaultGuest, SameAsNativeOnStories) {
  auto w = load("models/stories260K.gguf");
  ASSERT_TRUE(w);
  expect_same(*w, {{"prompt", "Once upon a time"}, {"max_tokens", 48}, {"temperature", 0}});
  expect_same(*w, {{"prompt", "Lily and Tom"},
                   {"max_tokens", 64},
                   {"temperature", 0.9},
                   {"seed", 1234},
                   {"repeat_penalty", 1.15},
                   {"frequency_penalty", 0.1}});
  expect_same(*w, {{"prompt", "The dog"}, {"max_tokens", 40}, {"top_k", 0}, {"seed", 7}});
  EXPECT_EQ(expect_same(*w, {{"prompt", "Once upon a time"},
                             {"max_tokens", 64},
                             {"temperature", 0},
                             {"stop", {" the", "zzz"}}})
                .finish,
            "stop");
  expect_same(*w, {{"prompt", "Once upon a time"},
                   {"max_tokens", 12},
                   {"temperature", 0.7},
                   {"seed", 5},
                   {"logprobs", true},
                   {"top_logprobs", 3}});
  // Long enough to reach the end-of-sequence token (the story ends), and past it.

  expect_same(*w, {{"prompt", "Once upon a time"},
                   {"max_tokens", 300},
                   {"temperature", 0},
                   {"ignore_eos", true}});
  expect_same(*w, {{"messages", {{{"role", "user"}, {"content", "Tell me a story"}}}},
                   {"max_tokens", 24},
                   {"temperature", 0}});
}

TEST(DefaultGuest, SameAsNativeWithA32kByteFallbackVocab) {
  // Random weights over the Llama-2 vocab: many byte tokens, so UTF-8 is split across tokens.
  auto w = load("models/llama-2-tiny-random.gguf");
  ASSERT_TRUE(w);
  expect_same(*w, {{"prompt", "Héllo wörld, 日本語"}, {"max_tokens", 32}, {"temperature", 0}});
  // A request whose output splits a character across byte tokens (a token releases no text;
  // seed 7 was found by searching seeds 1..7).
  const Json req = {{"prompt", "日本"}, {"max_tokens", 200}, {"temperature", 2.0}, {"top_k", 0},
                    {"top_p", 1.0},     {"min_p", 0.0},      {"seed", 7}};
  std::vector<engine::TokenEvent> events;
  run_native(*w, req, &events);
  bool held = false;
  for (const auto& ev : events) held |= ev.id >= 0 && ev.text.empty();
  EXPECT_TRUE(held);
  expect_same(*w, req);
  expect_same(*w, {{"prompt", "Héllo"},
                   {"max_tokens", 64},
                   {"temperature", 1.5},
                   {"top_k", 0},
                   {"top_p", 1.0},
                   {"min_p", 0.0},
                   {"seed", 99}});
  expect_same(*w, {{"prompt", "a"},
                   {"max_tokens", 48},
                   {"temperature", 1.0},
                   {"seed", 3},
                   {"stop", {"e", "日"}}});
}

TEST(DefaultGuest, SameAsNativeAtEndOfGeneration) {
  // stories260K ends a story with BOS (llama2.c style) and never with its EOS; a copy whose EOS is
  // BOS ends its stories with an end-of-generation token.
  auto src = gguf::GgufFile::open(shared_dir() + "/models/stories260K.gguf");
  ASSERT_TRUE(src) << src.error().message;
  auto writer = gguf::GgufWriter::copy_of(*src);
  writer.set_kv("tokenizer.ggml.eos_token_id", gguf::Value::u32(1));
  const std::string path = ::testing::TempDir() + "/guest_test_stories_eos1.gguf";
  ASSERT_TRUE(writer.write_file(path));
  auto w = load_path(path);
  ASSERT_TRUE(w);
  bool found_eos = false;
  for (int seed = 1; seed <= 20 && !found_eos; ++seed) {
    Json req = {{"prompt", "Once upon a time"}, {"max_tokens", 300}, {"seed", seed}};
    if (run_native(*w, req).finish != engine::FinishReason::EOS) continue;
    found_eos = true;
    EXPECT_EQ(expect_same(*w, req).finish, "eos");
    req["ignore_eos"] = true;
    EXPECT_EQ(expect_same(*w, req).finish, "length");
  }
  EXPECT_TRUE(found_eos);
}

TEST(DefaultGuest, ClientGoneStopsTheRequest) {
  auto w = load("models/stories260K.gguf");
  ASSERT_TRUE(w);
  w->shim.gone_after = 3;
  const GuestRun r = run_guest(*w, {{"prompt", "Once"}, {"max_tokens", 50}});
  EXPECT_EQ(r.rc, REALM_OK);
  EXPECT_EQ(r.ids.size(), 3u);
  EXPECT_EQ(r.finish, "cancelled");
  EXPECT_EQ(w->shim.decode_calls, 3);  // no decode after the client left
}

TEST(DefaultGuest, ErrorsAreStatusCodesWithMessages) {
  auto w = load("models/stories260K.gguf");
  ASSERT_TRUE(w);
  GuestRun r = run_guest(*w, {{"prompt", "Once upon a time"}, {"max_tokens", 10}, {"n_ctx", 8}});
  EXPECT_EQ(r.rc, REALM_E_LIMIT);
  EXPECT_NE(r.error.find("exceed the context size 8"), std::string::npos) << r.error;
  r = run_guest(*w, {{"prompt", "x"}, {"messages", Json::array()}});
  EXPECT_EQ(r.rc, REALM_E_INVALID);
  r = run_guest(*w, {{"prompt", "x"}, {"temperature", "hot"}});
  EXPECT_EQ(r.rc, REALM_E_INVALID);
  EXPECT_NE(r.error.find("temperature"), std::string::npos) << r.error;
  r = run_guest(*w, {{"prompt", "x"}, {"model", "denied"}});
  EXPECT_EQ(r.rc, REALM_E_DENIED);
  r = run_guest(*w, {{"prompt", ""}});
  EXPECT_EQ(r.rc, REALM_OK);  // BOS alone is a prompt
  EXPECT_TRUE(r.error.empty());

  testing::install(&w->shim);
  const std::string bad = "{\"prompt\": ";
  const int32_t h = realm_new();
  EXPECT_EQ(realm_generate(h, bad.data(), static_cast<int32_t>(bad.size())), REALM_E_INVALID);
  EXPECT_NE(last_error(h).find("invalid JSON at byte"), std::string::npos) << last_error(h);
  EXPECT_EQ(realm_generate(h, bad.data(), -1), REALM_E_BOUNDS);
  EXPECT_EQ(realm_delete(h), REALM_OK);
  EXPECT_EQ(realm_delete(h), REALM_E_HANDLE);
  EXPECT_EQ(realm_generate(h, bad.data(), 3), REALM_E_HANDLE);
  EXPECT_NE(last_error(0).find(std::to_string(h)), std::string::npos);
  EXPECT_EQ(realm_generate(0, bad.data(), 3), REALM_E_HANDLE);
  EXPECT_EQ(realm_generate(-5, bad.data(), 3), REALM_E_HANDLE);
  EXPECT_EQ(realm_last_error(h, nullptr, 0), REALM_E_HANDLE);
  EXPECT_EQ(realm_abi_version(), 1);
  testing::install(nullptr);
}

TEST(HandleTable, ValidatesHandles) {
  HandleTable<int> t;
  const int32_t a = t.insert(std::make_unique<int>(1));
  const int32_t b = t.insert(std::make_unique<int>(2));
  EXPECT_GT(a, 0);
  EXPECT_GT(b, 0);
  EXPECT_NE(a, b);
  EXPECT_EQ(*t.get(a), 1);
  EXPECT_EQ(t.get(0), nullptr);
  EXPECT_EQ(t.get(-1), nullptr);
  EXPECT_EQ(t.get(a + 0x10000), nullptr);  // right slot, wrong generation
  EXPECT_EQ(t.get(0x7FFF0000), nullptr);   // slot bits zero
  EXPECT_EQ(t.get(1000), nullptr);         // never created
  EXPECT_TRUE(t.erase(a));
  EXPECT_FALSE(t.erase(a));
  EXPECT_EQ(t.get(a), nullptr);
  int32_t c = t.insert(std::make_unique<int>(3));  // reuses a's slot
  EXPECT_NE(c, a);
  EXPECT_EQ(t.get(a), nullptr);
  EXPECT_EQ(*t.get(c), 3);
  EXPECT_EQ(t.insert(nullptr), 0);
  EXPECT_EQ(t.size(), 2u);
  // Generations wrap after 32768 reuses of one slot, never giving 0 or a negative handle.
  for (int i = 0; i < 70000; ++i) {
    EXPECT_TRUE(t.erase(c));
    const int32_t d = t.insert(std::make_unique<int>(i));
    ASSERT_GT(d, 0);
    c = d;
  }
}

TEST(GuestJson, ParsesAndWrites) {
  json::Value v;
  std::string err;
  ASSERT_TRUE(json::parse(R"({"a": [1, -2.5e3, true, null], "s": "x\u00e9\ud83d\ude00\n", "a": 7})",
                          v, err))
      << err;
  ASSERT_TRUE(v.find("a"));
  int64_t i = 0;
  EXPECT_TRUE(v.find("a")->as_int64(i));  // the last duplicate wins
  EXPECT_EQ(i, 7);
  EXPECT_EQ(v.find("s")->text(), "x\xC3\xA9\xF0\x9F\x98\x80\n");
  EXPECT_EQ(v.members()[0].second.items()[1].as_number(), -2500.0);
  EXPECT_FALSE(v.members()[0].second.items()[1].as_int64(i));
  std::string out;
  json::append_value(out, v);
  EXPECT_EQ(out, "{\"a\":[1,-2.5e3,true,null],\"s\":\"x\xC3\xA9\xF0\x9F\x98\x80\\n\",\"a\":7}");
  uint64_t u = 0;
  ASSERT_TRUE(json::parse("18446744073709551615", v, err));
  EXPECT_TRUE(v.as_uint64(u));
  EXPECT_EQ(u, 18446744073709551615ull);
  for (const char* bad :
       {"", "{", "[1,]", "{\"a\" 1}", "01", "\"\\x\"", "tru", "[1] 2", "\"a\x01\"", "1."}) {
    EXPECT_FALSE(json::parse(bad, v, err)) << bad;
    EXPECT_NE(err.find("invalid JSON at byte"), std::string::npos);
  }
  EXPECT_FALSE(json::parse(std::string(100, '[') + std::string(100, ']'), v, err));
  EXPECT_NE(err.find("too deep"), std::string::npos);
  out.clear();
  json::append_string(out, std::string("a\"\\\x01", 4));
  EXPECT_EQ(out, "\"a\\\"\\\\\\u0001\"");
  out.clear();
  json::append_number(out, -0.1234567891);
  EXPECT_EQ(out, "-0.123456789");
}

}  // namespace
}  // namespace realm::guest
