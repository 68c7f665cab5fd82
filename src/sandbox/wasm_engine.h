// The WebAssembly engine interface: compile, instantiate, call, memory view, terminate. The sandbox
// uses only this header; the V8 implementation (v8_engine.cc) sits behind it so that another engine
// (Wasmtime, WAMR) can be added later. No engine types appear here.
//
// Threading: a WasmEngine is shared by every thread. A WasmIsolate (one per worker thread) and the
// instances made from it are used only on the thread that created them, except terminate(), which
// any thread may call. Compiled modules are immutable and shared across isolates.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sandbox/guest_memory.h"
#include "sandbox/wasm_module_info.h"
#include "util/expected.h"

namespace realm::sandbox {

// One wasm value crossing the boundary.
struct Val {
  ValType type = ValType::I32;
  union {
    int32_t i32;
    int64_t i64;
    float f32;
    double f64;
  };
  Val() : i64(0) {}
  static Val make_i32(int32_t v) {
    Val r;
    r.type = ValType::I32;
    r.i32 = v;
    return r;
  }
  static Val make_i64(int64_t v) {
    Val r;
    r.type = ValType::I64;
    r.i64 = v;
    return r;
  }
  static Val make_f64(double v) {
    Val r;
    r.type = ValType::F64;
    r.f64 = v;
    return r;
  }
};

// What a host function sees during one call from the guest.
class HostCallContext {
 public:
  virtual ~HostCallContext() = default;
  // The guest's linear memory as it is now (it cannot grow while the host function runs).
  virtual GuestMemory memory() = 0;
  // The `user` pointer given to instantiate().
  virtual void* user() = 0;
};

// A host function's result: a value (ignored for functions without results), or an Error, which
// traps the guest with that message (only for exceeded limits and host faults: guest mistakes
// are error codes, CONVENTIONS.md §8).
using HostResult = Expected<Val>;
using HostFunction = std::function<HostResult(HostCallContext&, std::span<const Val>)>;

struct HostImport {
  std::string module;
  std::string name;
  FuncType type;  // at most one result
  HostFunction fn;
};

// A compiled module: immutable, shared by every isolate.
class WasmModule {
 public:
  virtual ~WasmModule() = default;
  const ModuleInfo& info() const { return info_; }

 protected:
  explicit WasmModule(ModuleInfo info) : info_(std::move(info)) {}

 private:
  ModuleInfo info_;
};

// Why a call did not complete.
enum class Fault {
  NONE,
  TRAP,            // the guest trapped (unreachable, out-of-bounds access, ...)
  STACK_OVERFLOW,  // call stack exhausted
  TIMEOUT,         // the watchdog terminated the call (time in guest code over the limit)
  HEAP_LIMIT,      // the engine's own heap hit its limit (NearHeapLimitCallback)
  HOST,            // a host function trapped the guest (its message says why)
  LINK,            // instantiation failed (imports, memory limits)
};
std::string_view fault_name(Fault f);

struct CallResult {
  Fault fault = Fault::NONE;
  std::string message;  // the engine's or the host function's message when fault != NONE
  std::optional<Val> value;
  bool ok() const { return fault == Fault::NONE; }
};

struct InstanceOptions {
  // Cap on the guest's linear memory (it is created by the host and imported as env.memory).
  uint64_t memory_max_bytes = uint64_t{64} << 20;
  void* user = nullptr;  // handed to host functions through HostCallContext::user()
};

class WasmInstance {
 public:
  virtual ~WasmInstance() = default;
  // Calls an exported function. `time_limit` bounds the time spent in guest code (time inside
  // host functions is not counted); zero means no limit.
  virtual CallResult call(std::string_view export_name, std::span<const Val> args,
                          std::chrono::nanoseconds time_limit) = 0;
  virtual GuestMemory memory() = 0;
  virtual uint64_t memory_max_bytes() const = 0;
};

class WasmIsolate {
 public:
  virtual ~WasmIsolate() = default;
  // Instantiates `module` with the imports (every import of the module must be in `imports`, or
  // the error names the missing one); the instance's memory is created with options'
  // memory_max_bytes as its maximum. `imports` must outlive the instance.
  virtual Expected<std::unique_ptr<WasmInstance>> instantiate(
      const std::shared_ptr<const WasmModule>& module, const std::vector<HostImport>& imports,
      const InstanceOptions& options) = 0;
  // Stops the guest code running in this isolate now (from any thread).
  virtual void terminate() = 0;
  // Frees what discarded instances left behind (their linear memories) now rather than at the
  // engine's next collection. Costs a full collection: called after a faulted instance is dropped.
  virtual void collect_garbage() = 0;
};

struct EngineOptions {
  // Limit of each isolate's own heap (not wasm memory); past it the running call is terminated.
  uint64_t isolate_heap_bytes = uint64_t{128} << 20;
};

class WasmEngine {
 public:
  virtual ~WasmEngine() = default;
  // Validates and compiles; the result is shared by every isolate.
  virtual Expected<std::shared_ptr<const WasmModule>> compile(std::span<const uint8_t> bytes) = 0;
  // A new isolate for the calling thread.
  virtual Expected<std::unique_ptr<WasmIsolate>> create_isolate() = 0;
};

// The V8 engine. V8 itself is initialized once per process (its platform cannot be re-created);
// every engine object shares it.
Expected<std::unique_ptr<WasmEngine>> make_v8_engine(const EngineOptions& options = {});

}  // namespace realm::sandbox
