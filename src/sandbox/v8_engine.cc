// The V8 implementation of the engine interface (Debian libnode108: V8 10.2). Patterns from
// notes/v8-embedding.md: trap handler on, modules compiled once and shared across isolates via
// CompiledWasmModule, guest memory created host-side with a maximum, a NearHeapLimitCallback, and
// termination from the watchdog's ticker thread.
#include <libplatform/libplatform.h>
#include <v8.h>

#include <atomic>
#include <map>
#include <mutex>

#include "sandbox/wasm_engine.h"
#include "sandbox/watchdog.h"

namespace realm::sandbox {

std::string_view fault_name(Fault f) {
  switch (f) {
    case Fault::NONE:
      return "none";
    case Fault::TRAP:
      return "trap";
    case Fault::STACK_OVERFLOW:
      return "stack overflow";
    case Fault::TIMEOUT:
      return "time limit";
    case Fault::HEAP_LIMIT:
      return "engine heap limit";
    case Fault::HOST:
      return "host";
    case Fault::LINK:
      return "link";
  }
  return "?";
}

namespace {

constexpr uint64_t kPageBytes = 65536;

// V8's process-wide state. V8 cannot be initialized twice, so this lives for the whole process
// (immutable after the first call; not a mutable singleton).
v8::Platform* v8_platform() {
  static v8::Platform* platform = [] {
    // Background compilation (tier-up) threads; the foreground work is the workers'.
    auto p = v8::platform::NewDefaultPlatform(1);
    v8::V8::InitializePlatform(p.get());
    v8::V8::EnableWebAssemblyTrapHandler(true);
    v8::V8::Initialize();
    return p.release();
  }();
  return platform;
}

std::string to_utf8(v8::Isolate* iso, v8::Local<v8::Value> v) {
  if (v.IsEmpty()) return "";
  v8::String::Utf8Value s(iso, v);
  return *s ? std::string(*s, static_cast<size_t>(s.length())) : std::string("?");
}

v8::Local<v8::String> v8_str(v8::Isolate* iso, std::string_view s) {
  return v8::String::NewFromUtf8(iso, s.data(), v8::NewStringType::kNormal,
                                 static_cast<int>(s.size()))
      .ToLocalChecked();
}

class V8Module final : public WasmModule {
 public:
  V8Module(ModuleInfo info, v8::CompiledWasmModule compiled)
      : WasmModule(std::move(info)), compiled_(std::move(compiled)) {}
  const v8::CompiledWasmModule& compiled() const { return compiled_; }

 private:
  v8::CompiledWasmModule compiled_;
};

class V8Isolate;

class V8Instance final : public WasmInstance, public HostCallContext {
 public:
  struct Binding {
    V8Instance* instance;
    const HostImport* import;
  };

  V8Instance(V8Isolate* owner, std::shared_ptr<const WasmModule> module, uint64_t memory_max,
             void* user)
      : owner_(owner), module_(std::move(module)), memory_max_(memory_max), user_(user) {}
  ~V8Instance() override;

  CallResult call(std::string_view export_name, std::span<const Val> args,
                  std::chrono::nanoseconds time_limit) override;
  GuestMemory memory() override;
  uint64_t memory_max_bytes() const override { return memory_max_; }
  void* user() override { return user_; }

  static void host_callback(const v8::FunctionCallbackInfo<v8::Value>& info);

