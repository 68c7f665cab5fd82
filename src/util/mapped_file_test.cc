#include "util/mapped_file.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace realm {
namespace {

TEST(MappedFile, MapsContents) {
  std::string path = testing::TempDir() + "/mapped_file_test.bin";
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fputs("hello", f);
  std::fclose(f);
  auto m = MappedFile::open(path);
  ASSERT_TRUE(m.ok()) << m.error().message;
  ASSERT_EQ(m->size(), 5u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m->data()), 5), "hello");
  MappedFile moved = std::move(*m);
  EXPECT_EQ(moved.size(), 5u);
  std::remove(path.c_str());
}

TEST(MappedFile, ErrorsNameThePath) {
  auto m = MappedFile::open("/nonexistent/realm.gguf");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().message.find("/nonexistent/realm.gguf"), std::string::npos);
  auto d = MappedFile::open("/");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message.find("not a regular file"), std::string::npos);
}

}  // namespace
}  // namespace realm
