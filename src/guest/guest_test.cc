// The guest SDK's pieces compiled natively: HandleTable and the JSON reader/writer. (The guests
// themselves are tested as built, in the real sandbox: guest_sandbox_test.cc, and under a mock
// host in Node.js: wasm_smoke.mjs.)
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "guest/guest_json.h"
#include "guest/realm_guest.h"

namespace realm::guest {
namespace {

using Json = nlohmann::json;

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
