// Tokenizer behaviour against llama.cpp's truth in ../shared: reference prompt ids (with BOS),
// reference continuations, special tokens, EOG sets, invalid UTF-8 and random-byte robustness.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "gguf/writer.h"
#include "tokenizer/unicode.h"
#include "util/test_data.h"

namespace realm::tok {
namespace {

using test_data::shared_dir;

const Tokenizer& load_cached(const std::string& rel) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& slot = cache[rel];
  if (!slot) {
    auto t = Tokenizer::load(shared_dir() + "/" + rel);
    if (!t.ok()) {
      ADD_FAILURE() << t.error().message;
      std::abort();
    }
    slot = std::make_unique<Tokenizer>(std::move(*t));
  }
  return *slot;
}

const Tokenizer& vocab(const std::string& name) {
  return load_cached("vocab/ggml-vocab-" + name + ".gguf");
}

std::vector<TokenId> ids_of(const nlohmann::json& j) {
  return j.get<std::vector<TokenId>>();
}

// The prompt ids llama-tokenize produced (BOS added) and the text llama-server streamed for the
// greedy continuation.
TEST(ReferencePrompts, ReproducedExactly) {
  for (const char* model : {"stories260K", "llama-2-tiny-random"}) {
    const Tokenizer& tok = load_cached(std::string("models/") + model + ".gguf");
    std::ifstream f(shared_dir() + "/models/reference/" + model + ".json");
    ASSERT_TRUE(f) << model;
    const auto ref = nlohmann::json::parse(f);
    ASSERT_FALSE(ref["prompts"].empty());
    for (const auto& p : ref["prompts"]) {
      const std::string prompt = p["prompt"];
      EXPECT_EQ(tok.encode(prompt, /*add_special=*/true, /*parse_special=*/false),
                ids_of(p["prompt_token_ids"]))
          << model << ": " << prompt;
      std::string text;
      for (TokenId id : ids_of(p["continuation_token_ids"])) text += tok.token_to_piece(id, false);
      EXPECT_EQ(text, p["continuation_text"].get<std::string>()) << model << ": " << prompt;
    }
  }
}

TEST(SpecialTokens, BosEosAndParsing) {
  const Tokenizer& spm = vocab("llama-spm");
  EXPECT_EQ(spm.vocab().bos(), 1);
  EXPECT_EQ(spm.vocab().eos(), 2);
  EXPECT_TRUE(spm.vocab().add_bos());
  EXPECT_FALSE(spm.vocab().add_eos());
  EXPECT_TRUE(spm.encode("", true, false) == std::vector<TokenId>{1});
  EXPECT_TRUE(spm.encode("", false, false).empty());
  const auto parsed = spm.encode("<s>Hi</s>", false, true);
  ASSERT_GE(parsed.size(), 3u);
  EXPECT_EQ(parsed.front(), 1);
  EXPECT_EQ(parsed.back(), 2);
  const auto unparsed = spm.encode("<s>Hi</s>", false, false);
  EXPECT_EQ(std::count(unparsed.begin(), unparsed.end(), 1), 0);
  EXPECT_GT(unparsed.size(), parsed.size());
  EXPECT_TRUE(spm.vocab().is_eog(2));

  const Tokenizer& l3 = vocab("llama-bpe");
  const Vocab& v3 = l3.vocab();
  EXPECT_TRUE(v3.add_bos());
  EXPECT_EQ(v3.bos(), v3.find("<|begin_of_text|>"));
  const auto hello = l3.encode("Hello", true, false);
  ASSERT_EQ(hello.size(), 2u);
  EXPECT_EQ(hello[0], v3.bos());
  const TokenId eot = v3.find("<|eot_id|>");
  ASSERT_NE(eot, kNullToken);
  EXPECT_TRUE(v3.is_eog(eot));
  EXPECT_TRUE(v3.is_eog(v3.find("<|end_of_text|>")));
  EXPECT_FALSE(v3.is_eog(v3.bos()));
  EXPECT_EQ(l3.encode("<|eot_id|>", false, true), std::vector<TokenId>{eot});
  EXPECT_GT(l3.encode("<|eot_id|>", false, false).size(), 1u);
  // Control tokens render only when asked.
  EXPECT_EQ(l3.token_to_piece(eot, false), "");
  EXPECT_EQ(l3.token_to_piece(eot, true), "<|eot_id|>");

  const Tokenizer& qwen = vocab("qwen2");
  const Vocab& vq = qwen.vocab();
  const TokenId im_end = vq.find("<|im_end|>");
  EXPECT_TRUE(vq.is_eog(im_end));
  EXPECT_TRUE(vq.is_eog(vq.find("<|endoftext|>")));
  EXPECT_FALSE(vq.add_bos());
  const auto chat = qwen.encode("<|im_start|>user\nhi<|im_end|>", false, true);
  EXPECT_EQ(chat.front(), vq.find("<|im_start|>"));
  EXPECT_EQ(chat.back(), im_end);
}

// Valid UTF-8 text survives encode -> detokenize (SPM strips the prefix space it added; qwen2
// has no clean-up pass).
TEST(Detokenize, RoundTripsVectorTexts) {
  for (const char* name : {"llama-spm", "qwen2", "qwen35", "deepseek-coder"}) {
    const Tokenizer& tok = vocab(name);
    const auto raw = test_data::read_file(shared_dir() + "/vocab/ggml-vocab-" + name + ".gguf.inp");
    ASSERT_TRUE(raw) << name;
    for (const std::string& text : test_data::split_vocab_inputs(*raw)) {
      EXPECT_EQ(tok.detokenize(tok.encode(text, false, false)), text) << name;
    }
  }
}

TEST(Detokenize, RemoveSpecialAndCleanSpaces) {
  const Tokenizer& spm = vocab("llama-spm");
  const auto ids = spm.encode("Hello world", true, false);
  // llama_detokenize keeps the space after a removed BOS (remove_space is turned off there).
  EXPECT_EQ(spm.detokenize(ids, /*remove_special=*/true), " Hello world");
  EXPECT_EQ(spm.detokenize(std::span(ids).subspan(1)), "Hello world");
  EXPECT_EQ(spm.detokenize(ids, false, /*unparse_special=*/true), "<s> Hello world");
  const Tokenizer& gpt2 = vocab("gpt-2");  // clean_spaces: " ," -> ","
  EXPECT_TRUE(gpt2.vocab().clean_spaces());
  EXPECT_EQ(gpt2.detokenize(gpt2.encode("a , b 's", false, false)), "a, b's");
}

// llama.cpp's invalid-UTF-8 rules: SPM falls back to byte tokens (lossless); byte-level BPE
// decodes to code points first, each invalid byte becoming U+FFFD.
TEST(InvalidUtf8, HandledLikeLlamaCpp) {
  const Tokenizer& spm = vocab("llama-spm");
  const auto ids = spm.encode("a\xff", false, false);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.back(), spm.vocab().find("<0xFF>"));
  const Tokenizer& qwen = vocab("qwen2");
  EXPECT_EQ(qwen.encode("a\xff\xc3", false, false),
            qwen.encode("a\xef\xbf\xbd\xef\xbf\xbd", false, false));
}

