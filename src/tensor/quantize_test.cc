#include "tensor/quantize.h"

#include <gtest/gtest.h>
#include <openssl/sha.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "gguf/reader.h"
#include "gguf/test_files.h"
#include "tensor/type_table.h"

namespace realm::tensor {
namespace {

using gguf::GgmlType;

std::string quant_dir() {
  return gguf::testing::shared_dir() + "/models/quant";
}

nlohmann::json load_reference() {
  std::ifstream in(quant_dir() + "/reference.json");
  if (!in) return {};
  return nlohmann::json::parse(in);
}

std::string sha256_hex(const void* data, size_t n) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(static_cast<const unsigned char*>(data), n, digest);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : digest) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

TEST(TypeTable, RowsMatchGgufLayouts) {
  for (const TypeTraits& t : supported_types()) {
    const auto& layout = gguf::type_layout(t.type);
    EXPECT_EQ(t.name, layout.name);
    EXPECT_EQ(t.block_size, layout.block_size) << t.name;
    EXPECT_EQ(t.type_size, layout.type_size) << t.name;
    ASSERT_NE(t.to_float, nullptr);
    ASSERT_NE(t.from_float_ref, nullptr);
  }
  EXPECT_EQ(supported_types().size(), 15u);
  auto dot = [](GgmlType t) { return type_traits(t).value()->vec_dot_type; };
  EXPECT_EQ(dot(GgmlType::Q4_0), GgmlType::Q8_0);
  EXPECT_EQ(dot(GgmlType::Q5_0), GgmlType::Q8_0);
  EXPECT_EQ(dot(GgmlType::Q8_0), GgmlType::Q8_0);
  EXPECT_EQ(dot(GgmlType::Q4_1), GgmlType::Q8_1);
  EXPECT_EQ(dot(GgmlType::Q5_1), GgmlType::Q8_1);
  for (GgmlType k :
       {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
    EXPECT_EQ(dot(k), GgmlType::Q8_K);
  }
  EXPECT_EQ(dot(GgmlType::F16), GgmlType::F16);
  EXPECT_EQ(dot(GgmlType::BF16), GgmlType::BF16);
  EXPECT_EQ(dot(GgmlType::F32), GgmlType::F32);
}

TEST(TypeTable, UnsupportedTypesAreNamedErrors) {
  for (GgmlType t : {GgmlType::IQ2_XXS, GgmlType::IQ4_NL, GgmlType::TQ1_0, GgmlType::TQ2_0,
                     GgmlType::MXFP4, GgmlType::I8}) {
    auto r = type_traits(t);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find(gguf::type_name(t)), std::string::npos) << r.error().message;
  }
  auto bad = type_traits_of_id(4);  // a retired id
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("4"), std::string::npos);
}

TEST(TypeTable, CheckedConversionsRejectBadSizes) {
  std::vector<float> f(48);
  std::vector<uint8_t> q(1000);
  EXPECT_FALSE(quantize(GgmlType::Q4_0, f, q).ok());  // 48 is not a multiple of 32
  f.resize(64);
  EXPECT_FALSE(quantize(GgmlType::Q4_0, f, std::span<uint8_t>(q.data(), 35)).ok());
  EXPECT_TRUE(quantize(GgmlType::Q4_0, f, std::span<uint8_t>(q.data(), 36)).ok());
  auto e = dequantize(GgmlType::Q4_K, q, f);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("Q4_K"), std::string::npos);
}

// Every tensor of every llama.cpp file in models/quant dequantizes to exactly the f32 values
// whose sha256 reference.json records.
TEST(Dequantize, MatchesReferenceChecksumsOfEverySharedFile) {
  const nlohmann::json ref = load_reference();
  ASSERT_TRUE(ref.contains("files")) << "reference.json not found under " << quant_dir();
  int n_checked = 0;
  for (const auto& entry : ref["files"]) {
    const std::string path = quant_dir() + "/" + entry["file"].get<std::string>();
    auto f = gguf::GgufFile::open(path);
    ASSERT_TRUE(f.ok()) << f.error().message;
    const auto& checks = entry["dequant_check"];
    ASSERT_EQ(checks.size(), f->tensors().size()) << path;
    for (const auto& t : f->tensors()) {
      SCOPED_TRACE(path + " " + t.name);
      ASSERT_TRUE(checks.contains(t.name));
      EXPECT_EQ(std::string(gguf::type_name(t.type)),
                entry["tensor_types"][t.name].get<std::string>());
      std::vector<float> out(t.n_elements);
      ASSERT_TRUE(dequantize(t.type, t.bytes(), out).ok());
      EXPECT_EQ(sha256_hex(out.data(), out.size() * sizeof(float)),
                checks[t.name]["sha256_f32"].get<std::string>())
          << gguf::type_name(t.type);
      double sum = 0;
      for (float v : out) sum += v;
      EXPECT_NEAR(sum, checks[t.name]["sum"].get<double>(), 1e-6 * (1 + std::fabs(sum)));
      ++n_checked;
    }
  }
  EXPECT_EQ(n_checked, 19 * 21);
}

