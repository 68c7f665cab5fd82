#include "tensor/quantize_model.h"

#include <gtest/gtest.h>

#include <unistd.h>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "gguf/reader.h"
#include "gguf/test_files.h"
#include "gguf/writer.h"
#include "tensor/type_table.h"

namespace realm::tensor {
namespace {

using gguf::GgmlType;
using gguf::GgufFile;

std::string quant_dir() {
  return gguf::testing::shared_dir() + "/models/quant";
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("realm-qm-" + std::to_string(::getpid()) + "-" + name))
      .string();
}

bool is_k_type(GgmlType t) {
  return t == GgmlType::Q2_K || t == GgmlType::Q3_K || t == GgmlType::Q4_K || t == GgmlType::Q5_K ||
         t == GgmlType::Q6_K;
}

// sum of squared differences between a tensor's dequantized values and the f32 original
double squared_error(const gguf::TensorInfo& q, const gguf::TensorInfo& f32) {
  std::vector<float> y(q.n_elements);
  EXPECT_TRUE(dequantize(q.type, q.bytes(), y).ok());
  const float* x = reinterpret_cast<const float*>(f32.data);
  double se = 0;
  for (size_t i = 0; i < y.size(); ++i) se += (double(y[i]) - x[i]) * (double(y[i]) - x[i]);
  return se;
}

// Acceptance: quantizing each synth-*.f32.gguf to every TYPE llama.cpp produced in the same folder
// gives llama.cpp's per-tensor type map; legacy-type tensors are byte-identical; for K types the
// share of identical blocks is printed and the RMSE versus the F32 weights is at most 1.01x
// llama.cpp's. (Today the whole files come out byte-identical.)
TEST(QuantizeModel, ReproducesLlamaCppFiles) {
  int n_pairs = 0;
  for (const char* model : {"synth-128x2", "synth-256x2"}) {
    const std::string src_path = quant_dir() + "/" + model + ".f32.gguf";
    auto src = GgufFile::open(src_path);
    ASSERT_TRUE(src.ok()) << src.error().message;
    // Every llama.cpp file of this model in the folder: <model>.<TYPE>.gguf.
    std::vector<std::string> types;
    for (const auto& e : std::filesystem::directory_iterator(quant_dir())) {
      const std::string fn = e.path().filename().string();
      const std::string prefix = std::string(model) + ".";
      if (fn.rfind(prefix, 0) != 0 || e.path().extension() != ".gguf") continue;
      const std::string type = fn.substr(prefix.size(), fn.size() - prefix.size() - 5);
      if (type != "f32") types.push_back(type);
    }
    std::sort(types.begin(), types.end());
    for (const std::string& type : types) {
      const std::string ref_path = quant_dir() + "/" + model + "." + type + ".gguf";
      if (!std::filesystem::exists(ref_path)) continue;
      SCOPED_TRACE(ref_path);
      ++n_pairs;
      auto ref = GgufFile::open(ref_path);
      ASSERT_TRUE(ref.ok()) << ref.error().message;
      auto ftype = file_type_from_name(type);
      ASSERT_TRUE(ftype.ok()) << ftype.error().message;
      const std::string out_path = temp_path(std::string(model) + "." + type + ".gguf");
      QuantizeOptions opt;
      opt.ftype = *ftype;
      opt.n_threads = 2;
      auto plan = quantize_model(*src, out_path, opt);
      ASSERT_TRUE(plan.ok()) << plan.error().message;
      auto out = GgufFile::open(out_path);
      ASSERT_TRUE(out.ok()) << out.error().message;
      EXPECT_EQ(out->get_uint("general.file_type"), ref->get_uint("general.file_type"));

      // Type map and order.
      ASSERT_EQ(out->tensors().size(), ref->tensors().size());
      uint64_t k_blocks = 0, k_same = 0;
      double se_ours = 0, se_ref = 0;
      for (size_t i = 0; i < ref->tensors().size(); ++i) {
        const auto& r = ref->tensors()[i];
        const auto& o = out->tensors()[i];
        ASSERT_EQ(o.name, r.name);
        ASSERT_EQ(o.type, r.type) << r.name;
        ASSERT_EQ(o.dims, r.dims) << r.name;
        ASSERT_EQ(o.n_bytes, r.n_bytes) << r.name;
        const bool same = std::equal(o.bytes().begin(), o.bytes().end(), r.bytes().begin());
        if (!is_k_type(r.type)) {
          EXPECT_TRUE(same) << r.name << " (" << gguf::type_name(r.type) << ") differs";
          continue;
        }
        const uint32_t bs = gguf::type_layout(r.type).type_size;
        for (uint64_t off = 0; off < r.n_bytes; off += bs) {
          ++k_blocks;
          k_same += std::equal(o.data + off, o.data + off + bs, r.data + off);
        }
        const gguf::TensorInfo* f = src->find_tensor(r.name);
        se_ours += squared_error(o, *f);
        se_ref += squared_error(r, *f);
      }
      if (k_blocks > 0) {
        std::printf("%s %s: %llu of %llu K-type blocks identical (%.2f%%), RMSE ratio %.6f\n",
                    model, type.c_str(), static_cast<unsigned long long>(k_same),
                    static_cast<unsigned long long>(k_blocks), 100.0 * k_same / k_blocks,
                    std::sqrt(se_ours / se_ref));
        EXPECT_LE(std::sqrt(se_ours), 1.01 * std::sqrt(se_ref));
      }
      const bool file_same =
          out->file_size() == ref->file_size() &&
          std::equal(out->bytes().begin(), out->bytes().end(), ref->bytes().begin());
      EXPECT_TRUE(file_same) << "whole file differs";
      std::filesystem::remove(out_path);
    }
  }
  EXPECT_EQ(n_pairs, 17);
}

// A model with the tensor names and layer count of TinyLlama-1.1B (22 layers, 32 heads, 4 KV
// heads) but tiny matrices, to check llama.cpp's per-layer mixes.
std::vector<uint8_t> tiny_llama_bytes(uint32_t n_layer, uint64_t ne0, bool with_output) {
  gguf::GgufWriter w;
  w.add_kv("general.architecture", gguf::Value::string("llama"));
  w.add_kv("general.file_type", gguf::Value::u32(0));
  w.add_kv("llama.block_count", gguf::Value::u32(n_layer));
  w.add_kv("llama.attention.head_count", gguf::Value::u32(32));
  w.add_kv("llama.attention.head_count_kv", gguf::Value::u32(4));
  static std::vector<float> zeros(ne0 * 2, 0.5f);
  const std::span<const uint8_t> mat(reinterpret_cast<const uint8_t*>(zeros.data()),
                                     ne0 * 2 * sizeof(float));
  const std::span<const uint8_t> vec(reinterpret_cast<const uint8_t*>(zeros.data()),
                                     ne0 * sizeof(float));
  w.add_tensor("token_embd.weight", GgmlType::F32, {ne0, 2}, mat);
  for (uint32_t i = 0; i < n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    w.add_tensor(p + "attn_norm.weight", GgmlType::F32, {ne0}, vec);
    for (const char* m :
         {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}) {
      w.add_tensor(p + m + ".weight", GgmlType::F32, {ne0, 2}, mat);
    }
    w.add_tensor(p + "ffn_norm.weight", GgmlType::F32, {ne0}, vec);
  }
  w.add_tensor("output_norm.weight", GgmlType::F32, {ne0}, vec);
  if (with_output) w.add_tensor("output.weight", GgmlType::F32, {ne0, 2}, mat);
  return w.to_bytes();
}

std::map<std::string, int> type_counts(const std::vector<TensorPlan>& plan) {
  std::map<std::string, int> n;
  for (const auto& p : plan) n[std::string(gguf::type_name(p.to))]++;
  return n;
}

TEST(QuantizePlan, TinyLlamaMixesMatchLlamaCpp) {
  const auto bytes = tiny_llama_bytes(22, 256, true);
  auto f = GgufFile::parse(bytes);
  ASSERT_TRUE(f.ok()) << f.error().message;
  // llama.cpp's TinyLlama-1.1B Q4_K_M: f32 45, q4_K 135, q6_K 21 (attn_v and ffn_down of layers
  // 0 1 4 7 10 13 16 19 20 21, and output).
  auto q4km = plan_quantization(*f, FileType::MOSTLY_Q4_K_M);
  ASSERT_TRUE(q4km.ok());
  EXPECT_EQ(type_counts(*q4km),
            (std::map<std::string, int>{{"F32", 45}, {"Q4_K", 135}, {"Q6_K", 21}}));
  for (const auto& p : *q4km) {
    if (p.name == "blk.4.attn_v.weight" || p.name == "blk.21.ffn_down.weight") {
      EXPECT_EQ(p.to, GgmlType::Q6_K) << p.name;
    }
    if (p.name == "blk.5.attn_v.weight" || p.name == "blk.2.ffn_down.weight") {
      EXPECT_EQ(p.to, GgmlType::Q4_K) << p.name;
    }
  }
  // Q3_K_M: attn_v Q5_K for the first two, else Q4_K; ffn_down Q5_K for layer 0 (22/16 = 1),
  // else Q4_K; attn_output Q4_K; output Q6_K; the rest Q3_K.
  auto q3km = plan_quantization(*f, FileType::MOSTLY_Q3_K_M);
  ASSERT_TRUE(q3km.ok());
  EXPECT_EQ(
      type_counts(*q3km),
      (std::map<std::string, int>{
          {"F32", 45}, {"Q3_K", 1 + 22 * 4}, {"Q4_K", 20 + 21 + 22}, {"Q5_K", 3}, {"Q6_K", 1}}));
  // Q2_K with GQA 8: attn_v Q4_K, ffn_down and attn_output Q3_K.
  auto q2k = plan_quantization(*f, FileType::MOSTLY_Q2_K);
  ASSERT_TRUE(q2k.ok());
  EXPECT_EQ(type_counts(*q2k),
            (std::map<std::string, int>{
                {"F32", 45}, {"Q2_K", 1 + 22 * 4}, {"Q3_K", 44}, {"Q4_K", 22}, {"Q6_K", 1}}));
  // Q4_K_S: attn_v Q5_K for the first 4, ffn_down Q5_K for layers < 22/8 = 2.
  auto q4ks = plan_quantization(*f, FileType::MOSTLY_Q4_K_S);
  ASSERT_TRUE(q4ks.ok());
  EXPECT_EQ(type_counts(*q4ks),
            (std::map<std::string, int>{{"F32", 45}, {"Q4_K", 149}, {"Q5_K", 6}, {"Q6_K", 1}}));
  // Legacy types: output Q6_K unless Q8_0.
  auto q8 = plan_quantization(*f, FileType::MOSTLY_Q8_0);
  ASSERT_TRUE(q8.ok());
  EXPECT_EQ(type_counts(*q8), (std::map<std::string, int>{{"F32", 45}, {"Q8_0", 156}}));
  auto q40 = plan_quantization(*f, FileType::MOSTLY_Q4_0);
  ASSERT_TRUE(q40.ok());
  EXPECT_EQ(type_counts(*q40),
            (std::map<std::string, int>{{"F32", 45}, {"Q4_0", 155}, {"Q6_K", 1}}));
}

TEST(QuantizePlan, TiedEmbeddingsAndFallbacks) {
  // Without output.weight the token embedding is quantized like the output (Q6_K).
  const auto tied = tiny_llama_bytes(2, 256, false);
  auto f = GgufFile::parse(tied);
  ASSERT_TRUE(f.ok());
  auto p = plan_quantization(*f, FileType::MOSTLY_Q4_K_M);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->front().name, "output_norm.weight");  // non-block tensors first, by name
  for (const auto& t : *p) {
    if (t.name == "token_embd.weight") {
      EXPECT_EQ(t.to, GgmlType::Q6_K);
    }
  }
  // Rows of 96: K types fall back (Q4_K -> Q5_0, Q6_K -> Q8_0); rows of 48 fit no block -> F16.
  for (uint64_t ne0 : {96u, 48u}) {
    const auto bytes = tiny_llama_bytes(2, ne0, true);
    auto g = GgufFile::parse(bytes);
    ASSERT_TRUE(g.ok());
    auto plan = plan_quantization(*g, FileType::MOSTLY_Q4_K_M);
    ASSERT_TRUE(plan.ok());
    for (const auto& t : *plan) {
      if (t.dims.size() < 2) continue;
      if (ne0 == 48) {
        EXPECT_EQ(t.to, GgmlType::F16) << t.name;
      } else if (t.name == "output.weight" || t.name == "blk.1.attn_v.weight") {
        EXPECT_EQ(t.to, GgmlType::Q8_0) << t.name;
      } else if (t.name == "blk.0.attn_q.weight") {
        EXPECT_EQ(t.to, GgmlType::Q5_0) << t.name;
        EXPECT_TRUE(t.fallback);
      }
    }
  }
}

TEST(QuantizeModel, RefusesRequantizeUnlessAllowed) {
  auto q = GgufFile::open(quant_dir() + "/synth-128x2.Q8_0.gguf");
  ASSERT_TRUE(q.ok()) << q.error().message;
  const std::string out_path = temp_path("requant.gguf");
  QuantizeOptions opt;
  opt.ftype = FileType::MOSTLY_Q4_0;
  auto r = quantize_model(*q, out_path, opt);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("requantiz"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("Q8_0"), std::string::npos) << r.error().message;
  opt.allow_requantize = true;
  auto ok = quantize_model(*q, out_path, opt);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  auto out = GgufFile::open(out_path);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->find_tensor("blk.0.attn_q.weight")->type, GgmlType::Q4_0);
  std::filesystem::remove(out_path);
  EXPECT_FALSE(file_type_from_name("Q7_K").ok());
  EXPECT_EQ(file_type_from_name("q4_k").value(), FileType::MOSTLY_Q4_K_M);
}

}  // namespace
}  // namespace realm::tensor
