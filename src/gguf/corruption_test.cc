// The reader rejects every kind of malformed file with one clear error. The corrupted files are
// generated here from a valid one built with GgufWriter (which serializes without validating).
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "gguf/reader.h"
#include "gguf/test_files.h"
#include "gguf/writer.h"

namespace realm::gguf {
namespace {

std::vector<uint8_t> f32_bytes(size_t n) {
  std::vector<uint8_t> b(n * 4);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 7);
  return b;
}

struct Fixture {
  std::vector<uint8_t> t0 = f32_bytes(64);
  std::vector<uint8_t> t1 = std::vector<uint8_t>(2 * 34, 1);  // Q8_0 [64]

  // A valid file; `edit` may change the writer before serialization.
  std::vector<uint8_t> build(const std::function<void(GgufWriter&)>& edit = nullptr,
                             bool tensors = true) {
    GgufWriter w;
    w.add_kv("general.architecture", Value::string("llama"));
    w.add_kv("llama.block_count", Value::u32(1));
    w.add_kv("tokenizer.ggml.tokens", Value::string_array({"<s>", "a", "b"}));
    w.add_kv("tokenizer.ggml.scores", Value::array_of<float>(ValueType::FLOAT32, {0, -1, -2}));
    if (edit) edit(w);
    if (tensors) {
      w.add_tensor("blk.0.attn_norm.weight", GgmlType::F32, {64}, t0);
      w.add_tensor("blk.0.attn_q.weight", GgmlType::Q8_0, {64}, t1);
    }
    return w.to_bytes();
  }
};

// Parses and expects failure whose message contains `needle`.
void expect_rejected(const std::vector<uint8_t>& bytes, const std::string& needle) {
  auto f = GgufFile::parse(bytes);
  ASSERT_FALSE(f.ok()) << "accepted a file that should fail with: " << needle;
  EXPECT_NE(f.error().message.find(needle), std::string::npos)
      << "message: " << f.error().message << "\nexpected to contain: " << needle;
}

void put_u32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  std::memcpy(&b[at], &v, 4);
}
void put_u64(std::vector<uint8_t>& b, size_t at, uint64_t v) {
  std::memcpy(&b[at], &v, 8);
}

// Offset of the first byte after key `key` (its value type field).
size_t after_key(const std::vector<uint8_t>& b, const std::string& key) {
  for (size_t i = 0; i + key.size() <= b.size(); ++i) {
    if (std::memcmp(&b[i], key.data(), key.size()) == 0) return i + key.size();
  }
  ADD_FAILURE() << "key not found: " << key;
  return 0;
}

TEST(GgufCorruption, BaseFileIsValid) {
  Fixture fx;
  auto f = GgufFile::parse(fx.build());
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->tensors().size(), 2u);
}

TEST(GgufCorruption, BadMagicAndVersion) {
  Fixture fx;
  auto b = fx.build();
  b[0] = 'X';
  expect_rejected(b, "not a GGUF file (magic 0x");
  for (uint32_t v : {0u, 1u, 4u, 0xffffffffu}) {
    auto c = fx.build();
    put_u32(c, 4, v);
    expect_rejected(c, "unsupported GGUF version " + std::to_string(v));
  }
  auto be = fx.build();
  put_u32(be, 4, 0x03000000);
  expect_rejected(be, "big-endian");
}

TEST(GgufCorruption, EveryTruncationIsRejected) {
  Fixture fx;
  auto b = fx.build();
  auto full = GgufFile::parse(b);
  ASSERT_TRUE(full.ok());
  const TensorInfo& last = full->tensors().back();
  // Only the zero padding after the last tensor may be missing.
  size_t data_end = full->data_offset() + last.offset + last.n_bytes;
  for (size_t n = 0; n < data_end; ++n) {
    std::vector<uint8_t> cut(b.begin(), b.begin() + n);
    auto f = GgufFile::parse(cut);
    EXPECT_FALSE(f.ok()) << "prefix of " << n << " bytes accepted";
  }
}

