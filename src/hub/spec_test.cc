#include "hub/spec.h"
#include "gguf/split.h"

#include <gtest/gtest.h>

namespace realm::hub {
namespace {

TEST(ParseSpec, RepoWithAndWithoutQuant) {
  auto s = parse_spec("TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->kind, SpecKind::REPO);
  EXPECT_EQ(s->repo, "TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF");
  EXPECT_EQ(s->quant, "Q4_K_M");
  EXPECT_EQ(s->revision, "main");
  EXPECT_EQ(s->name, "TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF:Q4_K_M");

  s = parse_spec("test/tiny-GGUF:q8_0");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->quant, "Q8_0");
  EXPECT_EQ(s->name, "test/tiny-GGUF:Q8_0");
}

TEST(ParseSpec, Revision) {
  auto s = parse_spec("a/b:Q8_0@v2");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->revision, "v2");
  EXPECT_EQ(s->name, "a/b:Q8_0@v2");
  s = parse_spec("a/b@v2:q8_0");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->name, "a/b:Q8_0@v2");
  s = parse_spec("a/b", "dev");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->name, "a/b:Q4_K_M@dev");
  s = parse_spec("a/b@main:Q8_0");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->name, "a/b:Q8_0");  // main is the default: not spelled out
  auto bad = parse_spec("a/b@v1", "v2");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("v1"), std::string::npos);
}

TEST(ParseSpec, File) {
  auto s = parse_spec("owner/repo/sub/model.Q4_0.gguf");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->kind, SpecKind::FILE);
  EXPECT_EQ(s->repo, "owner/repo");
  EXPECT_EQ(s->file, "sub/model.Q4_0.gguf");
  EXPECT_EQ(s->name, "owner/repo/sub/model.Q4_0.gguf");
  EXPECT_FALSE(parse_spec("owner/repo/readme.md").ok());
  EXPECT_FALSE(parse_spec("owner/repo/../x.gguf").ok());
  EXPECT_FALSE(parse_spec("owner/repo//x.gguf").ok());
  EXPECT_FALSE(parse_spec("owner/repo/x.gguf:Q8_0").ok());
}

TEST(ParseSpec, Url) {
  auto s = parse_spec("https://example.com/models/x.gguf?download=1");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->kind, SpecKind::URL);
  EXPECT_EQ(s->url, "https://example.com/models/x.gguf?download=1");
  EXPECT_EQ(s->name, "example.com/models/x.gguf");
  s = parse_spec("http://127.0.0.1:8123/cdn/x.gguf");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->name, "127.0.0.1:8123/cdn/x.gguf");
  EXPECT_TRUE(parse_spec("http://localhost:1/x.gguf").ok());
  auto plain = parse_spec("http://example.com/x.gguf");
  ASSERT_FALSE(plain.ok());
  EXPECT_NE(plain.error().message.find("loopback"), std::string::npos);
  EXPECT_FALSE(parse_spec("https://example.com/").ok());
  EXPECT_FALSE(parse_spec("https://user@example.com/x.gguf").ok());
  EXPECT_FALSE(parse_spec("ftp://example.com/x.gguf").ok());
}

TEST(ParseSpec, Rejects) {
  for (const char* bad :
       {"", "justaname", "a/b:", "a/b:notaquant", "/b", "a/", "a b/c", "../x/y", "a/b@"}) {
    auto s = parse_spec(bad);
    EXPECT_FALSE(s.ok()) << bad;
    if (!s.ok() && *bad) {
      EXPECT_NE(s.error().message.find(bad), std::string::npos) << bad;
    }
  }
}

TEST(Loopback, Hosts) {
  EXPECT_TRUE(is_loopback_host("127.0.0.1"));
  EXPECT_TRUE(is_loopback_host("127.1.2.3"));
  EXPECT_TRUE(is_loopback_host("localhost"));
  EXPECT_TRUE(is_loopback_host("[::1]"));
  EXPECT_FALSE(is_loopback_host("127.0.0.1.evil.com"));
  EXPECT_FALSE(is_loopback_host("10.0.0.1"));
}

TEST(ShardName, ParseAndFormat) {
  auto n = gguf::parse_split_path("dir/model-Q4_K_M-00002-of-00003.gguf");
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(n->prefix, "dir/model-Q4_K_M");
  EXPECT_EQ(n->no, 2u);
  EXPECT_EQ(n->count, 3u);
  EXPECT_EQ(gguf::split_path(n->prefix, 1, 3), "dir/model-Q4_K_M-00001-of-00003.gguf");
  EXPECT_FALSE(gguf::parse_split_path("model.Q4_K_M.gguf").has_value());
  EXPECT_FALSE(gguf::parse_split_path("m-00004-of-00003.gguf").has_value());
  EXPECT_FALSE(gguf::parse_split_path("m-00000-of-00003.gguf").has_value());
  EXPECT_FALSE(gguf::parse_split_path("-00001-of-00003.gguf").has_value());
}

