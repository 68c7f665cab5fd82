/* The Realm guest SDK: the host imports and export conventions of the guest ABI v1
 * (docs/abi.md) for C and C++ tenants compiled to wasm32-wasi (docs/guest.md).
 *
 * Compiled for wasm (__wasm__), the realm_* host functions below are imports from module "realm";
 * compiled natively they are plain extern "C" declarations, so a guest's logic can be linked
 * into a native test against a host shim. Pointers are offsets into the guest's linear memory
 * (wasm32: 32 bits); lengths are int32_t bytes unless the name says elements.
 *
 * C++ adds (namespace realm::guest): HandleTable (validated handles with generation counters for
 * realm_new/realm_delete), write_sized() for sized outputs such as realm_last_error, and
 * call_sized() to call a sized-output import with a growing buffer. */
#ifndef REALM_GUEST_H_
#define REALM_GUEST_H_

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* The ABI constants (status codes, emit kinds, flags, log levels) and realm_status_name. */
#include "sandbox/realm_abi.h"

#if defined(__wasm__)
#define REALM_IMPORT(name) __attribute__((import_module("realm"), import_name(#name)))
/* Marks a function as a module export named `name` (use on extern "C" definitions). */
#define REALM_EXPORT(name) __attribute__((export_name(#name)))
#else
#define REALM_IMPORT(name)
#define REALM_EXPORT(name)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Host imports (module "realm") ---- */

/* Opens a shared host model by name: a handle > 0, or REALM_E_DENIED / an error. */
REALM_IMPORT(model_open) int32_t realm_model_open(const char* name, int32_t name_len);
/* JSON {"n_vocab", "n_ctx_train", "bos", "eos", "eog": [...], "add_bos"}; sized output. */
REALM_IMPORT(model_info) int32_t realm_model_info(int32_t model, char* buf, int32_t buf_cap);
/* Token ids into out (out_cap elements); returns the count (sized output). */
REALM_IMPORT(tokenize)
int32_t realm_tokenize(int32_t model, const char* text, int32_t text_len, int32_t flags,
                       int32_t* out, int32_t out_cap);
/* The bytes of one token (may be partial UTF-8; control tokens are empty); sized output. */
REALM_IMPORT(token_piece)
int32_t realm_token_piece(int32_t model, int32_t id, char* buf, int32_t buf_cap);
/* Renders the model's chat template for a JSON array of {role, content}; sized output. */
REALM_IMPORT(chat_template)
int32_t realm_chat_template(int32_t model, const char* msgs, int32_t msgs_len,
                            int32_t add_generation_prompt, char* out, int32_t out_cap);
/* A KV cache in the host: a handle > 0 or an error (REALM_E_LIMIT past the session limit). */
REALM_IMPORT(session_open) int32_t realm_session_open(int32_t model, int32_t n_ctx);
REALM_IMPORT(session_close) int32_t realm_session_close(int32_t session);
/* Keeps the first n tokens of the session. */
REALM_IMPORT(session_truncate) int32_t realm_session_truncate(int32_t session, int32_t n);
/* Appends and runs n_tokens ids; writes the n_vocab logits of the last one; returns n_vocab. */
REALM_IMPORT(decode)
int32_t realm_decode(int32_t session, const int32_t* tokens, int32_t n_tokens, float* logits,
                     int32_t logits_cap);
/* Streams an event (REALM_EMIT_TOKEN / REALM_EMIT_FINAL JSON): 0, 1 = client gone, or error. */
REALM_IMPORT(emit) int32_t realm_emit(int32_t kind, const char* ptr, int32_t len);
/* A tenant log line (bounded in size and rate by the host). */
REALM_IMPORT(log) void realm_log(int32_t level, const char* ptr, int32_t len);
/* Monotonic milliseconds. */
REALM_IMPORT(clock_ms) double realm_clock_ms(void);
/* Why the last host import that returned an error failed (empty when none has); sized output. */
REALM_IMPORT(host_error) int32_t realm_host_error(char* buf, int32_t buf_cap);

#ifdef __cplusplus
} /* extern "C" */
#endif

/* True when [ptr, ptr + len) lies inside the guest's linear memory (always true natively): for
 * exports that take ranges from the host, so a bad range is an error code, not a trap. */
static inline int realm_range_ok(const void* ptr, int32_t len) {
  if (len < 0) return 0;
#if defined(__wasm__)
  const uint64_t end = (uint64_t)(uintptr_t)ptr + (uint64_t)len;
  return end <= (uint64_t)__builtin_wasm_memory_size(0) * 65536u;
#else
  return len == 0 || ptr != NULL;
#endif
}