 private:
  friend class V8Isolate;
  V8Isolate* owner_;
  std::shared_ptr<const WasmModule> module_;
  uint64_t memory_max_;
  void* user_;
  std::vector<std::unique_ptr<Binding>> bindings_;
  v8::Global<v8::Object> instance_;
  v8::Global<v8::Object> exports_;
  v8::Global<v8::WasmMemoryObject> memory_;
  std::map<std::string, v8::Global<v8::Function>, std::less<>> functions_;
  std::string host_fault_;
  bool host_faulted_ = false;
};

class V8Isolate final : public WasmIsolate {
 public:
  V8Isolate(const EngineOptions& options, std::shared_ptr<Watchdog> watchdog)
      : watchdog_(std::move(watchdog)) {
    allocator_.reset(v8::ArrayBuffer::Allocator::NewDefaultAllocator());
    v8::Isolate::CreateParams params;
    params.array_buffer_allocator = allocator_.get();
    params.constraints.ConfigureDefaultsFromHeapSize(0, options.isolate_heap_bytes);
    isolate_ = v8::Isolate::New(params);
    isolate_->AddNearHeapLimitCallback(&V8Isolate::near_heap_limit, this);
    v8::Isolate::Scope iscope(isolate_);
    v8::HandleScope hs(isolate_);
    auto ctx = v8::Context::New(isolate_);
    context_.Reset(isolate_, ctx);
    v8::Context::Scope cs(ctx);
    auto wasm = ctx->Global()->Get(ctx, v8_str(isolate_, "WebAssembly")).ToLocalChecked();
    auto wasm_obj = wasm.As<v8::Object>();
    memory_ctor_.Reset(
        isolate_,
        wasm_obj->Get(ctx, v8_str(isolate_, "Memory")).ToLocalChecked().As<v8::Function>());
    instance_ctor_.Reset(
        isolate_,
        wasm_obj->Get(ctx, v8_str(isolate_, "Instance")).ToLocalChecked().As<v8::Function>());
    v8::Isolate* iso = isolate_;
    slot_ = watchdog_->add_slot([iso] { iso->TerminateExecution(); });
  }

  ~V8Isolate() override {
    watchdog_->remove_slot(slot_);
    {
      v8::Isolate::Scope iscope(isolate_);
      modules_.clear();
      memory_ctor_.Reset();
      instance_ctor_.Reset();
      context_.Reset();
    }
    isolate_->Dispose();
  }

  Expected<std::unique_ptr<WasmInstance>> instantiate(
      const std::shared_ptr<const WasmModule>& module, const std::vector<HostImport>& imports,
      const InstanceOptions& options) override;

  void terminate() override { isolate_->TerminateExecution(); }
  void collect_garbage() override {
    v8::Isolate::Scope iscope(isolate_);
    isolate_->LowMemoryNotification();
  }

  v8::Isolate* isolate() const { return isolate_; }
  WatchSlot* slot() const { return slot_; }
  v8::Local<v8::Context> context() const { return context_.Get(isolate_); }
  bool take_heap_limit_hit() { return heap_limit_hit_.exchange(false); }

 private:
  static size_t near_heap_limit(void* data, size_t current, size_t /*initial*/) {
    auto* self = static_cast<V8Isolate*>(data);
    self->heap_limit_hit_ = true;
    self->isolate_->TerminateExecution();
    // Room for the termination to unwind; the sandbox discards this isolate afterwards.
    return current * 2;
  }