TEST(QuantTags, FromNames) {
  EXPECT_EQ(quant_tags("tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf"), std::vector<std::string>{"Q4_K_M"});
  EXPECT_EQ(quant_tags("Qwen2-0.5B-Instruct-IQ4_XS.gguf"), std::vector<std::string>{"IQ4_XS"});
  EXPECT_EQ(quant_tags("model-f16.gguf"), std::vector<std::string>{"F16"});
  EXPECT_EQ(quant_tags("m-Q8_0-00001-of-00002.gguf"), std::vector<std::string>{"Q8_0"});
  EXPECT_TRUE(quant_tags("README.gguf").empty());
}

const std::vector<std::string> kRepo = {
    ".gitattributes",
    "README.md",
    "tiny.Q4_K_M.gguf",
    "tiny.Q4_K_S.gguf",
    "tiny.q8_0.gguf",
    "tiny.IQ4_XS.gguf",
    "mmproj-tiny-Q8_0.gguf",
    "split/tiny-Q6_K-00001-of-00002.gguf",
    "split/tiny-Q6_K-00002-of-00002.gguf",
    "both/tiny-F16-00001-of-00002.gguf",
    "both/tiny-F16-00002-of-00002.gguf",
    "tiny-F16.gguf",
    "a/tiny.Q5_0.gguf",
    "b/tiny.Q5_0.gguf",
    "broken/tiny-Q3_K_M-00001-of-00002.gguf",
};

TEST(PickQuant, PlainFileCaseInsensitive) {
  auto p = pick_quant_files(kRepo, "Q4_K_M", "t/r");
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(*p, std::vector<std::string>{"tiny.Q4_K_M.gguf"});  // not Q4_K_S
  p = pick_quant_files(kRepo, "q8_0", "t/r");
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(*p, std::vector<std::string>{"tiny.q8_0.gguf"});  // mmproj skipped
  p = pick_quant_files(kRepo, "Q4_K", "t/r");
  EXPECT_FALSE(p.ok());  // Q4_K is neither Q4_K_M nor Q4_K_S
}

TEST(PickQuant, SplitSetInOrder) {
  auto p = pick_quant_files(kRepo, "Q6_K", "t/r");
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(*p, (std::vector<std::string>{"split/tiny-Q6_K-00001-of-00002.gguf",
                                          "split/tiny-Q6_K-00002-of-00002.gguf"}));
}

TEST(PickQuant, PlainPreferredOverSplit) {
  auto p = pick_quant_files(kRepo, "F16", "t/r");
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(*p, std::vector<std::string>{"tiny-F16.gguf"});
}

TEST(PickQuant, AmbiguousListsCandidates) {
  auto p = pick_quant_files(kRepo, "Q5_0", "t/r");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message.find("a/tiny.Q5_0.gguf"), std::string::npos);
  EXPECT_NE(p.error().message.find("b/tiny.Q5_0.gguf"), std::string::npos);
}

TEST(PickQuant, MissingQuantListsAvailable) {
  auto p = pick_quant_files(kRepo, "Q2_K", "t/r");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::NOT_FOUND);
  const std::string& m = p.error().message;
  EXPECT_NE(m.find("Q2_K"), std::string::npos);
  EXPECT_NE(m.find("t/r"), std::string::npos);
  for (const char* q : {"Q4_K_M", "Q4_K_S", "Q8_0", "IQ4_XS", "Q6_K", "F16"}) {
    EXPECT_NE(m.find(q), std::string::npos) << q;
  }
}

TEST(PickQuant, MissingShard) {
  auto p = pick_quant_files(kRepo, "Q3_K_M", "t/r");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message.find("broken/tiny-Q3_K_M-00002-of-00002.gguf"), std::string::npos);
}

TEST(ShardSet, FromAnyShard) {
  auto s = shard_set(kRepo, "split/tiny-Q6_K-00002-of-00002.gguf");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->size(), 2u);
  EXPECT_EQ((*s)[0], "split/tiny-Q6_K-00001-of-00002.gguf");
  s = shard_set(kRepo, "tiny.q8_0.gguf");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, std::vector<std::string>{"tiny.q8_0.gguf"});
}

TEST(EscapeName, DistinctAndSafe) {
  EXPECT_EQ(escape_name("test/tiny-GGUF:Q8_0"), "test%2Ftiny-GGUF%3AQ8_0");
  EXPECT_EQ(escape_name(".hidden"), "%2Ehidden");
  EXPECT_EQ(escape_name(".."), "%2E.");
  EXPECT_NE(escape_name("a/b"), escape_name("a%2Fb"));
  std::string long_name(400, 'x');
  std::string e = escape_name(long_name);
  EXPECT_LE(e.size(), 200u);
  EXPECT_NE(e, escape_name(long_name + "y"));
}

}  // namespace
}  // namespace realm::hub
