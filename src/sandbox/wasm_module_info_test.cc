#include "sandbox/wasm_module_info.h"

#include <gtest/gtest.h>

namespace realm::sandbox {
namespace {

std::vector<uint8_t> section(uint8_t id, std::vector<uint8_t> body) {
  std::vector<uint8_t> out = {id, static_cast<uint8_t>(body.size())};
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

// A module: type 0 = (i32, i64) -> f64, type 1 = () -> (); imports env.memory {min 2, max 10}
// and realm.f : type 0; defines one function of type 1 exported as "run", and exports "f".
std::vector<uint8_t> sample_module() {
  std::vector<uint8_t> m = {0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00};
  auto add = [&](std::vector<uint8_t> s) { m.insert(m.end(), s.begin(), s.end()); };
  add(section(1, {2, 0x60, 2, 0x7f, 0x7e, 1, 0x7c, 0x60, 0, 0}));
  add(section(2, {2, 3, 'e', 'n', 'v', 6,   'm', 'e', 'm', 'o', 'r', 'y', 2,
                  1, 2, 10,  5,   'r', 'e', 'a', 'l', 'm', 1,   'f', 0,   0}));
  add(section(3, {1, 1}));
  add(section(7, {2, 3, 'r', 'u', 'n', 0, 1, 1, 'f', 0, 0}));
  add(section(0, {4, 'n', 'a', 'm', 'e', 0xAA}));  // custom sections are skipped
  add(section(10, {1, 2, 0, 0x0b}));
  return m;
}

TEST(WasmModuleInfo, ReadsTypesImportsExports) {
  auto r = read_module_info(sample_module());
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->types.size(), 2u);
  EXPECT_EQ(func_type_string(r->types[0]), "(i32, i64) -> f64");
  EXPECT_EQ(func_type_string(r->types[1]), "() -> ()");
  ASSERT_EQ(r->imports.size(), 2u);
  const ImportEntry* mem = r->imported_memory();
  ASSERT_NE(mem, nullptr);
  EXPECT_EQ(mem->module, "env");
  EXPECT_EQ(mem->memory.min_pages, 2u);
  EXPECT_EQ(mem->memory.max_pages, 10u);
  EXPECT_EQ(r->imports[1].name, "f");
  EXPECT_EQ(r->n_imported_functions(), 1u);
  EXPECT_FALSE(r->defines_memory);
  // Function index 0 is the import, 1 the defined function.
  EXPECT_EQ(r->export_func_type("f"), r->types[0]);
  EXPECT_EQ(r->export_func_type("run"), r->types[1]);
  EXPECT_FALSE(r->export_func_type("missing"));
}

TEST(WasmModuleInfo, RejectsNonWasmAndTruncatedModules) {
  const std::string text = "hello, world";
  auto r = read_module_info(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not a WebAssembly module"), std::string::npos);
  auto m = sample_module();
  m[4] = 2;
  EXPECT_FALSE(read_module_info(m));
  // Every truncation is an error, never a crash or an over-read.
  const auto full = sample_module();
  for (size_t n = 0; n + 1 < full.size(); ++n) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<long>(n));
    auto c = read_module_info(cut);
    if (c) EXPECT_GE(n, 8u);  // a cut at a section boundary is a valid (smaller) module
  }
}

TEST(WasmModuleInfo, RejectsBadIndicesAndOverlongLeb) {
  auto m = sample_module();
  // The import realm.f names type 0; make it type 9.
  std::vector<uint8_t> bad = m;
  for (size_t i = 8; i + 2 < bad.size(); ++i) {
    if (bad[i] == 'f' && bad[i + 1] == 0 && bad[i + 2] == 0) {
      bad[i + 2] = 9;
      break;
    }
  }
  auto r = read_module_info(bad);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("unknown type 9"), std::string::npos) << r.error().message;
  std::vector<uint8_t> leb = {0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 1,
                              7,    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
  EXPECT_FALSE(read_module_info(leb));
}

}  // namespace
}  // namespace realm::sandbox