  std::shared_ptr<Watchdog> watchdog_;
  std::unique_ptr<v8::ArrayBuffer::Allocator> allocator_;
  v8::Isolate* isolate_ = nullptr;
  v8::Global<v8::Context> context_;
  v8::Global<v8::Function> memory_ctor_, instance_ctor_;
  struct ModuleEntry {
    std::shared_ptr<const WasmModule> module;  // keeps the key alive
    v8::Global<v8::WasmModuleObject> object;
  };
  std::map<const WasmModule*, ModuleEntry> modules_;
  WatchSlot* slot_ = nullptr;
  std::atomic<bool> heap_limit_hit_{false};
};

V8Instance::~V8Instance() {
  v8::Isolate::Scope iscope(owner_->isolate());
  functions_.clear();
  memory_.Reset();
  exports_.Reset();
  instance_.Reset();
}

GuestMemory V8Instance::memory() {
  v8::Isolate* iso = owner_->isolate();
  v8::Isolate::Scope iscope(iso);
  v8::HandleScope hs(iso);
  auto store = memory_.Get(iso)->Buffer()->GetBackingStore();
  // The memory is reserved with its maximum up front (V8 grows it in place), so the pointer stays
  // valid while the instance lives; the size is re-read on every call.
  return GuestMemory(static_cast<uint8_t*>(store->Data()), store->ByteLength());
}

void V8Instance::host_callback(const v8::FunctionCallbackInfo<v8::Value>& info) {
  auto* b = static_cast<Binding*>(info.Data().As<v8::External>()->Value());
  V8Instance* self = b->instance;
  const HostImport& imp = *b->import;
  v8::Isolate* iso = info.GetIsolate();
  WatchSlot* slot = self->owner_->slot();
  // Time in host functions is not guest time. A slot that already fired means termination is
  // pending: do nothing, it lands when control returns to wasm.
  if (!slot->pause()) return;
  auto ctx = iso->GetCurrentContext();
  Val args[16];
  const size_t n = std::min<size_t>(imp.type.params.size(), 16);
  for (size_t i = 0; i < n; ++i) {
    v8::Local<v8::Value> v = i < static_cast<size_t>(info.Length())
                                 ? info[static_cast<int>(i)]
                                 : v8::Undefined(iso).As<v8::Value>();
    args[i].type = imp.type.params[i];
    switch (imp.type.params[i]) {
      case ValType::I32:
        args[i].i32 = v->Int32Value(ctx).FromMaybe(0);
        break;
      case ValType::I64:
        args[i].i64 = v->IsBigInt() ? v.As<v8::BigInt>()->Int64Value() : 0;
        break;
      case ValType::F32:
        args[i].f32 = static_cast<float>(v->NumberValue(ctx).FromMaybe(0));
        break;
      case ValType::F64:
        args[i].f64 = v->NumberValue(ctx).FromMaybe(0);
        break;
      default:
        break;
    }
  }
  // No C++ exception may unwind through V8's frames: a host function that throws (an allocation
  // failure, a throwing event callback) becomes a host fault of this call, which traps the guest.
  HostResult r = make_error(ErrorCode::INTERNAL, "not run");
  try {
    r = imp.fn(*self, std::span<const Val>(args, n));
  } catch (const std::exception& e) {
    r = make_error(ErrorCode::INTERNAL, "host fault in ", imp.module, ".", imp.name, ": ",
                   e.what());
  } catch (...) {
    r = make_error(ErrorCode::INTERNAL, "host fault in ", imp.module, ".", imp.name,
                   ": unknown exception");
  }
  slot->resume();
  if (!r) {
    self->host_faulted_ = true;
    self->host_fault_ = r.error().message;
    iso->ThrowException(v8::Exception::Error(v8_str(iso, self->host_fault_)));
    return;
  }
  if (imp.type.results.empty()) return;
  switch (imp.type.results[0]) {
    case ValType::I32:
      info.GetReturnValue().Set(r->i32);
      break;
    case ValType::I64:
      info.GetReturnValue().Set(v8::BigInt::New(iso, r->i64));
      break;
    case ValType::F32:
      info.GetReturnValue().Set(static_cast<double>(r->f32));
      break;
    case ValType::F64:
      info.GetReturnValue().Set(r->f64);
      break;
    default:
      break;
  }
}

CallResult V8Instance::call(std::string_view export_name, std::span<const Val> args,
                            std::chrono::nanoseconds time_limit) {
  v8::Isolate* iso = owner_->isolate();
  v8::Isolate::Scope iscope(iso);
  v8::HandleScope hs(iso);
  auto ctx = owner_->context();
  v8::Context::Scope cs(ctx);
  CallResult out;
  auto sig = module_->info().export_func_type(export_name);
  if (!sig) {
    out.fault = Fault::LINK;
    out.message = "the module exports no function '" + std::string(export_name) + "'";
    return out;
  }
  v8::Local<v8::Function> fn;
  auto it = functions_.find(export_name);
  if (it != functions_.end()) {
    fn = it->second.Get(iso);
  } else {
    auto v = exports_.Get(iso)->Get(ctx, v8_str(iso, export_name));
    v8::Local<v8::Value> fv;
    if (!v.ToLocal(&fv) || !fv->IsFunction()) {
      out.fault = Fault::LINK;
      out.message = "export '" + std::string(export_name) + "' is not callable";
      return out;
    }
    fn = fv.As<v8::Function>();
    functions_.emplace(std::string(export_name), v8::Global<v8::Function>(iso, fn));
  }
  v8::Local<v8::Value> argv[16];
  const size_t n = std::min<size_t>(args.size(), 16);
  for (size_t i = 0; i < n; ++i) {
    switch (args[i].type) {
      case ValType::I32:
        argv[i] = v8::Integer::New(iso, args[i].i32);
        break;
      case ValType::I64:
        argv[i] = v8::BigInt::New(iso, args[i].i64);
        break;
      case ValType::F32:
        argv[i] = v8::Number::New(iso, args[i].f32);
        break;
      default:
        argv[i] = v8::Number::New(iso, args[i].f64);
        break;
    }
  }
  host_faulted_ = false;
  host_fault_.clear();
  v8::TryCatch tc(iso);
  WatchSlot* slot = owner_->slot();
  slot->arm(time_limit);
  v8::MaybeLocal<v8::Value> result =
      fn->Call(ctx, v8::Undefined(iso), static_cast<int>(n), n ? argv : nullptr);
  const bool fired = !slot->disarm();
  const bool heap_hit = owner_->take_heap_limit_hit();
  if (fired || heap_hit || iso->IsExecutionTerminating() || tc.HasTerminated()) {
    iso->CancelTerminateExecution();
  }
  v8::Local<v8::Value> rv;
  if (result.ToLocal(&rv) && !fired && !heap_hit) {
    if (!sig->results.empty()) {
      Val v;
      v.type = sig->results[0];
      switch (v.type) {
        case ValType::I32:
          v.i32 = rv->Int32Value(ctx).FromMaybe(0);
          break;
        case ValType::I64:
          v.i64 = rv->IsBigInt() ? rv.As<v8::BigInt>()->Int64Value() : 0;
          break;
        case ValType::F32:
          v.f32 = static_cast<float>(rv->NumberValue(ctx).FromMaybe(0));
          break;
        default:
          v.f64 = rv->NumberValue(ctx).FromMaybe(0);
          break;
      }
      out.value = v;
    }
    return out;
  }
  if (heap_hit) {
    out.fault = Fault::HEAP_LIMIT;
    out.message = "the isolate's heap reached its limit";
  } else if (fired) {
    out.fault = Fault::TIMEOUT;
    out.message =
        "terminated after " +
        std::to_string(
            std::chrono::duration_cast<std::chrono::milliseconds>(slot->used()).count()) +
        " ms in guest code (limit " +
        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(time_limit).count()) +
        " ms)";
  } else if (host_faulted_) {
    out.fault = Fault::HOST;
    out.message = host_fault_;
  } else {
    std::string msg = tc.HasCaught() ? to_utf8(iso, tc.Exception()) : "terminated";
    out.fault = msg.find("Maximum call stack size exceeded") != std::string::npos
                    ? Fault::STACK_OVERFLOW
                    : Fault::TRAP;
    out.message = std::move(msg);
  }
  return out;
}

Expected<std::unique_ptr<WasmInstance>> V8Isolate::instantiate(
    const std::shared_ptr<const WasmModule>& module, const std::vector<HostImport>& imports,
    const InstanceOptions& options) {
  const ModuleInfo& info = module->info();
  if (info.defines_memory) {
    return make_error(
        "the module defines its own memory; guests must import it as env.memory "
        "(link with -Wl,--import-memory)");
  }
  const ImportEntry* mem_import = info.imported_memory();
  if (!mem_import) return make_error("the module imports no memory (env.memory)");
  // Every import must be provided, with the same signature.
  std::vector<const HostImport*> resolved(info.imports.size(), nullptr);
  for (size_t i = 0; i < info.imports.size(); ++i) {
    const ImportEntry& e = info.imports[i];
    if (e.kind == ExternKind::MEMORY) {
      if (e.module != "env" || e.name != "memory") {
        return make_error("the module imports its memory as ", e.module, ".", e.name,
                          "; the host provides env.memory");
      }
      continue;
    }
    if (e.kind != ExternKind::FUNC) {
      return make_error("the module imports ", extern_kind_name(e.kind), " ", e.module, ".", e.name,
                        "; the host provides only functions and env.memory");
    }
    const FuncType& want = info.types[e.type_index];
    for (const auto& h : imports) {
      if (h.module == e.module && h.name == e.name) {
        if (!(h.type == want)) {
          return make_error("the module imports ", e.module, ".", e.name, " as ",
                            func_type_string(want), "; the host provides ",
                            func_type_string(h.type));
        }
        resolved[i] = &h;
        break;
      }
    }
    if (!resolved[i]) {
      return make_error("the module imports unknown host function ", e.module, ".", e.name, " ",
                        func_type_string(want));
    }
  }
  const MemoryLimits& ml = mem_import->memory;
  if (ml.shared || ml.memory64) return make_error("shared or 64-bit memories are not supported");
  uint64_t max_pages = options.memory_max_bytes / kPageBytes;
  if (ml.max_pages && *ml.max_pages < max_pages) max_pages = *ml.max_pages;
  if (ml.min_pages > max_pages) {
    return make_error("the module needs ", ml.min_pages * kPageBytes >> 20,
                      " MiB of initial memory, more than the limit of ",
                      options.memory_max_bytes >> 20, " MiB");
  }

  v8::Isolate::Scope iscope(isolate_);
  v8::HandleScope hs(isolate_);
  auto ctx = context();
  v8::Context::Scope cs(ctx);
  v8::TryCatch tc(isolate_);
  auto fail = [&](std::string_view what) -> Error {
    std::string msg = tc.HasCaught() ? to_utf8(isolate_, tc.Exception()) : "failed";
    if (tc.HasTerminated() || isolate_->IsExecutionTerminating()) {
      isolate_->CancelTerminateExecution();
    }
    return make_error(what, ": ", msg);
  };

  // The module object for this isolate, made once from the shared compiled code.
  v8::Local<v8::WasmModuleObject> module_obj;
  auto mit = modules_.find(module.get());
  if (mit != modules_.end()) {
    module_obj = mit->second.object.Get(isolate_);
  } else {
    const auto* vm = dynamic_cast<const V8Module*>(module.get());
    if (!vm) return make_error("the module was not compiled by the V8 engine");
    if (!v8::WasmModuleObject::FromCompiledModule(isolate_, vm->compiled()).ToLocal(&module_obj)) {
      return fail("cannot load the compiled module");
    }
    modules_[module.get()] =
        ModuleEntry{module, v8::Global<v8::WasmModuleObject>(isolate_, module_obj)};
  }

  auto inst = std::make_unique<V8Instance>(this, module, max_pages * kPageBytes, options.user);
  // Memory: created here, with the tenant's cap as its maximum.
  auto desc = v8::Object::New(isolate_);
  (void)desc->Set(ctx, v8_str(isolate_, "initial"),
                  v8::Number::New(isolate_, static_cast<double>(ml.min_pages)));
  (void)desc->Set(ctx, v8_str(isolate_, "maximum"),
                  v8::Number::New(isolate_, static_cast<double>(max_pages)));
  v8::Local<v8::Value> desc_arg = desc;
  v8::Local<v8::Object> memory;
  if (!memory_ctor_.Get(isolate_)->NewInstance(ctx, 1, &desc_arg).ToLocal(&memory)) {
    return fail("cannot create the guest memory");
  }
  auto import_obj = v8::Object::New(isolate_);
  std::map<std::string, v8::Local<v8::Object>> namespaces;
  auto ns = [&](const std::string& name) {
    auto it = namespaces.find(name);
    if (it != namespaces.end()) return it->second;
    auto o = v8::Object::New(isolate_);
    (void)import_obj->Set(ctx, v8_str(isolate_, name), o);
    namespaces.emplace(name, o);
    return o;
  };
  (void)ns("env")->Set(ctx, v8_str(isolate_, "memory"), memory);
  for (size_t i = 0; i < info.imports.size(); ++i) {
    if (!resolved[i]) continue;
    inst->bindings_.push_back(
        std::make_unique<V8Instance::Binding>(V8Instance::Binding{inst.get(), resolved[i]}));
    auto data = v8::External::New(isolate_, inst->bindings_.back().get());
    v8::Local<v8::Function> f;
    if (!v8::Function::New(ctx, &V8Instance::host_callback, data).ToLocal(&f)) {
      return fail("cannot create an import function");
    }
    (void)ns(info.imports[i].module)->Set(ctx, v8_str(isolate_, info.imports[i].name), f);
  }
  // Bound before any guest code can run (a host function reads the instance's memory).
  inst->memory_.Reset(isolate_, memory.As<v8::WasmMemoryObject>());
  v8::Local<v8::Value> argv[2] = {module_obj, import_obj};
  v8::Local<v8::Object> instance;
  if (!instance_ctor_.Get(isolate_)->NewInstance(ctx, 2, argv).ToLocal(&instance)) {
    return fail("instantiation failed");
  }
  v8::Local<v8::Value> exports;
  if (!instance->Get(ctx, v8_str(isolate_, "exports")).ToLocal(&exports) || !exports->IsObject()) {
    return fail("the instance has no exports");
  }
  inst->instance_.Reset(isolate_, instance);
  inst->exports_.Reset(isolate_, exports.As<v8::Object>());
  return std::unique_ptr<WasmInstance>(std::move(inst));
}

class V8Engine final : public WasmEngine {
 public:
  explicit V8Engine(const EngineOptions& options)
      : options_(options), watchdog_(std::make_shared<Watchdog>()) {}