/* Defines the three exports every guest has in the same form: realm_abi_version, realm_alloc
 * (malloc) and realm_free. Use once, at file scope, in one source file of a module (in C++,
 * inside an extern "C" block, as guest_exports.cc does). */
#define REALM_DEFINE_STANDARD_EXPORTS()                             \
  REALM_EXPORT(realm_abi_version) int32_t realm_abi_version(void) { \
    return REALM_ABI_VERSION;                                       \
  }                                                                 \
  REALM_EXPORT(realm_alloc) void* realm_alloc(int32_t size) {       \
    return size > 0 ? malloc((size_t)size) : NULL;                  \
  }                                                                 \
  REALM_EXPORT(realm_free) void realm_free(void* ptr) {             \
    free(ptr);                                                      \
  }

#ifdef __cplusplus
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

namespace realm::guest {

// Handles for guest objects: a slot index (bits 0..15, plus 1) and the slot's generation
// (bits 16..30), so a handle is always > 0 and a deleted, reused or forged handle never finds an
// object. At most 65535 live objects; no exceptions (allocation failure gives handle 0).
template <class T>
class HandleTable {
 public:
  static constexpr uint32_t kMaxSlots = 0xFFFF;

  // Takes ownership of `obj`; returns its handle (> 0), or 0 when obj is null or the table is
  // full (obj is then destroyed).
  int32_t insert(std::unique_ptr<T> obj) {
    if (!obj) return 0;
    uint32_t index;
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else {
      if (slots_.size() >= kMaxSlots) return 0;
      slots_.emplace_back();
      index = static_cast<uint32_t>(slots_.size() - 1);
    }
    Slot& s = slots_[index];
    s.obj = std::move(obj);
    return make_handle(index, s.generation);
  }
  // The object of `handle`, or nullptr for a stale, forged or never-created handle.
  T* get(int32_t handle) const {
    uint32_t index;
    if (!find(handle, index)) return nullptr;
    return slots_[index].obj.get();
  }
  // Destroys the object of `handle`; false for an invalid handle.
  bool erase(int32_t handle) {
    uint32_t index;
    if (!find(handle, index)) return false;
    Slot& s = slots_[index];
    s.obj.reset();
    s.generation = (s.generation + 1) & 0x7FFF;  // the next handle of this slot differs
    free_.push_back(index);
    return true;
  }
  size_t size() const { return slots_.size() - free_.size(); }

 private:
  struct Slot {
    std::unique_ptr<T> obj;
    uint32_t generation = 0;
  };
  static int32_t make_handle(uint32_t index, uint32_t generation) {
    return static_cast<int32_t>((generation << 16) | (index + 1));
  }
  bool find(int32_t handle, uint32_t& index) const {
    if (handle <= 0) return false;
    const uint32_t h = static_cast<uint32_t>(handle);
    const uint32_t low = h & 0xFFFF;
    if (low == 0) return false;
    index = low - 1;
    return index < slots_.size() && slots_[index].obj && slots_[index].generation == (h >> 16);
  }

  std::vector<Slot> slots_;
  std::vector<uint32_t> free_;
};

// A sized output: returns the size of `s`, and copies it to buf only when it fits in cap.
inline int32_t write_sized(const std::string& s, char* buf, int32_t cap) {
  if (s.size() > 0x7FFFFFFF) return REALM_E_LIMIT;
  const auto n = static_cast<int32_t>(s.size());
  if (cap >= n && n > 0 && buf != nullptr) std::memcpy(buf, s.data(), s.size());
  return n;
}

// Calls a sized-output import f(buf, cap) -> needed size (or a negative status), growing `out`
// (whose element type matches the import's buffer) until the result fits. Returns the status:
// REALM_OK with out resized to the result, or the import's error.
template <class Vec, class F>
int32_t call_sized(Vec& out, F&& f) {
  if (out.size() < 64) out.resize(64);
  for (int attempt = 0; attempt < 4; ++attempt) {
    const int32_t cap = static_cast<int32_t>(out.size());
    const int32_t n = f(out.data(), cap);
    if (n < 0) return n;
    if (n <= cap) {
      out.resize(static_cast<size_t>(n));
      return REALM_OK;
    }
    out.resize(static_cast<size_t>(n));
  }
  return REALM_E_INTERNAL;  // the size kept changing
}

}  // namespace realm::guest
#endif /* __cplusplus */

#endif /* REALM_GUEST_H_ */
