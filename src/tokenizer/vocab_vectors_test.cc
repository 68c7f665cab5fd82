// Conformance: every ../shared/vocab/*.gguf.inp/.out vector file (llama.cpp's test-tokenizer-0
// semantics: no BOS/EOS added, special-token text not parsed) must tokenize exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"
#include "util/test_data.h"

namespace realm::tok {
namespace {

using test_data::shared_dir;

std::vector<std::string> vector_files() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(shared_dir() + "/vocab", ec)) {
    const std::string name = e.path().filename().string();
    const std::string suffix = ".gguf.inp";
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      names.push_back(name.substr(0, name.size() - 4));  // the .gguf name
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Splits like test-tokenizer-0: inputs separated by "\n__ggml_vocab_test__\n", one output line
// per input.
struct Case {
  std::string text;
  std::vector<TokenId> ids;
};

std::vector<Case> read_cases(const std::string& inp_path, const std::string& out_path) {
  const auto raw = test_data::read_file(inp_path);
  if (!raw) ADD_FAILURE() << "cannot read " << inp_path;
  const std::vector<std::string> inputs =
      raw ? test_data::split_vocab_inputs(*raw) : std::vector<std::string>{};
  std::ifstream out(out_path);
  if (!out) ADD_FAILURE() << "cannot read " << out_path;
  std::vector<Case> cases;
  size_t i = 0;
  for (std::string line; std::getline(out, line); ++i) {
    Case c;
    c.text = i < inputs.size() ? inputs[i] : "";
    std::istringstream ss(line);
    for (long id; ss >> id;) c.ids.push_back(static_cast<TokenId>(id));
    cases.push_back(std::move(c));
  }
  EXPECT_EQ(inputs.size(), cases.size()) << out_path;
  return cases;
}

std::string show(const std::vector<TokenId>& ids) {
  std::string s;
  for (TokenId id : ids) s += " " + std::to_string(id);
  return s;
}

class VocabVectors : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabVectors, TokenizeExactly) {
  const std::string path = shared_dir() + "/vocab/" + GetParam();
  auto tok = Tokenizer::load(path);
  ASSERT_TRUE(tok.ok()) << tok.error().message;
  const auto cases = read_cases(path + ".inp", path + ".out");
  ASSERT_FALSE(cases.empty());
  int failures = 0;
  for (const Case& c : cases) {
    const auto ids = tok->encode(c.text, /*add_special=*/false, /*parse_special=*/false);
    if (ids != c.ids && ++failures <= 5) {
      ADD_FAILURE() << GetParam() << " text '" << c.text << "'\n  want" << show(c.ids) << "\n  got "
                    << show(ids);
    }
  }
  EXPECT_EQ(failures, 0) << failures << " of " << cases.size() << " vectors differ";
}

std::string test_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string n = info.param.substr(0, info.param.size() - 5);  // drop ".gguf"
  if (n.rfind("ggml-vocab-", 0) == 0) n = n.substr(11);
  for (char& c : n) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return n;
}

INSTANTIATE_TEST_SUITE_P(Shared, VocabVectors, ::testing::ValuesIn(vector_files()), test_name);

TEST(VocabVectorsPresent, AtLeastFourteenFiles) {
  EXPECT_GE(vector_files().size(), 14u);
}

// testdata/oracle: 158 harder texts (whitespace kinds, scripts, emoji, combining marks, special
// token texts) with the ids llama.cpp (node-llama-cpp@3.21.1) gives, with and without
// parse_special; see testdata/oracle/oracle.mjs.
std::string oracle_dir() {
  return std::string(REALM_SOURCE_DIR) + "/src/tokenizer/testdata/oracle";
}

std::vector<std::string> oracle_files() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(oracle_dir(), ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".out") == 0) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

class OracleVectors : public ::testing::TestWithParam<std::string> {};

TEST_P(OracleVectors, TokenizeExactly) {
  const std::string& name = GetParam();  // VOCAB.parse-special-N.out
  const size_t dot = name.find(".parse-special-");
  ASSERT_NE(dot, std::string::npos) << name;
  const bool parse_special = name[dot + 15] == '1';
  const std::string vocab = shared_dir() + "/vocab/ggml-vocab-" + name.substr(0, dot) + ".gguf";
  auto tok = Tokenizer::load(vocab);
  ASSERT_TRUE(tok.ok()) << tok.error().message;
  const auto cases = read_cases(oracle_dir() + "/texts.inp", oracle_dir() + "/" + name);
  ASSERT_EQ(cases.size(), 158u);
  int failures = 0;
  for (const Case& c : cases) {
    const auto ids = tok->encode(c.text, /*add_special=*/false, parse_special);
    if (ids != c.ids && ++failures <= 5) {
      ADD_FAILURE() << name << " text '" << c.text << "'\n  want" << show(c.ids) << "\n  got "
                    << show(ids);
    }
  }
  EXPECT_EQ(failures, 0) << failures << " of " << cases.size() << " vectors differ";
}

std::string oracle_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string n = info.param.substr(0, info.param.size() - 4);
  for (char& c : n) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return n;
}

INSTANTIATE_TEST_SUITE_P(LlamaCpp, OracleVectors, ::testing::ValuesIn(oracle_files()), oracle_name);

// llama_detokenize of the oracle ids (remove_special = false, unparse_special = N), one JSON
// string per line as node-llama-cpp returned it (invalid UTF-8 shown as U+FFFD by the JSON dump).
TEST(OracleDetokenize, MatchesLlamaCpp) {
  for (const char* vocab : {"llama-spm", "llama-bpe", "qwen2", "bert-bge", "gpt-2"}) {
    auto tok = Tokenizer::load(shared_dir() + "/vocab/ggml-vocab-" + vocab + ".gguf");
    ASSERT_TRUE(tok.ok()) << tok.error().message;
    const auto cases = read_cases(oracle_dir() + "/texts.inp",
                                  oracle_dir() + "/" + vocab + ".parse-special-1.out");
    for (int special = 0; special < 2; ++special) {
      std::ifstream want(oracle_dir() + "/" + vocab + ".detokenize-special-" +
                         std::to_string(special) + ".jsonl");
      ASSERT_TRUE(want) << vocab;
      std::string line;
      for (const Case& c : cases) {
        ASSERT_TRUE(std::getline(want, line)) << vocab;
        const std::string got = nlohmann::json(tok->detokenize(c.ids, false, special == 1))
                                    .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        EXPECT_EQ(got, line) << vocab << " special=" << special;
      }
    }
  }
}

TEST(OracleVectorsPresent, EighteenFiles) {
  EXPECT_EQ(oracle_files().size(), 18u);
}

}  // namespace
}  // namespace realm::tok
