#include "gguf/writer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "gguf/test_files.h"

namespace realm::gguf {
namespace {

// Reading then writing any shared file reproduces it byte for byte.
TEST(GgufWriter, RoundTripIsByteIdentical) {
  auto files = testing::shared_gguf_files();
  ASSERT_GE(files.size(), 30u);
  for (const auto& path : files) {
    auto f = GgufFile::open(path);
    ASSERT_TRUE(f.ok()) << f.error().message;
    std::vector<uint8_t> out = GgufWriter::copy_of(*f).to_bytes();
    ASSERT_EQ(out.size(), f->file_size()) << path;
    EXPECT_EQ(std::memcmp(out.data(), f->bytes().data(), out.size()), 0) << path;
  }
}

TEST(GgufWriter, WriteFileThenReadBack) {
  GgufWriter w;
  w.add_kv("general.architecture", Value::string("llama"));
  w.add_kv("general.alignment", Value::u32(64));
  w.add_kv("test.nested",
           Value::array_of_arrays({Value::string_array({"a", "bc"}),
                                   Value::array_of<int32_t>(ValueType::INT32, {-1, 2, 3})}));
  w.add_kv("test.f32", Value::f32(0.5f));
  std::vector<float> a(32, 1.5f), b(7, -2.0f);
  w.add_tensor("a", GgmlType::F32, {32}, {reinterpret_cast<const uint8_t*>(a.data()), 128});
  w.add_tensor("b", GgmlType::F32, {7}, {reinterpret_cast<const uint8_t*>(b.data()), 28});
  std::string path = ::testing::TempDir() + "/writer_test.gguf";
  ASSERT_TRUE(w.write_file(path).ok());

  auto f = GgufFile::open(path);
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(f->data_offset() % 64, 0u);
  const Value* nested = f->find("test.nested");
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->size(), 2u);
  EXPECT_EQ(nested->arrays()[0].strings()[1], "bc");
  EXPECT_EQ(nested->arrays()[1].int_at(0), -1);
  EXPECT_EQ(f->get_float("test.f32"), 0.5);
  const TensorInfo* tb = f->find_tensor("b");
  ASSERT_NE(tb, nullptr);
  EXPECT_EQ(tb->offset, 128u);  // 128 bytes of "a", already a multiple of 64
  float got;
  std::memcpy(&got, tb->data + 4, 4);
  EXPECT_EQ(got, -2.0f);
  EXPECT_EQ(f->file_size(), f->data_offset() + 128 + 64);  // last tensor padded too
  std::remove(path.c_str());
}

}  // namespace
}  // namespace realm::gguf
