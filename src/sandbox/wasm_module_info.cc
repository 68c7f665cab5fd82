#include "sandbox/wasm_module_info.h"

#include <cstring>

namespace realm::sandbox {

std::string_view val_type_name(ValType t) {
  switch (t) {
    case ValType::I32:
      return "i32";
    case ValType::I64:
      return "i64";
    case ValType::F32:
      return "f32";
    case ValType::F64:
      return "f64";
    case ValType::V128:
      return "v128";
    case ValType::FUNCREF:
      return "funcref";
    case ValType::EXTERNREF:
      return "externref";
  }
  return "?";
}

std::string func_type_string(const FuncType& t) {
  std::string s = "(";
  for (size_t i = 0; i < t.params.size(); ++i) {
    if (i) s += ", ";
    s += val_type_name(t.params[i]);
  }
  s += ") -> ";
  if (t.results.empty()) return s + "()";
  if (t.results.size() == 1) return s + std::string(val_type_name(t.results[0]));
  s += "(";
  for (size_t i = 0; i < t.results.size(); ++i) {
    if (i) s += ", ";
    s += val_type_name(t.results[i]);
  }
  return s + ")";
}

std::string_view extern_kind_name(ExternKind k) {
  switch (k) {
    case ExternKind::FUNC:
      return "function";
    case ExternKind::TABLE:
      return "table";
    case ExternKind::MEMORY:
      return "memory";
    case ExternKind::GLOBAL:
      return "global";
    case ExternKind::TAG:
      return "tag";
  }
  return "?";
}

uint32_t ModuleInfo::n_imported_functions() const {
  uint32_t n = 0;
  for (const auto& i : imports) n += i.kind == ExternKind::FUNC;
  return n;
}

const ExportEntry* ModuleInfo::find_export(std::string_view name) const {
  for (const auto& e : exports) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

std::optional<FuncType> ModuleInfo::export_func_type(std::string_view name) const {
  const ExportEntry* e = find_export(name);
  if (!e || e->kind != ExternKind::FUNC) return std::nullopt;
  uint32_t idx = e->index;
  uint32_t seen = 0;
  for (const auto& i : imports) {
    if (i.kind != ExternKind::FUNC) continue;
    if (seen++ == idx)
      return i.type_index < types.size() ? std::optional(types[i.type_index]) : std::nullopt;
  }
  idx -= seen;
  if (idx >= functions.size() || functions[idx] >= types.size()) return std::nullopt;
  return types[functions[idx]];
}

const ImportEntry* ModuleInfo::imported_memory() const {
  for (const auto& i : imports) {
    if (i.kind == ExternKind::MEMORY) return &i;
  }
  return nullptr;
}

namespace {

class Reader {
 public:
  Reader(std::span<const uint8_t> b, size_t base) : b_(b), base_(base) {}
  bool done() const { return pos_ >= b_.size(); }
  size_t offset() const { return base_ + pos_; }

  Expected<uint8_t> byte() {
    if (pos_ >= b_.size()) return make_error("unexpected end at offset ", offset());
    return b_[pos_++];
  }
  // Unsigned LEB128 of at most `bits` bits.
  Expected<uint64_t> uleb(int bits = 32) {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      if (shift >= bits + 7) return make_error("LEB128 too long at offset ", offset());
      auto b = byte();
      if (!b) return b.take_error();
      v |= static_cast<uint64_t>(*b & 0x7f) << shift;
      if (!(*b & 0x80)) break;
    }
    if (bits < 64 && (v >> bits) != 0) return make_error("LEB128 out of range at ", offset());
    return v;
  }
  Expected<std::span<const uint8_t>> bytes(uint64_t n) {
    if (n > b_.size() - pos_) {
      return make_error("length ", n, " at offset ", offset(), " runs past the end");
    }
    auto s = b_.subspan(pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }
  Expected<std::string> name() {
    auto n = uleb();
    if (!n) return n.take_error();
    auto s = bytes(*n);
    if (!s) return s.take_error();
    return std::string(reinterpret_cast<const char*>(s->data()), s->size());
  }

 private:
  std::span<const uint8_t> b_;
  size_t base_;
  size_t pos_ = 0;
};

Expected<ValType> read_val_type(Reader& r) {
  auto b = r.byte();
  if (!b) return b.take_error();
  switch (*b) {
    case 0x7f:
      return ValType::I32;
    case 0x7e:
      return ValType::I64;
    case 0x7d:
      return ValType::F32;
    case 0x7c:
      return ValType::F64;
    case 0x7b:
      return ValType::V128;
    case 0x70:
      return ValType::FUNCREF;
    case 0x6f:
      return ValType::EXTERNREF;
  }
  return make_error("unknown value type 0x", std::to_string(*b), " at offset ", r.offset() - 1);
}

Expected<MemoryLimits> read_limits(Reader& r) {
  auto flags = r.byte();
  if (!flags) return flags.take_error();
  if (*flags > 7) return make_error("bad limits flags ", *flags, " at offset ", r.offset() - 1);
  MemoryLimits m;
  m.shared = *flags & 2;
  m.memory64 = *flags & 4;
  const int bits = m.memory64 ? 64 : 32;
  auto mn = r.uleb(bits);
  if (!mn) return mn.take_error();
  m.min_pages = *mn;
  if (*flags & 1) {
    auto mx = r.uleb(bits);
    if (!mx) return mx.take_error();
    m.max_pages = *mx;
  }
  return m;
}

Status read_section(uint8_t id, Reader& r, ModuleInfo& info) {
  switch (id) {
    case 1: {  // types
      auto n = r.uleb();
      if (!n) return n.take_error();
      for (uint64_t i = 0; i < *n; ++i) {
        auto form = r.byte();
        if (!form) return form.take_error();
        if (*form != 0x60) return make_error("type ", i, " is not a function type");
        FuncType t;
        for (auto* list : {&t.params, &t.results}) {
          auto c = r.uleb();
          if (!c) return c.take_error();
          for (uint64_t k = 0; k < *c; ++k) {
            auto v = read_val_type(r);
            if (!v) return v.take_error();
            list->push_back(*v);
          }
        }
        info.types.push_back(std::move(t));
      }
      return {};
    }
    case 2: {  // imports
      auto n = r.uleb();
      if (!n) return n.take_error();
      for (uint64_t i = 0; i < *n; ++i) {
        ImportEntry e;
        auto mod = r.name();
        if (!mod) return mod.take_error();
        auto nm = r.name();
        if (!nm) return nm.take_error();
        e.module = std::move(*mod);
        e.name = std::move(*nm);
        auto kind = r.byte();
        if (!kind) return kind.take_error();
        switch (*kind) {
          case 0: {
            e.kind = ExternKind::FUNC;
            auto t = r.uleb();
            if (!t) return t.take_error();
            if (*t >= info.types.size()) {
              return make_error("import ", e.module, ".", e.name, " uses unknown type ", *t);
            }
            e.type_index = static_cast<uint32_t>(*t);
            break;
          }
          case 1: {
            e.kind = ExternKind::TABLE;
            auto t = read_val_type(r);
            if (!t) return t.take_error();
            auto l = read_limits(r);
            if (!l) return l.take_error();
            break;
          }
          case 2: {
            e.kind = ExternKind::MEMORY;
            auto l = read_limits(r);
            if (!l) return l.take_error();
            e.memory = *l;
            break;
          }
          case 3: {
            e.kind = ExternKind::GLOBAL;
            auto t = read_val_type(r);
            if (!t) return t.take_error();
            auto mut = r.byte();
            if (!mut) return mut.take_error();
            break;
          }
          case 4: {
            e.kind = ExternKind::TAG;
            auto attr = r.byte();
            if (!attr) return attr.take_error();
            auto t = r.uleb();
            if (!t) return t.take_error();
            break;
          }
          default:
            return make_error("import ", e.module, ".", e.name, " has unknown kind ", *kind);
        }
        info.imports.push_back(std::move(e));
      }
      return {};
    }
    case 3: {  // functions
      auto n = r.uleb();
      if (!n) return n.take_error();
      for (uint64_t i = 0; i < *n; ++i) {
        auto t = r.uleb();
        if (!t) return t.take_error();
        if (*t >= info.types.size()) return make_error("function ", i, " uses unknown type ", *t);
        info.functions.push_back(static_cast<uint32_t>(*t));
      }
      return {};
    }
    case 5: {  // memories
      auto n = r.uleb();
      if (!n) return n.take_error();
      if (*n > 0) info.defines_memory = true;
      return {};
    }
    case 8: {  // start
      auto f = r.uleb();
      if (!f) return f.take_error();
      info.start_function = static_cast<uint32_t>(*f);
      return {};
    }
    case 7: {  // exports
      auto n = r.uleb();
      if (!n) return n.take_error();
      for (uint64_t i = 0; i < *n; ++i) {
        ExportEntry e;
        auto nm = r.name();
        if (!nm) return nm.take_error();
        e.name = std::move(*nm);
        auto kind = r.byte();
        if (!kind) return kind.take_error();
        if (*kind > 4) return make_error("export ", e.name, " has unknown kind ", *kind);
        e.kind = static_cast<ExternKind>(*kind);
        auto idx = r.uleb();
        if (!idx) return idx.take_error();
        e.index = static_cast<uint32_t>(*idx);
        info.exports.push_back(std::move(e));
      }
      return {};
    }
    default:
      return {};
  }
}

}  // namespace

Expected<ModuleInfo> read_module_info(std::span<const uint8_t> bytes) {
  static constexpr uint8_t kMagic[4] = {0x00, 0x61, 0x73, 0x6d};
  if (bytes.size() < 8 || std::memcmp(bytes.data(), kMagic, 4) != 0) {
    return make_error("not a WebAssembly module (no \\0asm magic in the first ",
                      bytes.size() < 8 ? bytes.size() : 8, " bytes)");
  }
  const uint32_t version =
      bytes[4] | (bytes[5] << 8) | (bytes[6] << 16) | (static_cast<uint32_t>(bytes[7]) << 24);
  if (version != 1) return make_error("unsupported WebAssembly binary version ", version);
  ModuleInfo info;
  Reader r(bytes.subspan(8), 8);
  while (!r.done()) {
    auto id = r.byte();
    if (!id) return id.take_error();
    auto size = r.uleb();
    if (!size) return size.take_error();
    const size_t start = r.offset();
    auto body = r.bytes(*size);
    if (!body) return make_error("section ", *id, ": ", body.error().message);
    if (*id == 0) continue;  // custom
    if (*id > 13) return make_error("unknown section id ", *id, " at offset ", start);
    Reader sr(*body, start);
    auto st = read_section(*id, sr, info);
    if (!st) return make_error("section ", *id, ": ", st.error().message);
  }
  return info;
}

}  // namespace realm::sandbox
