#include "hub/store.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "hub/spec.h"

namespace realm::hub {
namespace {

namespace fs = std::filesystem;

// Sets an environment variable for one test, restoring it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(RealmHome, Precedence) {
  ScopedEnv home("HOME", "/home/u");
  {
    ScopedEnv r("REALM_HOME", nullptr);
    ScopedEnv x("XDG_CACHE_HOME", nullptr);
    EXPECT_EQ(realm_home(), "/home/u/.cache/realm");
  }
  {
    ScopedEnv r("REALM_HOME", nullptr);
    ScopedEnv x("XDG_CACHE_HOME", "/xdg");
    EXPECT_EQ(realm_home(), "/xdg/realm");
  }
  ScopedEnv r("REALM_HOME", "/srv/realm");
  EXPECT_EQ(realm_home(), "/srv/realm");
  EXPECT_EQ(models_dir(), "/srv/realm/models");
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("realm_hub_store_test_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    env_ = std::make_unique<ScopedEnv>("REALM_HOME", root_.c_str());
  }
  void TearDown() override {
    env_.reset();
    fs::remove_all(root_);
  }
  // A hand-written entry as pull would leave it.
  fs::path add_entry(const std::string& name, const std::string& file) {
    fs::path dir = root_ / "models" / escape_name(name);
    fs::create_directories(dir);
    std::ofstream(dir / file) << "GGUF";
    std::ofstream(dir / "manifest.json")
        << R"({"realm_manifest": 1, "name": ")" << name << R"(", "spec": ")" << name
        << R"(", "source": {"kind": "hub", "repo": "t/r", "revision": "main"},
             "files": [{"name": ")"
        << file << R"(", "size": 4, "sha256": "abc"}], "pulled_at": "2025-01-01T00:00:00Z"})";
    return dir;
  }
  fs::path root_;
  std::unique_ptr<ScopedEnv> env_;
};

TEST_F(StoreTest, FileWins) {
  fs::path f = root_ / "model.gguf";
  std::ofstream(f) << "x";
  auto r = resolve_model(f.string());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->path, f.string());
  EXPECT_FALSE(r->in_store);
  EXPECT_EQ(r->entry_dir, "");
  EXPECT_FALSE(r->sha256.has_value());
}

TEST_F(StoreTest, StoreNamesAndDefaultQuant) {
  fs::path dir = add_entry("t/r:Q4_K_M", "r.Q4_K_M.gguf");
  for (const char* arg : {"t/r:Q4_K_M", "t/r:q4_k_m", "t/r"}) {
    auto r = resolve_model(arg);
    ASSERT_TRUE(r.ok()) << arg << ": " << r.error().message;
    EXPECT_TRUE(r->in_store);
    EXPECT_EQ(r->name, "t/r:Q4_K_M");
    EXPECT_EQ(r->path, (dir / "r.Q4_K_M.gguf").string());
    EXPECT_EQ(r->entry_dir, dir.string());
    EXPECT_EQ(r->sha256.value_or(""), "abc");
  }
  auto list = list_models();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "t/r:Q4_K_M");
  ASSERT_TRUE(remove_model("t/r").ok());
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_EQ(resolve_model("t/r").error().code, ErrorCode::NOT_FOUND);
}

TEST_F(StoreTest, NeitherFileNorModel) {
  auto r = resolve_model("nobody/nothing:Q8_0");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::NOT_FOUND);
  const std::string& m = r.error().message;
  EXPECT_NE(m.find("nobody/nothing:Q8_0"), std::string::npos);
  EXPECT_NE(m.find("neither a file nor a pulled model"), std::string::npos);
  EXPECT_NE(m.find("realm pull"), std::string::npos);
  EXPECT_FALSE(remove_model("nobody/nothing").ok());
}

TEST_F(StoreTest, StagingIsInvisible) {
  fs::create_directories(root_ / "models" / ".partial" / escape_name("t/r:Q8_0"));
  auto list = list_models();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
  EXPECT_FALSE(resolve_model("t/r:Q8_0").ok());
}

}  // namespace
}  // namespace realm::hub