TEST(GgufCorruption, TruncatedSharedFileNamesTheProblem) {
  auto bytes = MappedFile::open(testing::shared_dir() + "/models/stories260K.gguf");
  ASSERT_TRUE(bytes.ok());
  auto head = bytes->bytes().first(1000);
  expect_rejected({head.begin(), head.end()}, "tensor count 48 cannot fit");
  auto most = bytes->bytes().first(bytes->size() - 100);
  expect_rejected({most.begin(), most.end()}, "lies outside the data section");
}

TEST(GgufCorruption, HugeCountsAndLengths) {
  Fixture fx;
  auto b = fx.build();
  put_u64(b, 8, 1ull << 60);
  expect_rejected(b, "tensor count 1152921504606846976 cannot fit");
  b = fx.build();
  put_u64(b, 16, ~0ull);
  expect_rejected(b, "metadata key-value count 18446744073709551615 cannot fit");
  b = fx.build();
  put_u64(b, 24, 1ull << 62);  // length of the first key
  expect_rejected(b, "metadata key length 4611686018427387904 exceeds");
  b = fx.build();
  size_t at = after_key(b, "tokenizer.ggml.tokens");
  put_u64(b, at + 8, 1ull << 61);  // array count after (type, elem type)
  expect_rejected(b, "array length 2305843009213693952 of STRING");
  b = fx.build();
  at = after_key(b, "general.architecture");
  put_u64(b, at + 4, 1ull << 40);  // string value length
  expect_rejected(b, "string value length 1099511627776 exceeds");
}

TEST(GgufCorruption, UnknownValueTypes) {
  Fixture fx;
  auto b = fx.build();
  put_u32(b, after_key(b, "llama.block_count"), 13);
  expect_rejected(b, "unknown value type 13 for key 'llama.block_count'");
  b = fx.build();
  put_u32(b, after_key(b, "tokenizer.ggml.scores") + 4, 77);
  expect_rejected(b, "unknown array element type 77");
  b = fx.build([](GgufWriter& w) { w.add_kv("x.flag", Value::scalar(ValueType::BOOL, 2)); });
  expect_rejected(b, "bool value 2");
}

TEST(GgufCorruption, TensorTypesAndDims) {
  Fixture fx;
  std::vector<uint8_t> data(256, 0);
  auto with_tensor = [&](uint32_t type, std::vector<uint64_t> dims) {
    return fx.build([&](GgufWriter& w) { w.add_tensor("bad", type, dims, data); });
  };
  expect_rejected(with_tensor(4, {32}), "tensor 'bad' has unknown type id 4");
  expect_rejected(with_tensor(99, {32}), "unknown type id 99");
  expect_rejected(with_tensor(0, {}), "has 0 dimensions");
  expect_rejected(with_tensor(0, {1, 1, 1, 1, 1}), "has 5 dimensions");
  expect_rejected(with_tensor(0, {8, 0}), "invalid dimension 1 = 0");
  expect_rejected(with_tensor(0, {1ull << 40, 1ull << 40}), "element count overflows");
  expect_rejected(with_tensor(0, {1ull << 63}), "invalid dimension 0");
  expect_rejected(with_tensor(8, {33}),
                  "row length 33 is not a multiple of the Q8_0 block size 32");
  auto long_name = fx.build(
      [&](GgufWriter& w) { w.add_tensor(std::string(64, 'n'), GgmlType::F32, {4}, data); });
  expect_rejected(long_name, "tensor name length 64");
}