std::string lossy(const std::string& s) {
  std::string out;
  for (uint32_t c : utf8_to_cpts(s)) append_utf8(out, c);
  return out;
}

// Random bytes: never a crash (run under ASan/UBSan in the clang build), ids in range, and the
// documented round trip.
TEST(RandomBytes, EncodeDecodeRoundTrip) {
  std::mt19937 rng(1234);
  const char* names[] = {"llama-spm", "llama-bpe", "qwen2", "deepseek-llm", "falcon", "gpt-2"};
  for (const char* name : names) {
    const Tokenizer& tok = vocab(name);
    for (int iter = 0; iter < 150; ++iter) {
      std::string s(rng() % 48, '\0');
      for (char& c : s) {
        // Bias towards interesting bytes: ASCII, spaces, lead and continuation bytes.
        const uint32_t r = rng() % 4;
        c = static_cast<char>(r == 0 ? ' ' : r == 1 ? 'a' + rng() % 26 : rng() % 256);
      }
      const bool special = rng() % 2;
      const auto ids = tok.encode(s, special, special);
      for (TokenId id : ids) ASSERT_TRUE(tok.vocab().valid(id)) << name;
      if (special) continue;
      const std::string back = tok.detokenize(ids);
      if (tok.vocab().type() == VocabType::SPM) {
        // Lossless up to '▁': a space escaped to '▁' that a broken lead byte swallows into its
        // symbol comes back as the raw bytes of '▁' (byte fallback), as in llama.cpp.
        std::string unescaped;
        for (size_t i = 0; i < back.size(); ++i) {
          if (back.compare(i, 3, "\xe2\x96\x81") == 0 &&
              s.find("\xe2\x96\x81") == std::string::npos) {
            unescaped += ' ';
            i += 2;
          } else {
            unescaped += back[i];
          }
        }
        EXPECT_EQ(unescaped, s) << name;
      } else if (!tok.vocab().clean_spaces()) {
        EXPECT_EQ(back, lossy(s)) << name;
      }
    }
  }
}

