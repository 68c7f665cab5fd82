#include "sandbox/wasm_module_info.h"

#include <gtest/gtest.h>

namespace realm::sandbox {
namespace {

TEST(WasmModuleInfo, RejectsNonWasm) {
  const std::string text = "hello, world";
  auto r = read_module_info(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not a WebAssembly module"), std::string::npos);
}

}  // namespace
}  // namespace realm::sandbox