  Expected<std::shared_ptr<const WasmModule>> compile(std::span<const uint8_t> bytes) override {
    auto info = read_module_info(bytes);
    if (!info) return info.take_error();
    for (const auto& e : info->exports) {
      if (e.kind != ExternKind::FUNC) continue;
      auto t = info->export_func_type(e.name);
      if (!t) return make_error("export ", e.name, " refers to an unknown function");
    }
    // A short-lived isolate on the calling thread compiles; the code is then shared by all.
    std::lock_guard<std::mutex> lock(compile_mu_);
    auto iso = create_isolate();
    if (!iso) return iso.take_error();
    auto* vi = static_cast<V8Isolate*>(iso->get());
    v8::Isolate* isolate = vi->isolate();
    v8::Isolate::Scope iscope(isolate);
    v8::HandleScope hs(isolate);
    auto ctx = vi->context();
    v8::Context::Scope cs(ctx);
    v8::TryCatch tc(isolate);
    v8::Local<v8::WasmModuleObject> obj;
    if (!v8::WasmModuleObject::Compile(isolate,
                                       v8::MemorySpan<const uint8_t>(bytes.data(), bytes.size()))
             .ToLocal(&obj)) {
      return make_error("invalid WebAssembly module: ",
                        tc.HasCaught() ? to_utf8(isolate, tc.Exception()) : "compile failed");
    }
    return std::shared_ptr<const WasmModule>(
        std::make_shared<V8Module>(std::move(*info), obj->GetCompiledModule()));
  }

  Expected<std::unique_ptr<WasmIsolate>> create_isolate() override {
    v8_platform();
    return std::unique_ptr<WasmIsolate>(new V8Isolate(options_, watchdog_));
  }

 private:
  EngineOptions options_;
  std::shared_ptr<Watchdog> watchdog_;
  std::mutex compile_mu_;
};

}  // namespace

Expected<std::unique_ptr<WasmEngine>> make_v8_engine(const EngineOptions& options) {
  v8_platform();
  return std::unique_ptr<WasmEngine>(new V8Engine(options));
}

}  // namespace realm::sandbox