TEST(GgufCorruption, TensorOffsets) {
  Fixture fx;
  auto b = fx.build();
  // The offset field of the second tensor: after its name, n_dims, one dim and the type.
  size_t off_at = after_key(b, "blk.0.attn_q.weight") + 4 + 8 + 4;
  auto at_offset = [&](uint64_t off) {
    auto c = b;
    put_u64(c, off_at, off);
    return c;
  };
  expect_rejected(at_offset(272), "data offset 272 is not a multiple of the alignment 32");
  expect_rejected(at_offset(1ull << 50), "lies outside the data section");
  expect_rejected(at_offset(~0ull & ~31ull), "lies outside the data section");
  expect_rejected(at_offset(224), "overlap");  // the first tensor covers [0, 256)
  expect_rejected(at_offset(0), "overlap");
}

TEST(GgufCorruption, Duplicates) {
  Fixture fx;
  auto dup_key = fx.build([](GgufWriter& w) { w.add_kv("llama.block_count", Value::u32(2)); });
  expect_rejected(dup_key, "duplicate metadata key 'llama.block_count'");
  std::vector<uint8_t> data(256, 0);
  auto dup_tensor = fx.build(
      [&](GgufWriter& w) { w.add_tensor("blk.0.attn_q.weight", GgmlType::F32, {4}, data); });
  expect_rejected(dup_tensor, "duplicate tensor name 'blk.0.attn_q.weight'");
}

TEST(GgufCorruption, WrongTypedKnownKeys) {
  Fixture fx;
  auto set = [&](const std::string& key, Value v) {
    return fx.build([&](GgufWriter& w) { w.set_kv(key, std::move(v)); });
  };
  expect_rejected(set("general.architecture", Value::u32(1)),
                  "'general.architecture' must be STRING, got UINT32");
  expect_rejected(set("llama.block_count", Value::string("1")),
                  "'llama.block_count' must be a non-negative integer, got STRING");
  expect_rejected(set("llama.block_count", Value::i32(-3)), "got INT32 (value -3)");
  expect_rejected(set("tokenizer.ggml.tokens", Value::array_of<int32_t>(ValueType::INT32, {1})),
                  "'tokenizer.ggml.tokens' must be an array of STRING, got ARRAY of INT32");
  expect_rejected(set("tokenizer.ggml.add_bos_token", Value::u32(1)),
                  "'tokenizer.ggml.add_bos_token' must be BOOL");
  expect_rejected(set("llama.rope.freq_base", Value::string("1e4")),
                  "'llama.rope.freq_base' must be FLOAT32 or FLOAT64");
  expect_rejected(set("general.alignment", Value::string("32")), "general.alignment must be");
  expect_rejected(set("general.alignment", Value::u32(0)), "general.alignment must be");
  expect_rejected(set("general.alignment", Value::u32(48)), "UINT32 48");
  expect_rejected(set("tokenizer.ggml.scores", Value::array_of<float>(ValueType::FLOAT32, {0})),
                  "'tokenizer.ggml.scores' has 1 entries but tokenizer.ggml.tokens has 3");
}

TEST(GgufCorruption, NestedArrayDepthBomb) {
  Value v = Value::array_of<int32_t>(ValueType::INT32, {1});
  for (int i = 0; i < 100; ++i) v = Value::array_of_arrays({v});
  Fixture fx;
  auto b = fx.build([&](GgufWriter& w) { w.add_kv("deep", v); });
  expect_rejected(b, "arrays nested deeper than 8 levels in key 'deep'");
}

TEST(GgufCorruption, SingleByteFlipsNeverCrash) {
  // Every single-byte change of the header either parses or fails cleanly (ASan/UBSan check the
  // rest in the sanitizer build).
  Fixture fx;
  auto b = fx.build();
  auto f = GgufFile::parse(b);
  ASSERT_TRUE(f.ok());
  size_t header = f->data_offset();
  for (size_t i = 0; i < header; ++i) {
    for (uint8_t x : {0x00, 0x01, 0x80, 0xff}) {
      auto c = b;
      c[i] = x;
      auto g = GgufFile::parse(c);
      if (!g.ok()) {
        EXPECT_FALSE(g.error().message.empty());
      }
    }
  }
}

}  // namespace
}  // namespace realm::gguf