// Very long runs (where llama.cpp's std::regex overflows its stack for some pre-tokenizers)
// tokenize and round-trip.
TEST(LongRuns, TokenizeAndRoundTrip) {
  const std::string texts[] = {std::string(20000, ' ') + "a", std::string(20000, '!'),
                               std::string(10000, '\n') + " x", std::string(10000, '1')};
  for (const char* name : {"qwen2", "deepseek-llm", "falcon", "llama-bpe"}) {
    const Tokenizer& tok = vocab(name);
    for (const std::string& text : texts) {
      const auto ids = tok.encode(text, false, false);
      ASSERT_FALSE(ids.empty()) << name;
      EXPECT_EQ(tok.detokenize(ids), text) << name;
    }
  }
  const Tokenizer& qwen = vocab("qwen2");
  const auto ids = qwen.encode(std::string(20000, ' ') + "a", false, false);
  EXPECT_EQ(ids.back(), qwen.vocab().find("\xc4\xa0"
                                          "a"));  // "Ġa": the last space joins the word
}

// The SPM merge cuts the text before '▁' where no token can span the cut; the ids must equal
// those of one global merge queue.
TEST(Spm, SegmentedMergeEqualsGlobalMerge) {
  std::mt19937 rng(99);
  const char* pieces[] = {
      " ",  "  ", "   ", "a",   "the",   " of",    "\xe2\x96\x81", "\xc3\xa9", "\xf0\x9f\xa6\x99",
      "\n", "\t", ".",   "ing", "Hello", " world", "\xe4\xb8\xad", "\xff",     "\xe2"};
  for (const char* name : {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-phi-3.gguf",
                           "models/stories260K.gguf"}) {
    const Tokenizer& tok = load_cached(name);
    for (int iter = 0; iter < 300; ++iter) {
      std::string text = " ";
      const int n = 1 + rng() % 40;
      for (int i = 0; i < n; ++i) text += pieces[rng() % std::size(pieces)];
      std::string escaped;
      for (char c : text) escaped += c == ' ' ? std::string("\xe2\x96\x81") : std::string(1, c);
      EXPECT_EQ(Tokenizer::spm_merge_for_test(tok.vocab(), escaped, true),
                Tokenizer::spm_merge_for_test(tok.vocab(), escaped, false))
          << name << ": '" << text << "'";
    }
    const auto text = test_data::read_file(shared_dir() + "/models/reference/perplexity-text.txt");
    ASSERT_TRUE(text);
    const std::string raw = " " + text->substr(0, 20000);
    std::string escaped;
    for (char c : raw) escaped += c == ' ' ? std::string("\xe2\x96\x81") : std::string(1, c);
    EXPECT_EQ(Tokenizer::spm_merge_for_test(tok.vocab(), escaped, true),
              Tokenizer::spm_merge_for_test(tok.vocab(), escaped, false));
  }
}

// A special token id outside the vocabulary is not silently replaced: the loader keeps the
// default id and says so (llama.cpp warns the same way).
TEST(VocabMetadata, OutOfRangeSpecialIdsAreReported) {
  auto src = gguf::GgufFile::open(shared_dir() + "/models/stories260K.gguf");
  ASSERT_TRUE(src) << src.error().message;
  auto w = gguf::GgufWriter::copy_of(*src);
  w.set_kv("tokenizer.ggml.bos_token_id", gguf::Value::u32(40000));
  const std::string path = ::testing::TempDir() + "/tokenizer_test_bad_bos.gguf";
  ASSERT_TRUE(w.write_file(path));
  auto t = Tokenizer::load(path);
  std::remove(path.c_str());
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->vocab().bos(), 1);
  ASSERT_EQ(t->vocab().warnings().size(), 1u);
  EXPECT_EQ(t->vocab().warnings()[0],
            "tokenizer.ggml.bos_token_id = 40000 is out of range (the vocabulary has 512 tokens); "
            "using the default id 1");
  EXPECT_TRUE(vocab("llama-spm").vocab().warnings().empty());
}

}  // namespace
}  // namespace realm::tok
