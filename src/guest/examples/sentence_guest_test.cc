// The example custom guest (examples/sentence_guest.cc), compiled natively and driven through the
// host shim over a real model: its stop rule ends the request after N sentences, its sampler bans
// tokens, and otherwise it generates exactly what the default guest (= the native path) does.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "engine/generate.h"
#include "guest/guest_exports.h"
#include "guest/host_shim.h"
#include "guest/realm_guest.h"
#include "util/test_data.h"

namespace realm::guest {
namespace {

using Json = nlohmann::json;

using test_data::shared_dir;

struct GuestRun {
  int32_t rc = 0;
  std::vector<int32_t> ids;
  std::string text, finish;
};

class SentenceGuest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = model::Model::load(shared_dir() + "/models/stories260K.gguf");
    ASSERT_TRUE(m) << m.error().message;
    model_ = *m;
    auto t = tok::Tokenizer::from_gguf(model_->file());
    ASSERT_TRUE(t);
    tokenizer_ = std::make_unique<tok::Tokenizer>(std::move(*t));
    engine_ = std::make_unique<engine::Engine>(model_, engine::EngineOptions{2, 512});
    shim_.engine = engine_.get();
    shim_.tokenizer = tokenizer_.get();
    testing::install(&shim_);
  }
  void TearDown() override { testing::install(nullptr); }

  GuestRun run(const Json& req) {
    shim_.events.clear();
    const int32_t h = realm_new();
    const std::string body = req.dump();
    GuestRun r;
    r.rc = realm_generate(h, body.data(), static_cast<int32_t>(body.size()));
    for (const auto& e : shim_.events) {
      Json j = Json::parse(e.json);
      if (e.kind == REALM_EMIT_TOKEN) {
        if (j["id"].get<int32_t>() >= 0) r.ids.push_back(j["id"].get<int32_t>());
        r.text += j["text"].get<std::string>();
      } else {
        r.finish = j["finish_reason"].get<std::string>();
      }
    }
    EXPECT_EQ(realm_delete(h), REALM_OK);
    EXPECT_TRUE(shim_.sessions.empty());
    return r;
  }

  engine::GenerateResult native(const std::string& prompt, int32_t max_tokens) {
    engine::GenerateParams p;
    p.max_tokens = max_tokens;
    p.sampling.temperature = 0;
    auto r = engine::generate(*engine_, *tokenizer_, tokenizer_->encode(prompt, true, true), p);
    EXPECT_TRUE(r);
    return std::move(*r);
  }

  std::shared_ptr<const model::Model> model_;
  std::unique_ptr<tok::Tokenizer> tokenizer_;
  std::unique_ptr<engine::Engine> engine_;
  testing::HostShim shim_;
};

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

TEST_F(SentenceGuest, StopsAfterTheRequestedSentences) {
  const auto full = native("Once upon a time", 200);
  ASSERT_GE(sentence_ends(full.text), 3u) << full.text;
  for (int n : {1, 2, 3}) {
    const GuestRun r = run({{"prompt", "Once upon a time"},
                            {"max_tokens", 200},
                            {"temperature", 0},
                            {"max_sentences", n}});
    ASSERT_EQ(r.rc, REALM_OK);
    EXPECT_EQ(r.finish, "stop");
    EXPECT_EQ(sentence_ends(r.text), static_cast<size_t>(n)) << r.text;
    // Up to its own stop, it is the default generation.
    ASSERT_LE(r.ids.size(), full.ids.size());
    EXPECT_TRUE(std::equal(r.ids.begin(), r.ids.end(), full.ids.begin()));
    EXPECT_EQ(full.text.compare(0, r.text.size(), r.text), 0);
    const char last = r.text.back();
    EXPECT_TRUE(last == '.' || last == '!' || last == '?') << r.text;
  }
}

TEST_F(SentenceGuest, BansTokens) {
  const auto full = native("Once upon a time", 8);
  const GuestRun r = run({{"prompt", "Once upon a time"},
                          {"max_tokens", 8},
                          {"temperature", 0},
                          {"max_sentences", 100},
                          {"ban_ids", {full.ids[0]}}});
  ASSERT_EQ(r.rc, REALM_OK);
  ASSERT_FALSE(r.ids.empty());
  EXPECT_NE(r.ids[0], full.ids[0]);
  for (int32_t id : r.ids) EXPECT_NE(id, full.ids[0]);
  const GuestRun bad = run({{"prompt", "x"}, {"ban_ids", "all"}});
  EXPECT_EQ(bad.rc, REALM_E_INVALID);
  const GuestRun bad2 = run({{"prompt", "x"}, {"max_sentences", 0}});
  EXPECT_EQ(bad2.rc, REALM_E_INVALID);
}

}  // namespace
}  // namespace realm::guest
