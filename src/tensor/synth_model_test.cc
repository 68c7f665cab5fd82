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

TEST(Synth, ArchitecturePresetsWriteWhatLlamaCppReads) {
  auto vocab = GgufFile::open(gguf::testing::shared_dir() + "/models/stories260K.gguf");
  ASSERT_TRUE(vocab.ok()) << vocab.error().message;

  auto qwen2 = synth_preset("qwen2-tiny");
  ASSERT_TRUE(qwen2.ok());
  const std::string pq = temp_path("qwen2.gguf");
  ASSERT_TRUE(write_synth_model(*qwen2, *vocab, pq).ok());
  auto q = GgufFile::open(pq);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->architecture(), "qwen2");
  EXPECT_EQ(q->get_uint("qwen2.embedding_length"), 128u);
  EXPECT_EQ(q->get_uint("qwen2.attention.head_count_kv"), 1u);
  EXPECT_FLOAT_EQ(static_cast<float>(*q->get_float("qwen2.rope.freq_base")), 1e6f);
  EXPECT_EQ(q->find_tensor("output.weight"), nullptr);  // tied
  ASSERT_NE(q->find_tensor("blk.1.attn_k.bias"), nullptr);
  EXPECT_EQ(q->find_tensor("blk.1.attn_k.bias")->dims, (std::vector<uint64_t>{64}));
  EXPECT_EQ(q->tensors().size(), 2u + 2u * 12u);
  std::filesystem::remove(pq);

  auto llama3 = synth_preset("llama3-tiny");
  ASSERT_TRUE(llama3.ok());
  const std::string pl = temp_path("llama3.gguf");
  ASSERT_TRUE(write_synth_model(*llama3, *vocab, pl).ok());
  auto l = GgufFile::open(pl);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->architecture(), "llama");
  EXPECT_EQ(l->find("llama.rope.scaling.type"), nullptr);  // llama3 scaling is the tensor only
  const auto* rf = l->find_tensor("rope_freqs.weight");
  ASSERT_NE(rf, nullptr);
  ASSERT_EQ(rf->dims, (std::vector<uint64_t>{32}));
  ASSERT_EQ(rf->type, GgmlType::F32);
  // Head size 64, base 500000, original context 32: wavelengths 6.3, 9.5, 14.3, 21.5, 32.4, ...
  // -> factor 1 below 32 / 4 = 8, blended up to 32, then 8.
  const float* f = reinterpret_cast<const float*>(rf->data);
  EXPECT_EQ(f[0], 1.0f);
  for (int i = 1; i < 4; ++i) {
    EXPECT_GT(f[i], f[i - 1]);
    EXPECT_LT(f[i], 8.0f);
  }
  for (int i = 4; i < 32; ++i) EXPECT_EQ(f[i], 8.0f) << i;
  std::filesystem::remove(pl);

  auto linear = synth_preset("llama-linear-tiny");
  ASSERT_TRUE(linear.ok());
  const std::string pr = temp_path("linear.gguf");
  ASSERT_TRUE(write_synth_model(*linear, *vocab, pr).ok());
  auto r = GgufFile::open(pr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->get_string("llama.rope.scaling.type"), "linear");
  EXPECT_FLOAT_EQ(static_cast<float>(*r->get_float("llama.rope.scaling.factor")), 4.0f);
  EXPECT_FLOAT_EQ(static_cast<float>(*r->get_float("llama.rope.scaling.attn_factor")), 0.8f);
  EXPECT_EQ(r->find_tensor("output.weight"), nullptr);
  std::filesystem::remove(pr);

  SynthConfig bad = *qwen2;
  bad.arch = "gpt2";
  EXPECT_FALSE(write_synth_model(bad, *vocab, temp_path("bad.gguf")).ok());
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
