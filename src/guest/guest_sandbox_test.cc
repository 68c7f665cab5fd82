// The built guest modules in the real sandbox (V8, the real host imports, limits):
// realm_default.wasm gives the same token events, text, finish reason, usage and logprobs as
// engine::generate (the `realm run --no-sandbox` path) for the same request, and the example
// custom guest realm_sentence.wasm applies its own stop rule and sampler on top of the same loop.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "engine/generate.h"
#include "gguf/writer.h"
#include "sandbox/sandbox.h"
#include "tokenizer/chat_template.h"
#include "util/fault_injection.h"
#include "util/test_data.h"

namespace realm::guest {
namespace {

using Json = nlohmann::json;

using test_data::shared_dir;

// What a request streamed, as the guest emitted it.
struct GuestRun {
  sandbox::RequestResult result;
  std::vector<int32_t> ids;
  std::vector<Json> token_events;  // the tail event (id -1) included
  std::string text, finish;
  int64_t prompt_tokens = -1, completion_tokens = -1;
};

// One shared model with its own native engine (the reference path).
struct NativeModel {
  std::shared_ptr<const model::Model> model;
  std::unique_ptr<tok::Tokenizer> tokenizer;
  std::unique_ptr<engine::Engine> engine;
  std::optional<chat::ModelChatTemplate> chat;
};

class GuestSandbox : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // stories260K ends a story with BOS (llama2.c style) and never with its EOS; a copy whose EOS
    // is BOS ends its stories with an end-of-generation token.
    auto src = gguf::GgufFile::open(shared_dir() + "/models/stories260K.gguf");
    ASSERT_TRUE(src) << src.error().message;
    auto writer = gguf::GgufWriter::copy_of(*src);
    writer.set_kv("tokenizer.ggml.eos_token_id", gguf::Value::u32(1));
    eos_path_ = new std::string(::testing::TempDir() + "/guest_sandbox_stories_eos1.gguf");
    ASSERT_TRUE(writer.write_file(*eos_path_));

    sandbox::SandboxOptions so;
    so.n_workers = 2;
    auto sb = sandbox::Sandbox::create(so);
    ASSERT_TRUE(sb) << sb.error().message;
    sandbox_ = sb->release();
    models_ = new std::map<std::string, NativeModel>();
    const std::pair<const char*, std::string> files[] = {
        {"stories", shared_dir() + "/models/stories260K.gguf"},
        {"tiny-random", shared_dir() + "/models/llama-2-tiny-random.gguf"},
        {"stories-eos1", *eos_path_}};
    for (const auto& [name, path] : files) {
      auto m = model::Model::load(path);
      ASSERT_TRUE(m) << m.error().message;
      NativeModel nm;
      nm.model = *m;
      auto t = tok::Tokenizer::from_gguf(nm.model->file());
      ASSERT_TRUE(t) << t.error().message;
      nm.tokenizer = std::make_unique<tok::Tokenizer>(std::move(*t));
      nm.engine = std::make_unique<engine::Engine>(nm.model, engine::EngineOptions{2, 512});
      auto tmpl = chat::chat_template_from_gguf(nm.model->file());
      if (tmpl) nm.chat = std::move(*tmpl);
      ASSERT_TRUE(sandbox_->add_model(name, nm.model, {2, 512}));
      models_->emplace(name, std::move(nm));
    }
    for (const char* name : {"realm_default", "realm_sentence"}) {
      auto module = sandbox_->load_module(std::string(REALM_GUEST_DIR) + "/" + name + ".wasm");
      ASSERT_TRUE(module) << module.error().message;
      sandbox::TenantRecord rec;
      rec.id = name;
      rec.allowed_models = {"stories", "tiny-random", "stories-eos1"};
      ASSERT_TRUE(sandbox_->add_tenant(rec, *module));
    }
  }
  static void TearDownTestSuite() {
    delete sandbox_;
    delete models_;
    std::remove(eos_path_->c_str());
    delete eos_path_;
  }

  // Runs `req` in the tenant's guest; `gone_after` >= 0 answers "client gone" after that many
  // token events.
  static GuestRun run(const std::string& tenant, Json req, int gone_after = -1) {
    if (!req.contains("model")) req["model"] = "stories";
    GuestRun g;
    int seen = 0;
    g.result = sandbox_->run_request(tenant, req.dump(), [&](int kind, std::string_view text) {
      Json j = Json::parse(text);
      if (kind == 1) {
        if (j["id"].get<int32_t>() >= 0) g.ids.push_back(j["id"].get<int32_t>());
        g.text += j["text"].get<std::string>();
        g.token_events.push_back(j);
        return gone_after < 0 || ++seen < gone_after;
      }
      g.finish = j["finish_reason"].get<std::string>();
      g.prompt_tokens = j["prompt_tokens"].get<int64_t>();
      g.completion_tokens = j["completion_tokens"].get<int64_t>();
      return true;
    });
    return g;
  }

