#include "gguf/reader.h"

#include <gtest/gtest.h>

#include "gguf/test_files.h"

namespace realm::gguf {
namespace {

TEST(GgufReader, EverySharedFileLoads) {
  auto files = testing::shared_gguf_files();
  ASSERT_GE(files.size(), 30u) << "shared test data not found under " << testing::shared_dir();
  for (const auto& path : files) {
    auto f = GgufFile::open(path);
    ASSERT_TRUE(f.ok()) << f.error().message;
    EXPECT_FALSE(f->architecture().empty()) << path;
    EXPECT_NE(f->find("tokenizer.ggml.tokens"), nullptr) << path;
    for (const auto& t : f->tensors()) {
      // Tensor data is used in place from the map, never copied.
      EXPECT_EQ(t.data, f->bytes().data() + f->data_offset() + t.offset) << path << " " << t.name;
    }
  }
}

TEST(GgufReader, Stories260KMetadataAndTensors) {
  auto f = GgufFile::open(testing::shared_dir() + "/models/stories260K.gguf");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->architecture(), "llama");
  EXPECT_EQ(f->get_uint("llama.embedding_length"), 64u);
  EXPECT_EQ(f->get_uint("llama.block_count"), 5u);
  EXPECT_EQ(f->get_string("tokenizer.ggml.model"), "llama");
  const Value* tokens = f->find("tokenizer.ggml.tokens");
  ASSERT_NE(tokens, nullptr);
  EXPECT_EQ(tokens->size(), 512u);
  EXPECT_EQ(tokens->strings()[1], "<s>");
  const TensorInfo* emb = f->find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->type, GgmlType::F32);
  EXPECT_EQ(emb->dims, (std::vector<uint64_t>{64, 512}));
  EXPECT_EQ(emb->n_bytes, 64u * 512u * 4u);
  EXPECT_EQ(f->find_tensor("no.such.tensor"), nullptr);
}

TEST(GgufTypes, LayoutsAndNames) {
  EXPECT_EQ(type_layout(GgmlType::Q4_K).type_size, 144u);
  EXPECT_EQ(type_layout(GgmlType::Q8_0).block_size, 32u);
  EXPECT_EQ(type_name(GgmlType::BF16), "BF16");
  EXPECT_EQ(type_from_name("q6_k"), GgmlType::Q6_K);
  EXPECT_FALSE(type_from_name("Q4_2").has_value());
  EXPECT_FALSE(type_layout(4u).has_value());  // retired Q4_2
  EXPECT_EQ(row_bytes(GgmlType::Q4_0, 64), 36u);
  EXPECT_FALSE(row_bytes(GgmlType::Q4_0, 48).has_value());
}

}  // namespace
}  // namespace realm::gguf