std::vector<float> random_values(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Q8_1: |x - d q| <= d/2 (plus fp16 rounding of d), and s is the fp16 of d * sum(q).
TEST(RoundTrip, Q8_1) {
  const auto x = random_values(32 * 64, 1, 3.f);
  std::vector<BlockQ8_1> q(64);
  quantize_row_q8_1_ref(x.data(), q.data(), static_cast<int64_t>(x.size()));
  std::vector<float> y(x.size());
  dequantize_row_q8_1(q.data(), y.data(), static_cast<int64_t>(x.size()));
  for (size_t b = 0; b < q.size(); ++b) {
    float amax = 0;
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      amax = std::max(amax, std::fabs(x[b * 32 + j]));
      sum += q[b].qs[j];
    }
    const float d = amax / 127;
    EXPECT_EQ(q[b].d, f32_to_fp16(d));
    EXPECT_EQ(q[b].s, f32_to_fp16(sum * d));
    for (int j = 0; j < 32; ++j) {
      EXPECT_LE(std::abs(q[b].qs[j]), 127);
      // d is stored as fp16 (relative error <= 2^-11), q * d_f16 vs x: half a step plus that.
      EXPECT_NEAR(y[b * 32 + j], x[b * 32 + j], d * 0.5f + amax * 0x1p-10f);
    }
  }
}

// Q8_K: the extreme value maps to -127 or 127 exactly, |x - d q| <= |d|/2, bsums are the sums.
TEST(RoundTrip, Q8_K) {
  auto x = random_values(256 * 16, 2, 0.5f);
  std::fill(x.begin() + 256 * 3, x.begin() + 256 * 4, 0.f);  // an all-zero block
  std::vector<BlockQ8_K> q(16);
  quantize_row_q8_k_ref(x.data(), q.data(), static_cast<int64_t>(x.size()));
  std::vector<float> y(x.size());
  dequantize_row_q8_k(q.data(), y.data(), static_cast<int64_t>(x.size()));
  for (size_t b = 0; b < q.size(); ++b) {
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += q[b].qs[g * 16 + j];
      EXPECT_EQ(q[b].bsums[g], sum);
    }
    if (b == 3) {
      EXPECT_EQ(q[b].d, 0.f);
      continue;
    }
    int n_extreme = 0;
    for (int j = 0; j < 256; ++j) {
      EXPECT_NEAR(y[b * 256 + j], x[b * 256 + j], std::fabs(q[b].d) * 0.5001f);
      n_extreme += std::abs(q[b].qs[j]) == 127;
    }
    EXPECT_GE(n_extreme, 1);
  }
}