  static engine::GenerateParams params_of(const Json& req) {
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
  static engine::GenerateResult native(const Json& req,
                                       std::vector<engine::TokenEvent>* events = nullptr) {
    NativeModel& w = models_->at(req.value("model", std::string("stories")));
    std::vector<int32_t> prompt;
    if (req.contains("messages")) {
      auto messages = chat::value_from_json_text(req["messages"].dump());
      EXPECT_TRUE(messages);
      chat::ChatInputs in;
      in.messages = *messages;
      in.bos_token = w.chat ? w.chat->bos_token : "";
      in.eos_token = w.chat ? w.chat->eos_token : "";
      auto text = chat::render_chat(
          w.chat ? std::string_view(w.chat->source) : std::string_view(chat::kChatmlTemplate), in);
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

  // The default guest and the native path agree event by event.
  static GuestRun expect_same(const Json& req) {
    SCOPED_TRACE(req.dump());
    std::vector<engine::TokenEvent> native_events;
    const engine::GenerateResult n = native(req, &native_events);
    GuestRun g = run("realm_default", req);
    EXPECT_TRUE(g.result.ok()) << g.result.message;
    if (!g.result.ok()) return g;
    EXPECT_EQ(g.ids, n.ids);
    EXPECT_EQ(g.text, n.text);
    EXPECT_EQ(g.finish, engine::finish_reason_name(n.finish));
    EXPECT_EQ(g.prompt_tokens, static_cast<int64_t>(n.prompt_ids.size()));
    EXPECT_EQ(g.completion_tokens, static_cast<int64_t>(n.ids.size()));
    // What went through the host's decode: the prompt and every generated token but the last.
    EXPECT_EQ(g.result.tokens_decoded,
              static_cast<int64_t>(n.prompt_ids.size() + std::max<size_t>(n.ids.size(), 1) - 1));
    EXPECT_EQ(g.token_events.size(), native_events.size());
    if (g.token_events.size() != native_events.size()) return g;
    for (size_t i = 0; i < native_events.size(); ++i) {
      EXPECT_EQ(g.token_events[i]["text"].get<std::string>(), native_events[i].text) << i;
      EXPECT_EQ(g.token_events[i]["id"].get<int32_t>(), native_events[i].id) << i;
      if (req.value("logprobs", false) && native_events[i].id >= 0) {
        EXPECT_FLOAT_EQ(g.token_events[i]["logprob"].get<float>(), native_events[i].logprob);
        const auto& top = g.token_events[i]["top_logprobs"];
        EXPECT_EQ(top.size(), native_events[i].top.size());
        for (size_t k = 0; k < std::min(top.size(), native_events[i].top.size()); ++k) {
          EXPECT_EQ(top[k]["id"].get<int32_t>(), native_events[i].top[k].id);
          EXPECT_FLOAT_EQ(top[k]["logprob"].get<float>(), native_events[i].top[k].logprob);
        }
      }
    }
    return g;
  }

  static std::map<std::string, NativeModel>* models_;
  static sandbox::Sandbox* sandbox_;
  static std::string* eos_path_;
};

std::map<std::string, NativeModel>* GuestSandbox::models_ = nullptr;
sandbox::Sandbox* GuestSandbox::sandbox_ = nullptr;
std::string* GuestSandbox::eos_path_ = nullptr;

TEST_F(GuestSandbox, DefaultGuestMatchesNativeOnStories) {
  expect_same({{"prompt", "Once upon a time"}, {"max_tokens", 48}, {"temperature", 0}});
  expect_same({{"prompt", "Lily and Tom"},
               {"max_tokens", 64},
               {"temperature", 0.9},
               {"seed", 1234},
               {"repeat_penalty", 1.15},
               {"frequency_penalty", 0.1}});
  expect_same({{"prompt", "The dog"}, {"max_tokens", 40}, {"top_k", 0}, {"seed", 7}});
  EXPECT_EQ(expect_same({{"prompt", "Once upon a time"},
                         {"max_tokens", 64},
                         {"temperature", 0},
                         {"stop", {" the", "zzz"}}})
                .finish,
            "stop");
  expect_same({{"prompt", "Once upon a time"},
               {"max_tokens", 12},
               {"temperature", 0.7},
               {"seed", 5},
               {"logprobs", true},
               {"top_logprobs", 3}});
  // Long enough to reach the end-of-sequence token (the story ends), and past it.
  expect_same({{"prompt", "Once upon a time"},
               {"max_tokens", 300},
               {"temperature", 0},
               {"ignore_eos", true}});
  expect_same({{"messages", {{{"role", "user"}, {"content", "Tell me a story"}}}},
               {"max_tokens", 24},
               {"temperature", 0}});
}

TEST_F(GuestSandbox, DefaultGuestMatchesNativeWithA32kByteFallbackVocab) {
  // Random weights over the Llama-2 vocab: many byte tokens, so UTF-8 is split across tokens.
  expect_same({{"model", "tiny-random"},
               {"prompt", "Héllo wörld, 日本語"},
               {"max_tokens", 32},
               {"temperature", 0}});
  // A request whose output splits a character across byte tokens (a token releases no text;
  // seed 7 was found by searching seeds 1..7).
  const Json req = {{"model", "tiny-random"}, {"prompt", "日本"}, {"max_tokens", 200},
                    {"temperature", 2.0},     {"top_k", 0},       {"top_p", 1.0},
                    {"min_p", 0.0},           {"seed", 7}};
  std::vector<engine::TokenEvent> events;
  native(req, &events);
  bool held = false;
  for (const auto& ev : events) held |= ev.id >= 0 && ev.text.empty();
  EXPECT_TRUE(held);
  expect_same(req);
  expect_same({{"model", "tiny-random"},
               {"prompt", "a"},
               {"max_tokens", 48},
               {"temperature", 1.0},
               {"seed", 3},
               {"stop", {"e", "日"}}});
}

TEST_F(GuestSandbox, DefaultGuestMatchesNativeAtEndOfGeneration) {
  bool found_eos = false;
  for (int seed = 1; seed <= 20 && !found_eos; ++seed) {
    Json req = {{"model", "stories-eos1"},
                {"prompt", "Once upon a time"},
                {"max_tokens", 300},
                {"seed", seed}};
    if (native(req).finish != engine::FinishReason::EOS) continue;
    found_eos = true;
    EXPECT_EQ(expect_same(req).finish, "eos");
    req["ignore_eos"] = true;
    EXPECT_EQ(expect_same(req).finish, "length");
  }
  EXPECT_TRUE(found_eos);
}

TEST_F(GuestSandbox, ClientGoneStopsTheRequest) {
  const GuestRun g = run("realm_default", {{"prompt", "Once"}, {"max_tokens", 50}}, 3);
  EXPECT_EQ(g.result.error, sandbox::RequestError::CANCELLED) << g.result.message;
  EXPECT_EQ(g.ids.size(), 3u);
  // No decode after the client left: the prompt and the two tokens before the third.
  auto prompt = models_->at("stories").tokenizer->encode("Once", true, true);
  EXPECT_EQ(g.result.tokens_decoded, static_cast<int64_t>(prompt.size()) + 2);
}

TEST_F(GuestSandbox, ErrorsAreStatusCodesWithMessages) {
  // The guest's status and message reach the caller, with the host's reason for a failed import.
  GuestRun g =
      run("realm_default", {{"prompt", "Once upon a time"}, {"max_tokens", 10}, {"n_ctx", 8}});
  EXPECT_EQ(g.result.error, sandbox::RequestError::GUEST_ERROR);
  EXPECT_NE(g.result.message.find("-5 (REALM_E_LIMIT)"), std::string::npos) << g.result.message;
  EXPECT_NE(g.result.message.find("exceed the context size 8"), std::string::npos)
      << g.result.message;
  g = run("realm_default", {{"prompt", "x"}, {"messages", Json::array()}});
  EXPECT_NE(g.result.message.find("-1 (REALM_E_INVALID)"), std::string::npos) << g.result.message;
  g = run("realm_default", {{"prompt", "x"}, {"temperature", "hot"}});
  EXPECT_NE(g.result.message.find("temperature"), std::string::npos) << g.result.message;
  g = run("realm_default", {{"prompt", "x"}, {"model", "denied"}});
  EXPECT_NE(g.result.message.find("-4 (REALM_E_DENIED)"), std::string::npos) << g.result.message;
  EXPECT_NE(g.result.message.find("may not use model 'denied'"), std::string::npos)
      << g.result.message;
  g = run("realm_default", {{"prompt", ""}, {"max_tokens", 2}});
  EXPECT_TRUE(g.result.ok()) << g.result.message;  // BOS alone is a prompt
  auto r = sandbox_->run_request("realm_default",
                                 "{\"prompt\": ", [](int, std::string_view) { return true; });
  EXPECT_EQ(r.error, sandbox::RequestError::GUEST_ERROR);
  EXPECT_NE(r.message.find("invalid JSON at byte"), std::string::npos) << r.message;
  // A context the host refuses: the engine's message reaches the guest through realm.host_error.
  g = run("realm_default", {{"prompt", "Once"}, {"max_tokens", 4}, {"n_ctx", 100000000}});
  EXPECT_EQ(g.result.error, sandbox::RequestError::GUEST_ERROR);
  EXPECT_NE(g.result.message.find("largest session context"), std::string::npos)
      << g.result.message;
}

// An allocation failure in host work for a request (tokenizing its prompt, rendering its chat
// template, its forward pass) or an event callback that throws ends that request with an internal
// error naming the cause; the process survives and the next request gets its normal result.
TEST_F(GuestSandbox, HostFaultsEndOnlyTheirRequest) {
  const Json prompt_req = {{"prompt", "Once upon a time"}, {"max_tokens", 8}, {"temperature", 0}};
  const Json chat_req = {{"messages", {{{"role", "user"}, {"content", "Tell me a story"}}}},
                         {"max_tokens", 8},
                         {"temperature", 0}};
  const std::pair<fault::Site, Json> cases[] = {{fault::Site::TOKENIZE, prompt_req},
                                                {fault::Site::CHAT_TEMPLATE, chat_req},
                                                {fault::Site::FORWARD, prompt_req}};
  for (const auto& [site, req] : cases) {
    SCOPED_TRACE(req.dump());
    fault::arm(site);
    const GuestRun g = run("realm_default", req);
    fault::arm(site, 0);
    EXPECT_EQ(g.result.error, sandbox::RequestError::INTERNAL) << g.result.message;
    EXPECT_NE(g.result.message.find("host fault"), std::string::npos) << g.result.message;
    EXPECT_NE(g.result.message.find("bad_alloc"), std::string::npos) << g.result.message;
    expect_same(req);
  }
  Json req = prompt_req;
  req["model"] = "stories";
  const auto r =
      sandbox_->run_request("realm_default", req.dump(), [](int, std::string_view) -> bool {
        throw std::runtime_error("the client's event sink broke");
      });
  EXPECT_EQ(r.error, sandbox::RequestError::INTERNAL) << r.message;
  EXPECT_NE(r.message.find("the client's event sink broke"), std::string::npos) << r.message;
  expect_same(prompt_req);
}

size_t sentence_ends(const std::string& s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((s[i] == '.' || s[i] == '!' || s[i] == '?') &&
        (i + 1 == s.size() || s[i + 1] == ' ' || s[i + 1] == '\n')) {
      ++n;
    }
  }
  return n;
}

TEST_F(GuestSandbox, ExampleGuestStopsAfterSentences) {
  const Json base = {{"prompt", "Once upon a time"}, {"max_tokens", 200}, {"temperature", 0}};
  const auto full = native(base);
  ASSERT_GE(sentence_ends(full.text), 3u) << full.text;
  for (int n : {1, 2, 3}) {
    Json req = base;
    req["max_sentences"] = n;
    const GuestRun g = run("realm_sentence", req);
    ASSERT_TRUE(g.result.ok()) << g.result.message;
    EXPECT_EQ(g.finish, "stop");
    EXPECT_EQ(sentence_ends(g.text), static_cast<size_t>(n)) << g.text;
    ASSERT_FALSE(g.text.empty());
    const char last = g.text.back();
    EXPECT_TRUE(last == '.' || last == '!' || last == '?') << g.text;
    // Up to its own stop, it is the default generation.
    ASSERT_LT(g.ids.size(), full.ids.size());
    EXPECT_TRUE(std::equal(g.ids.begin(), g.ids.end(), full.ids.begin()));
    EXPECT_EQ(full.text.compare(0, g.text.size(), g.text), 0);
  }
}

TEST_F(GuestSandbox, ExampleGuestBansTokens) {
  Json req = {{"prompt", "Once upon a time"}, {"max_tokens", 8}, {"temperature", 0}};
  const auto full = native(req);
  req["max_sentences"] = 100;
  req["ban_ids"] = {full.ids[0]};
  const GuestRun g = run("realm_sentence", req);
  ASSERT_TRUE(g.result.ok()) << g.result.message;
  ASSERT_FALSE(g.ids.empty());
  for (int32_t id : g.ids) EXPECT_NE(id, full.ids[0]);
  EXPECT_EQ(run("realm_sentence", {{"prompt", "x"}, {"ban_ids", "all"}}).result.error,
            sandbox::RequestError::GUEST_ERROR);
  EXPECT_EQ(run("realm_sentence", {{"prompt", "x"}, {"max_sentences", 0}}).result.error,
            sandbox::RequestError::GUEST_ERROR);
}

}  // namespace
}  // namespace realm::guest
