#include "tokenizer/stream_decoder.h"

#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "util/test_data.h"

namespace realm::tok {
namespace {

using test_data::shared_dir;

// Strict UTF-8 check (no overlongs, surrogates or truncation).
bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const uint8_t b = static_cast<uint8_t>(s[i]);
    size_t n = b < 0x80             ? 1
               : (b & 0xE0) == 0xC0 ? 2
               : (b & 0xF0) == 0xE0 ? 3
               : (b & 0xF8) == 0xF0 ? 4
                                    : 0;
    if (n == 0 || i + n > s.size()) return false;
    size_t off = i;
    uint32_t c = 0;
    if (!decode_utf8(s, off, c) || off != i + n) return false;
    const uint32_t min = n == 1 ? 0 : n == 2 ? 0x80 : n == 3 ? 0x800 : 0x10000;
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

std::vector<std::string> vector_texts(const std::string& name) {
  const auto raw = test_data::read_file(shared_dir() + "/vocab/ggml-vocab-" + name + ".gguf.inp");
  if (!raw) ADD_FAILURE() << "cannot read the " << name << " vector inputs";
  return raw ? test_data::split_vocab_inputs(*raw) : std::vector<std::string>{};
}

// Streaming the ids one at a time gives exactly the batch detokenization, in valid UTF-8 chunks.
TEST(StreamDecoder, MatchesDetokenizeChunkByChunk) {
  for (const char* name : {"llama-spm", "qwen2", "qwen35", "phi-3"}) {
    auto tok = Tokenizer::load(shared_dir() + "/vocab/ggml-vocab-" + name + ".gguf");
    ASSERT_TRUE(tok.ok()) << tok.error().message;
    for (const std::string& text : vector_texts(name)) {
      const auto ids = tok->encode(text, false, false);
      StreamDecoder dec(tok->vocab());
      std::string streamed;
      for (TokenId id : ids) {
        const std::string chunk = dec.push(id);
        EXPECT_TRUE(valid_utf8(chunk)) << name;
        streamed += chunk;
      }
      EXPECT_EQ(dec.pending(), 0u);
      streamed += dec.flush();
      EXPECT_EQ(streamed, tok->detokenize(ids)) << name << ": " << text;
    }
  }
}

TEST(StreamDecoder, HoldsSplitCharactersAndReplacesInvalidBytes) {
  auto tok = Tokenizer::load(shared_dir() + "/vocab/ggml-vocab-llama-spm.gguf");
  ASSERT_TRUE(tok.ok());
  const Vocab& v = tok->vocab();
  StreamDecoder dec(v, {.remove_leading_space = 0});
  // U+1F999 (llama) = F0 9F A6 99: byte-fallback tokens in this vocab.
  EXPECT_EQ(dec.push(v.find("<0xF0>")), "");
  EXPECT_EQ(dec.push(v.find("<0x9F>")), "");
  EXPECT_EQ(dec.push(v.find("<0xA6>")), "");
  EXPECT_EQ(dec.pending(), 3u);
  EXPECT_EQ(dec.push(v.find("<0x99>")), "\xf0\x9f\xa6\x99");
  // A stray continuation byte can never complete: replaced.
  EXPECT_EQ(dec.push(v.find("<0x99>")), "\xef\xbf\xbd");
  // A truncated sequence followed by ASCII.
  EXPECT_EQ(dec.push(v.find("<0xE2>")), "");
  EXPECT_EQ(dec.push(v.find("<0x41>")),
            "\xef\xbf\xbd"
            "A");
  // Truncated at the end of the stream.
  EXPECT_EQ(dec.push(v.find("<0xC3>")), "");
  EXPECT_EQ(dec.flush(), "\xef\xbf\xbd");
  // Leading space: removed for the first piece of an SPM stream by default, kept on request.
  StreamDecoder first(v);
  EXPECT_EQ(first.push(v.find("\xe2\x96\x81Hello")), "Hello");
  EXPECT_EQ(first.push(v.find("\xe2\x96\x81world")), " world");
  StreamDecoder keep(v, {.remove_leading_space = 0});
  EXPECT_EQ(keep.push(v.find("\xe2\x96\x81Hello")), " Hello");
  // Control tokens are silent unless rendered.
  EXPECT_EQ(keep.push(v.eos()), "");
  StreamDecoder render(v, {.remove_leading_space = 0, .render_special = true});
  EXPECT_EQ(render.push(v.eos()), "</s>");
}

TEST(StreamDecoder, RandomIdsAlwaysValidUtf8) {
  auto tok = Tokenizer::load(shared_dir() + "/vocab/ggml-vocab-qwen2.gguf");
  ASSERT_TRUE(tok.ok());
  std::mt19937 rng(7);
  StreamDecoder dec(tok->vocab());
  for (int i = 0; i < 5000; ++i) {
    // Mostly single-byte tokens (ids < 256 are the byte alphabet) to split characters often.
    const TokenId id =
        static_cast<TokenId>(rng() % 3 ? rng() % 256 : rng() % (tok->vocab().size() + 10));
    ASSERT_TRUE(valid_utf8(dec.push(id)));
  }
  EXPECT_TRUE(valid_utf8(dec.flush()));
}

}  // namespace
}  // namespace realm::tok
