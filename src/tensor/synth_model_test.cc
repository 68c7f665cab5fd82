#include "tensor/synth_model.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "gguf/reader.h"
#include "gguf/test_files.h"
#include "tensor/type_table.h"

namespace realm::tensor {
namespace {

using gguf::GgmlType;
using gguf::GgufFile;

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("realm-synth-" + std::to_string(::getpid()) + "-" + name))
      .string();
}

TEST(Synth, PresetsHaveTheAdvertisedSizes) {
  auto spm = GgufFile::open(gguf::testing::shared_dir() + "/vocab/ggml-vocab-llama-spm.gguf");
  ASSERT_TRUE(spm.ok()) << spm.error().message;
  const uint64_t n_vocab = spm->find("tokenizer.ggml.tokens")->size();
  EXPECT_EQ(n_vocab, 32000u);
  auto tiny = synth_preset("tinyllama-1.1b");
  ASSERT_TRUE(tiny.ok());
  EXPECT_EQ(synth_param_count(*tiny, n_vocab), 1100048384u);  // TinyLlama-1.1B's count
  auto small = synth_preset("llama-134m");
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(synth_param_count(*small, n_vocab), 134105856u);
  EXPECT_FALSE(synth_preset("gpt-5").ok());
}

TEST(Synth, WritesALoadableDeterministicModel) {
  auto vocab = GgufFile::open(gguf::testing::shared_dir() + "/models/stories260K.gguf");
  ASSERT_TRUE(vocab.ok()) << vocab.error().message;
  SynthConfig c;
  c.n_embd = 256;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.n_ff = 512;
  c.n_ctx = 128;
  c.seed = 42;
  const std::string p1 = temp_path("a.gguf"), p2 = temp_path("b.gguf"), p3 = temp_path("c.gguf");
  c.n_threads = 1;
  ASSERT_TRUE(write_synth_model(c, *vocab, p1).ok());
  c.n_threads = 3;
  ASSERT_TRUE(write_synth_model(c, *vocab, p2).ok());
  auto a = GgufFile::open(p1);
  auto b = GgufFile::open(p2);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->file_size(), b->file_size());
  EXPECT_TRUE(std::equal(a->bytes().begin(), a->bytes().end(), b->bytes().begin()))
      << "output depends on the thread count";

  EXPECT_EQ(a->architecture(), "llama");
  EXPECT_EQ(a->get_uint("llama.embedding_length"), 256u);
  EXPECT_EQ(a->get_uint("llama.attention.head_count_kv"), 2u);
  EXPECT_EQ(a->get_uint("llama.rope.dimension_count"), 64u);
  EXPECT_EQ(a->get_uint("general.file_type"), 0u);
  EXPECT_EQ(a->find("tokenizer.ggml.tokens")->size(), 512u);
  EXPECT_EQ(a->get_string("tokenizer.ggml.model"), vocab->get_string("tokenizer.ggml.model"));
  EXPECT_EQ(a->tensors().size(), 3u + 2u * 9u);
  const auto* kv = a->find_tensor("blk.1.attn_k.weight");
  ASSERT_NE(kv, nullptr);
  EXPECT_EQ(kv->dims, (std::vector<uint64_t>{256, 128}));
  // Weight statistics follow the configured scales.
  auto stats = [](const gguf::TensorInfo& t) {
    const float* x = reinterpret_cast<const float*>(t.data);
    double s = 0, s2 = 0;
    for (uint64_t i = 0; i < t.n_elements; ++i) {
      s += x[i];
      s2 += double(x[i]) * x[i];
    }
    const double mean = s / t.n_elements;
    return std::pair{mean, std::sqrt(s2 / t.n_elements - mean * mean)};
  };
  auto [m_out, s_out] = stats(*a->find_tensor("output.weight"));
  EXPECT_NEAR(m_out, 0, 0.01);
  EXPECT_NEAR(s_out, c.gain_output / 16.0, 0.01);
  auto [m_norm, s_norm] = stats(*a->find_tensor("blk.0.ffn_norm.weight"));
  EXPECT_NEAR(m_norm, 1.0, 0.03);
  EXPECT_NEAR(s_norm, 0.1, 0.03);

  // A quantized file follows llama.cpp's rules (Q4_K_M: attn_v/ffn_down of layer 1 and output
  // in Q6_K, norms F32, the rest Q4_K) and dequantizes close to the f32 weights.
  c.ftype = FileType::MOSTLY_Q4_K_M;
  ASSERT_TRUE(write_synth_model(c, *vocab, p3).ok());
  auto q = GgufFile::open(p3);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->get_uint("general.file_type"), 15u);
  EXPECT_EQ(q->find_tensor("blk.1.attn_v.weight")->type, GgmlType::Q6_K);
  EXPECT_EQ(q->find_tensor("blk.0.attn_v.weight")->type, GgmlType::Q4_K);
  EXPECT_EQ(q->find_tensor("output.weight")->type, GgmlType::Q6_K);
  EXPECT_EQ(q->find_tensor("blk.0.attn_norm.weight")->type, GgmlType::F32);
  const auto& qt = *q->find_tensor("blk.0.ffn_up.weight");
  const auto& ft = *a->find_tensor("blk.0.ffn_up.weight");
  std::vector<float> y(qt.n_elements);
  ASSERT_TRUE(dequantize(qt.type, qt.bytes(), y).ok());
  const float* x = reinterpret_cast<const float*>(ft.data);
  double se = 0, ss = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    se += (y[i] - x[i]) * double(y[i] - x[i]);
    ss += double(x[i]) * x[i];
  }
  EXPECT_LT(std::sqrt(se / ss), 0.12);
  for (const auto& p : {p1, p2, p3}) std::filesystem::remove(p);
}

TEST(Synth, RejectsBadShapes) {
  auto vocab = GgufFile::open(gguf::testing::shared_dir() + "/models/stories260K.gguf");
  ASSERT_TRUE(vocab.ok());
  SynthConfig c;
  c.n_embd = 100;
  c.n_layer = 1;
  c.n_head = 3;
  c.n_head_kv = 3;
  c.n_ff = 64;
  auto st = write_synth_model(c, *vocab, temp_path("bad.gguf"));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("100"), std::string::npos) << st.error().message;
}

}  // namespace
}  // namespace realm::tensor