// The CPU-backend variants: id = 127 / amax and ties to even; they agree with the references
// except where x * id lands on (or next to) a half.
TEST(RoundTrip, GgmlCpuActivationQuantizers) {
  auto x = random_values(32 * 256, 4, 2.f);
  // A block whose values hit exact halves: amax 127 makes id 1, so 2.5 -> 2 and 3.5 -> 4 under
  // ties-to-even, and 3 and 4 under the reference's round-half-away.
  for (int j = 0; j < 32; ++j) x[j] = j == 0 ? 127.f : (j % 2 ? 2.5f : 3.5f);
  std::vector<BlockQ8_0> a(256), r(256);
  std::vector<BlockQ8_1> a1(256);
  quantize_row_q8_0_ggml_cpu(x.data(), a.data(), static_cast<int64_t>(x.size()));
  quantize_row_q8_0_ref(x.data(), r.data(), static_cast<int64_t>(x.size()));
  quantize_row_q8_1_ggml_cpu(x.data(), a1.data(), static_cast<int64_t>(x.size()));
  EXPECT_EQ(a[0].qs[1], 2);
  EXPECT_EQ(a[0].qs[2], 4);
  EXPECT_EQ(r[0].qs[1], 3);
  EXPECT_EQ(r[0].qs[2], 4);
  int n_diff = 0;
  for (size_t b = 0; b < a.size(); ++b) {
    EXPECT_EQ(a[b].d, r[b].d);
    EXPECT_EQ(a1[b].d, a[b].d);
    int sum = 0;
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    for (int j = 0; j < 32; ++j) {
      EXPECT_EQ(a1[b].qs[j], a[b].qs[j]);
      EXPECT_LE(std::abs(a[b].qs[j] - r[b].qs[j]), 1);
      EXPECT_LE(std::fabs(a[b].qs[j] - x[b * 32 + j] * 127.f / amax), 0.5f);
      n_diff += a[b].qs[j] != r[b].qs[j];
      sum += a[b].qs[j];
    }
    EXPECT_EQ(a1[b].s, f32_to_fp16(sum * (amax / 127.f)));
  }
  EXPECT_LT(n_diff, 64);
}

TEST(Conversions, Fp16AndBf16RoundTripEveryValue) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const bool nan16 = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
    if (!nan16) {
      EXPECT_EQ(f32_to_fp16(fp16_to_f32(static_cast<Fp16>(h))), h);
      EXPECT_EQ(f32_to_bf16(bf16_to_f32(static_cast<Bf16>(h))), h);
    } else {
      EXPECT_TRUE(std::isnan(fp16_to_f32(static_cast<Fp16>(h))));
    }
  }
  // Round to nearest even at the halfway points, overflow, underflow.
  EXPECT_EQ(f32_to_fp16(1.0f + 0x1p-11f), 0x3c00);      // tie -> even (down)
  EXPECT_EQ(f32_to_fp16(1.0f + 3 * 0x1p-11f), 0x3c02);  // tie -> even (up)
  EXPECT_EQ(f32_to_fp16(65519.f), 0x7bff);
  EXPECT_EQ(f32_to_fp16(65520.f), 0x7c00);
  EXPECT_EQ(f32_to_fp16(0x1p-25f), 0x0000);  // tie with 0 -> 0
  EXPECT_EQ(f32_to_fp16(0x1.8p-25f), 0x0001);
  EXPECT_EQ(f32_to_fp16(-0x1p-24f), 0x8001);
  EXPECT_EQ(f32_to_fp16(std::nanf("")), 0x7e00);
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);  // tie -> even
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x7f800001u)), 0x7fc0);  // quiet NaN
}

// Every quantizer round-trips random data within a loose per-type bound, and dequantize(quantize)
// is a fixed point for the legacy types (requantizing dequantized values changes nothing).
TEST(RoundTrip, EveryTypeWithinBound) {
  const auto x = random_values(256 * 8, 3);
  const struct {
    GgmlType type;
    double max_rel_rmse;
  } cases[] = {{GgmlType::F16, 1e-3},  {GgmlType::BF16, 5e-3}, {GgmlType::Q8_0, 0.01},
               {GgmlType::Q8_1, 0.01}, {GgmlType::Q5_0, 0.05}, {GgmlType::Q5_1, 0.05},
               {GgmlType::Q4_0, 0.1},  {GgmlType::Q4_1, 0.1},  {GgmlType::Q6_K, 0.03},
               {GgmlType::Q5_K, 0.05}, {GgmlType::Q4_K, 0.1},  {GgmlType::Q3_K, 0.2},
               {GgmlType::Q2_K, 0.4},  {GgmlType::Q8_K, 0.01}};
  for (const auto& c : cases) {
    const TypeTraits& t = *type_traits(c.type).value();
    std::vector<uint8_t> q(x.size() / t.block_size * t.type_size);
    ASSERT_TRUE(quantize(c.type, x, q).ok());
    std::vector<float> y(x.size());
    ASSERT_TRUE(dequantize(c.type, q, y).ok());
    double se = 0, ss = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      se += (x[i] - y[i]) * double(x[i] - y[i]);
      ss += x[i] * double(x[i]);
    }
    EXPECT_LT(std::sqrt(se / ss), c.max_rel_rmse) << t.name;
  }
}

}  // namespace
}  // namespace realm::tensor
