// A small reader of a WebAssembly binary's headers: types, imports, functions, exports and the
// imported memory's limits. The sandbox uses it before instantiation to reject modules with clear
// errors (not wasm, an unknown import, a wrong export signature, a memory larger than the limit).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/expected.h"

namespace realm::sandbox {

enum class ValType : uint8_t { I32, I64, F32, F64, V128, FUNCREF, EXTERNREF };
std::string_view val_type_name(ValType t);

struct FuncType {
  std::vector<ValType> params;
  std::vector<ValType> results;
  bool operator==(const FuncType&) const = default;
};
// "(i32, i32) -> i32"
std::string func_type_string(const FuncType& t);

enum class ExternKind : uint8_t { FUNC, TABLE, MEMORY, GLOBAL, TAG };
std::string_view extern_kind_name(ExternKind k);

struct MemoryLimits {
  uint64_t min_pages = 0;
  std::optional<uint64_t> max_pages;
  bool shared = false;
  bool memory64 = false;
};

struct ImportEntry {
  std::string module;
  std::string name;
  ExternKind kind = ExternKind::FUNC;
  uint32_t type_index = 0;  // FUNC
  MemoryLimits memory;      // MEMORY
};

struct ExportEntry {
  std::string name;
  ExternKind kind = ExternKind::FUNC;
  uint32_t index = 0;
};

struct ModuleInfo {
  std::vector<FuncType> types;
  std::vector<ImportEntry> imports;
  std::vector<uint32_t> functions;  // type index of each defined function
  std::vector<ExportEntry> exports;
  bool defines_memory = false;
  std::optional<uint32_t> start_function;  // the start section's function, if there is one

  uint32_t n_imported_functions() const;
  const ExportEntry* find_export(std::string_view name) const;
  // The signature of an exported function, or nullopt when there is none by that name.
  std::optional<FuncType> export_func_type(std::string_view name) const;
  const ImportEntry* imported_memory() const;
};

// Reads the headers of a wasm binary; every count, size and index is checked against the bytes.
Expected<ModuleInfo> read_module_info(std::span<const uint8_t> bytes);

}  // namespace realm::sandbox
