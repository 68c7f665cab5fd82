// The built guest modules in the real sandbox (V8, host imports, limits): realm_default.wasm gives
// the same token events as engine::generate, and the example custom guest realm_sentence.wasm
// applies its own stop rule and sampler on top of the same loop.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "engine/generate.h"
#include "sandbox/sandbox.h"
#include "util/test_data.h"

namespace realm::guest {
namespace {

using Json = nlohmann::json;

using test_data::shared_dir;

struct Events {
  std::vector<int32_t> ids;
  std::vector<std::string> texts;  // per token event (the tail event included)
  std::string text, finish;
};

class GuestSandbox : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto m = model::Model::load(shared_dir() + "/models/stories260K.gguf");
    ASSERT_TRUE(m) << m.error().message;
    model_ = new std::shared_ptr<const model::Model>(*m);
    auto t = tok::Tokenizer::from_gguf((*model_)->file());
    ASSERT_TRUE(t);
    tokenizer_ = new tok::Tokenizer(std::move(*t));
    sandbox::SandboxOptions so;
    so.n_workers = 2;
    auto sb = sandbox::Sandbox::create(so);
    ASSERT_TRUE(sb) << sb.error().message;
    sandbox_ = sb->release();
    ASSERT_TRUE(sandbox_->add_model("stories", *model_, {2, 512}));
    for (const char* name : {"realm_default", "realm_sentence"}) {
      auto module = sandbox_->load_module(std::string(REALM_GUEST_DIR) + "/" + name + ".wasm");
      ASSERT_TRUE(module) << module.error().message;
      sandbox::TenantRecord rec;
      rec.id = name;
      rec.allowed_models = {"stories"};
      ASSERT_TRUE(sandbox_->add_tenant(rec, *module));
    }
  }
  static void TearDownTestSuite() {
    delete sandbox_;
    delete tokenizer_;
    delete model_;
  }

  static Events run(const std::string& tenant, const Json& req, sandbox::RequestResult* out) {
    Events ev;
    auto r = sandbox_->run_request(tenant, req.dump(), [&](int kind, std::string_view text) {
      Json j = Json::parse(text);
      if (kind == 1) {
        if (j["id"].get<int32_t>() >= 0) ev.ids.push_back(j["id"].get<int32_t>());
        ev.texts.push_back(j["text"].get<std::string>());
        ev.text += ev.texts.back();
      } else {
        ev.finish = j["finish_reason"].get<std::string>();
      }
      return true;
    });
    EXPECT_TRUE(r.ok()) << r.message;
    if (out) *out = r;
    return ev;
  }

  static engine::GenerateResult native(const Json& req, std::vector<std::string>* texts) {
    engine::Engine engine(*model_, {2, 512});
    engine::GenerateParams p;
    p.max_tokens = req.value("max_tokens", 128);
    p.sampling.temperature = req.value("temperature", 0.8f);
    p.sampling.top_k = req.value("top_k", 40);
    p.sampling.seed = req.value("seed", uint64_t{42});
    p.sampling.repeat_penalty = req.value("repeat_penalty", 1.0f);
    p.stop = req.value("stop", std::vector<std::string>{});
    auto prompt = tokenizer_->encode(req["prompt"].get<std::string>(), true, true);
    auto r = engine::generate(engine, *tokenizer_, prompt, p, [&](const engine::TokenEvent& e) {
      if (texts) texts->push_back(e.text);
      return true;
    });
    EXPECT_TRUE(r) << r.error().message;
    return std::move(*r);
  }

  static std::shared_ptr<const model::Model>* model_;
  static tok::Tokenizer* tokenizer_;
  static sandbox::Sandbox* sandbox_;
};

std::shared_ptr<const model::Model>* GuestSandbox::model_ = nullptr;
tok::Tokenizer* GuestSandbox::tokenizer_ = nullptr;
sandbox::Sandbox* GuestSandbox::sandbox_ = nullptr;

TEST_F(GuestSandbox, DefaultGuestMatchesNative) {
  const Json requests[] = {
      {{"model", "stories"},
       {"prompt", "Once upon a time"},
       {"max_tokens", 64},
       {"temperature", 0}},
      {{"model", "stories"},
       {"prompt", "Lily"},
       {"max_tokens", 64},
       {"temperature", 0.9},
       {"seed", 77},
       {"repeat_penalty", 1.1}},
      {{"model", "stories"},
       {"prompt", "Once upon a time"},
       {"max_tokens", 64},
       {"temperature", 0},
       {"stop", {" the"}}},
  };
  for (const Json& req : requests) {
    SCOPED_TRACE(req.dump());
    std::vector<std::string> native_texts;
    const auto n = native(req, &native_texts);
    sandbox::RequestResult r;
    const Events g = run("realm_default", req, &r);
    EXPECT_EQ(g.ids, n.ids);
    EXPECT_EQ(g.texts, native_texts);
    EXPECT_EQ(g.finish, engine::finish_reason_name(n.finish));
  }
}

TEST_F(GuestSandbox, ExampleGuestStopsAfterSentences) {
  const Json base = {{"model", "stories"},
                     {"prompt", "Once upon a time"},
                     {"max_tokens", 200},
                     {"temperature", 0}};
  const auto full = native(base, nullptr);
  for (int n : {1, 2}) {
    Json req = base;
    req["max_sentences"] = n;
    const Events g = run("realm_sentence", req, nullptr);
    EXPECT_EQ(g.finish, "stop");
    ASSERT_FALSE(g.text.empty());
    const char last = g.text.back();
    EXPECT_TRUE(last == '.' || last == '!' || last == '?') << g.text;
    ASSERT_LT(g.ids.size(), full.ids.size());
    EXPECT_TRUE(std::equal(g.ids.begin(), g.ids.end(), full.ids.begin()));
  }
  Json ban = base;
  ban["max_tokens"] = 4;
  ban["max_sentences"] = 100;
  ban["ban_ids"] = {full.ids[0]};
  const Events g = run("realm_sentence", ban, nullptr);
  ASSERT_FALSE(g.ids.empty());
  EXPECT_NE(g.ids[0], full.ids[0]);
}

}  // namespace
}  // namespace realm::guest
