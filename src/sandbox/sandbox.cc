#include "sandbox/sandbox.h"

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iterator>
#include <list>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <shared_mutex>
#include <thread>

#include "sandbox/host_state.h"

namespace realm::sandbox {

std::string_view request_error_name(RequestError e) {
  switch (e) {
    case RequestError::NONE:
      return "none";
    case RequestError::UNKNOWN_TENANT:
      return "unknown tenant";
    case RequestError::BAD_MODULE:
      return "bad module";
    case RequestError::TRAP:
      return "guest trapped";
    case RequestError::TIMEOUT:
      return "time limit exceeded";
    case RequestError::MEMORY_LIMIT:
      return "memory limit reached";
    case RequestError::STACK_OVERFLOW:
      return "stack overflow";
    case RequestError::ENGINE_LIMIT:
      return "engine heap limit reached";
    case RequestError::ABI_MISUSE:
      return "ABI misuse";
    case RequestError::GUEST_ERROR:
      return "guest error";
    case RequestError::TOKEN_LIMIT:
      return "token budget exhausted";
    case RequestError::OUTPUT_LIMIT:
      return "output limit exceeded";
    case RequestError::HOST_WORK_LIMIT:
      return "host work limit exceeded";
    case RequestError::PROC_EXIT:
      return "guest exited";
    case RequestError::CANCELLED:
      return "cancelled";
    case RequestError::INTERNAL:
      return "internal error";
  }
  return "?";
}

namespace {

// " (the guest's memory is at its cap of N MiB)" when it is, else "".
std::string memory_note(const InstanceState& st) {
  if (!st.memory_at_cap()) return "";
  return " (the guest's memory is at its cap of " +
         std::to_string(st.wasm->memory_max_bytes() >> 20) + " MiB)";
}

RequestResult cancelled_result(const char* why) {
  RequestResult r;
  r.error = RequestError::CANCELLED;
  r.message = std::string("cancelled: ") + why;
  return r;
}

double ms_between(std::chrono::steady_clock::time_point a,
                  std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// The exports every guest must have, with their signatures (docs/abi.md).
struct RequiredExport {
  const char* name;
  FuncType type;
};
const std::vector<RequiredExport>& required_exports() {
  using V = ValType;
  static const std::vector<RequiredExport> r = {
      {"_initialize", {{}, {}}},
      {"realm_abi_version", {{}, {V::I32}}},
      {"realm_alloc", {{V::I32}, {V::I32}}},
      {"realm_free", {{V::I32}, {}}},
      {"realm_new", {{}, {V::I32}}},
      {"realm_delete", {{V::I32}, {V::I32}}},
      {"realm_generate", {{V::I32, V::I32, V::I32}, {V::I32}}},
      {"realm_last_error", {{V::I32, V::I32, V::I32}, {V::I32}}},
  };
  return r;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Workers and instances.

struct Job {
  std::shared_ptr<const Tenant> tenant;
  std::string tenant_id;
  std::string request;
  EventCallback on_event;
  std::shared_ptr<std::atomic<bool>> cancel;
  std::promise<RequestResult> promise;
};

struct Sandbox::Impl {
  SandboxOptions options;
  std::unique_ptr<WasmEngine> engine;
  std::vector<HostImport> imports;

  mutable std::shared_mutex tenants_mu;
  std::map<std::string, std::shared_ptr<const Tenant>, std::less<>> tenants;
  uint64_t next_tenant_generation = 1;

  mutable std::shared_mutex models_mu;
  std::map<std::string, std::shared_ptr<HostModel>, std::less<>> models;
  // Bumped by remove_model: instances created before hold handles (and guest state) of a model
  // that is gone, so they are replaced at their next request.
  std::atomic<uint64_t> models_epoch{0};

  mutable std::mutex queue_mu;
  // Idle workers, most recently idle last: a new request wakes that one, whose isolate and tenant
  // instances are the warmest (waking any waiter would cycle requests through every worker and
  // create a new instance on each).
  std::vector<int> idle;
  std::vector<std::unique_ptr<std::condition_variable>> worker_cv;
  std::deque<std::unique_ptr<Job>> queue;
  bool stop = false;
  std::vector<std::thread> workers;
  std::atomic<uint64_t> instances_created{0};

  std::shared_ptr<const HostModel> find_model(std::string_view name) const {
    std::shared_lock lock(models_mu);
    auto it = models.find(name);
    return it == models.end() ? nullptr : it->second;
  }

  void worker_loop(int index);
  RequestResult run_job(WasmIsolate& isolate, Job& job,
                        std::list<std::unique_ptr<InstanceState>>& cache, bool& drop_isolate);
  Expected<std::unique_ptr<InstanceState>> create_instance(WasmIsolate& isolate,
                                                           std::shared_ptr<const Tenant> tenant,
                                                           RequestResult& r);
  void log(const std::string& tenant, int level, std::string_view text) {
    if (options.log) {
      options.log(tenant, level, text);
    } else {
      std::fprintf(stderr, "[tenant %s] %.*s%s", tenant.c_str(), static_cast<int>(text.size()),
                   text.data(), text.empty() || text.back() != '\n' ? "\n" : "");
    }
  }
};

namespace {

// Maps a failed call to the request error that names its cause.
void set_fault(RequestResult& r, const CallResult& c, std::string_view where,
               const InstanceState& st) {
  switch (c.fault) {
    case Fault::TIMEOUT:
      r.error = RequestError::TIMEOUT;
      break;
    case Fault::STACK_OVERFLOW:
      r.error = RequestError::STACK_OVERFLOW;
      break;
    case Fault::HEAP_LIMIT:
      r.error = RequestError::ENGINE_LIMIT;
      break;
    case Fault::LINK:
      r.error = RequestError::BAD_MODULE;
      break;
    case Fault::HOST:
      r.error =
          st.host_trap_kind != RequestError::NONE ? st.host_trap_kind : RequestError::INTERNAL;
      break;
    default:
      r.error = RequestError::TRAP;
      break;
  }
  std::string msg =
      std::string(request_error_name(r.error)) + " in " + std::string(where) + ": " + c.message;
  // A trap with the memory at its cap is (almost always) the memory bomb's allocation failure.
  if (r.error == RequestError::TRAP && st.memory_at_cap()) {
    r.error = RequestError::MEMORY_LIMIT;
    msg = "memory limit reached (" + std::to_string(st.wasm->memory_max_bytes() >> 20) +
          " MiB) in " + std::string(where) + ": the guest trapped: " + c.message;
  }
  r.message = std::move(msg);
}

}  // namespace

Expected<std::unique_ptr<InstanceState>> Sandbox::Impl::create_instance(
    WasmIsolate& isolate, std::shared_ptr<const Tenant> tenant, RequestResult& r) {
  const auto t0 = std::chrono::steady_clock::now();
  auto st = std::make_unique<InstanceState>();
  st->sandbox = this;
  st->tenant = tenant;
  st->limits = options.limits.get();
  st->models_epoch = models_epoch.load();
  InstanceOptions io;
  io.memory_max_bytes = options.limits->memory_bytes(tenant->record);
  io.user = st.get();
  auto inst = isolate.instantiate(tenant->module, imports, io);
  if (!inst) {
    r.error = RequestError::BAD_MODULE;
    r.message = "cannot instantiate the tenant's module: " + inst.error().message;
    return make_error(r.message);
  }
  st->wasm = std::move(*inst);
  const auto limit = options.limits->call_time(tenant->record);
  auto fail = [&](const CallResult& c, std::string_view where) -> Error {
    set_fault(r, c, where, *st);
    return make_error(r.message);
  };
  CallResult c = st->wasm->call("_initialize", {}, limit);
  if (!c.ok()) return fail(c, "_initialize");
  CallResult v = st->wasm->call("realm_abi_version", {}, limit);
  if (!v.ok()) return fail(v, "realm_abi_version");
  if (!v.value || v.value->i32 != 1) {
    r.error = RequestError::ABI_MISUSE;
    r.message = "ABI misuse: realm_abi_version returned " +
                std::to_string(v.value ? v.value->i32 : -1) + ", the host speaks version 1";
    return make_error(r.message);
  }
  CallResult h = st->wasm->call("realm_new", {}, limit);
  if (!h.ok()) return fail(h, "realm_new");
  if (!h.value || h.value->i32 <= 0) {
    std::string why = st->last_error(0);
    r.error = RequestError::GUEST_ERROR;
    r.message = "guest error: realm_new returned " + std::to_string(h.value ? h.value->i32 : 0) +
                (why.empty() ? "" : ": " + why) + memory_note(*st);
    return make_error(r.message);
  }
  st->guest_handle = h.value->i32;
  r.instance_created = true;
  r.instance_ready_ms = ms_between(t0, std::chrono::steady_clock::now());
  instances_created.fetch_add(1, std::memory_order_relaxed);
  return st;
}

RequestResult Sandbox::Impl::run_job(WasmIsolate& isolate, Job& job,
                                     std::list<std::unique_ptr<InstanceState>>& cache,
                                     bool& drop_isolate) {
  RequestResult r;
  const auto t_start = std::chrono::steady_clock::now();
  if (!job.tenant) {
    r.error = RequestError::UNKNOWN_TENANT;
    r.message = "unknown tenant '" + job.tenant_id + "'";
    return r;
  }
  // This worker's instance of the tenant (current module generation), else a new one.
  std::unique_ptr<InstanceState> st;
  for (auto it = cache.begin(); it != cache.end(); ++it) {
    if ((*it)->tenant->record.id == job.tenant->record.id) {
      if ((*it)->tenant->generation == job.tenant->generation &&
          (*it)->models_epoch == models_epoch.load()) {
        st = std::move(*it);
      }
      cache.erase(it);
      break;
    }
  }
  if (!st) {
    auto created = create_instance(isolate, job.tenant, r);
    if (!created) {
      r.instance_discarded = true;
      drop_isolate = r.error == RequestError::ENGINE_LIMIT;
      return r;
    }
    st = std::move(*created);
  }
  const TenantRecord& rec = st->tenant->record;
  const auto limit = options.limits->call_time(rec);

  Request req;
  req.on_event = &job.on_event;
  req.cancel = job.cancel;
  req.token_budget = options.limits->token_budget(rec);
  req.max_output = options.limits->max_output_bytes(rec);
  req.max_event = options.limits->max_event_bytes(rec);
  req.max_log = options.limits->max_log_bytes(rec);
  req.host_ns_budget =
      std::chrono::duration_cast<std::chrono::nanoseconds>(options.limits->host_time(rec)).count();
  st->begin_request(&req);

  bool discard = false;
  auto fault = [&](const CallResult& c, std::string_view where) {
    set_fault(r, c, where, *st);
    discard = true;
  };
  const uint64_t len = job.request.size();
  do {
    if (len > INT32_MAX) {
      r.error = RequestError::INTERNAL;
      r.message = "the request is too large (" + std::to_string(len) + " bytes)";
      break;
    }
    CallResult a = st->wasm->call(
        "realm_alloc", std::vector<Val>{Val::make_i32(static_cast<int32_t>(len))}, limit);
    if (!a.ok()) {
      fault(a, "realm_alloc");
      break;
    }
    const int32_t ptr = a.value ? a.value->i32 : 0;
    auto span = st->wasm->memory().span(guest_u32(ptr), len);
    if (ptr == 0 || !span) {
      r.error = st->memory_at_cap() ? RequestError::MEMORY_LIMIT : RequestError::ABI_MISUSE;
      r.message = r.error == RequestError::MEMORY_LIMIT
                      ? "memory limit reached: realm_alloc(" + std::to_string(len) + ") returned " +
                            std::to_string(ptr) + " with the guest memory at its cap"
                      : "ABI misuse: realm_alloc(" + std::to_string(len) + ") returned " +
                            std::to_string(static_cast<uint32_t>(ptr)) +
                            (ptr == 0 ? "" : ", outside the guest memory");
      discard = true;
      break;
    }
    std::memcpy(span->data(), job.request.data(), len);
    const std::vector<Val> args = {Val::make_i32(st->guest_handle), Val::make_i32(ptr),
                                   Val::make_i32(static_cast<int32_t>(len))};
    st->in_generate = true;
    CallResult g = st->wasm->call("realm_generate", args, limit);
    st->in_generate = false;
    if (!g.ok()) {
      fault(g, "realm_generate");
      break;
    }
    CallResult f = st->wasm->call("realm_free", std::vector<Val>{Val::make_i32(ptr)}, limit);
    if (!f.ok()) {
      fault(f, "realm_free");
      break;
    }
    const int32_t status = g.value ? g.value->i32 : REALM_E_INTERNAL;
    if (req.limit_error != RequestError::NONE) {
      // A limit was hit during the request: that is the cause, whatever the guest returned.
      r.error = req.limit_error;
      r.message = std::string(request_error_name(req.limit_error)) + ": " + req.limit_message;
    } else if (req.cancelled()) {
      r.error = RequestError::CANCELLED;
      r.message = "cancelled: the client went away";
    } else if (status > 0) {
      r.error = RequestError::ABI_MISUSE;
      r.message = "ABI misuse: realm_generate returned " + std::to_string(status) +
                  " (0 is success, a negative value an error status)";
    } else if (status < 0) {
      std::string why = st->last_error(st->guest_handle);
      // The guest's own error, even when its memory is full (a note says so).
      r.error = RequestError::GUEST_ERROR;
      r.message = std::string(request_error_name(r.error)) + ": realm_generate returned " +
                  std::to_string(status) + " (" + realm_status_name(status) + ")" +
                  (why.empty() ? "" : ": " + why) + memory_note(*st) +
                  (st->host_error.empty() || why.find(st->host_error) != std::string::npos
                       ? ""
                       : " (host: " + st->host_error + ")");
    } else if (!req.final_emitted) {
      r.error = RequestError::ABI_MISUSE;
      r.message = "ABI misuse: realm_generate returned " + std::to_string(status) +
                  " without emitting a final result (emit kind 2)";
    }
  } while (false);

  if (st->faulted) discard = true;  // realm_last_error trapped or timed out
  r.final_json = req.final_json;
  r.n_events = req.n_events;
  r.output_bytes = req.output_bytes;
  r.tokens_decoded = req.tokens_used;
  r.prompt_tokens =
      req.tokens_before_first_event >= 0 ? req.tokens_before_first_event : req.tokens_used;
  r.cached_tokens = std::min(req.cached_tokens, r.prompt_tokens);
  r.decode_ms = req.decode_ms;
  st->end_request();
  if (r.error == RequestError::ENGINE_LIMIT) drop_isolate = true;
  if (discard) {
    r.instance_discarded = true;
    r.message += " (instance discarded)";
  } else {
    cache.push_front(std::move(st));
    while (cache.size() > static_cast<size_t>(std::max(1, options.instances_per_worker))) {
      cache.pop_back();
    }
  }
  r.guest_ms = ms_between(t_start, std::chrono::steady_clock::now()) - r.decode_ms;
  return r;
}

void Sandbox::Impl::worker_loop(int index) {
  std::unique_ptr<WasmIsolate> isolate;
  std::list<std::unique_ptr<InstanceState>> cache;  // most recently used first
  for (;;) {
    std::unique_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(queue_mu);
      while (!stop && queue.empty()) {
        idle.push_back(index);
        worker_cv[static_cast<size_t>(index)]->wait(lock);
        if (auto it = std::find(idle.begin(), idle.end(), index); it != idle.end()) idle.erase(it);
      }
      if (stop) break;  // the destructor ends the queued jobs
      job = std::move(queue.front());
      queue.pop_front();
    }
    if (job->cancel->load()) {  // cancelled while it waited: never started
      job->promise.set_value(cancelled_result("cancelled before it started"));
      continue;
    }
    if (!isolate) {
      auto iso = engine->create_isolate();
      if (!iso) {
        RequestResult r;
        r.error = RequestError::INTERNAL;
        r.message = "cannot create an isolate: " + iso.error().message;
        job->promise.set_value(std::move(r));
        continue;
      }
      isolate = std::move(*iso);
    }
    bool drop_isolate = false;
    RequestResult r;
    try {
      r = run_job(*isolate, *job, cache, drop_isolate);
    } catch (const std::exception& e) {
      // A host fault outside guest code (host functions catch their own): the request fails, and
      // this worker starts over with a fresh isolate, since its state may be half-updated.
      r = RequestResult{};
      r.error = RequestError::INTERNAL;
      r.message = std::string("internal error: ") + e.what();
      r.instance_discarded = true;
      drop_isolate = true;
    }
    if (drop_isolate) {
      // The isolate's heap hit its limit: start over with a fresh one.
      cache.clear();
      isolate.reset();
    } else if (r.instance_discarded) {
      // A memory bomb's 64 MiB would otherwise stay until the engine's next collection.
      isolate->collect_garbage();
    }
    job->promise.set_value(std::move(r));
  }
  cache.clear();
  isolate.reset();
}

// ---------------------------------------------------------------------------------------------

Sandbox::Sandbox(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Sandbox::~Sandbox() {
  std::deque<std::unique_ptr<Job>> queued;
  {
    std::lock_guard<std::mutex> lock(impl_->queue_mu);
    impl_->stop = true;
    queued.swap(impl_->queue);
  }
  for (auto& cv : impl_->worker_cv) cv->notify_all();
  // Queued requests are not run: they end as cancelled. Running ones finish first.
  for (auto& job : queued) job->promise.set_value(cancelled_result("the sandbox is shutting down"));
  for (auto& t : impl_->workers) t.join();
}

void Sandbox::cancel(const std::shared_ptr<std::atomic<bool>>& flag) {
  if (!flag) return;
  flag->store(true);
  std::vector<std::unique_ptr<Job>> removed;
  {
    std::lock_guard<std::mutex> lock(impl_->queue_mu);
    for (auto it = impl_->queue.begin(); it != impl_->queue.end();) {
      if ((*it)->cancel == flag) {
        removed.push_back(std::move(*it));
        it = impl_->queue.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& job : removed) job->promise.set_value(cancelled_result("cancelled before it started"));
}

size_t Sandbox::queued() const {
  std::lock_guard<std::mutex> lock(impl_->queue_mu);
  return impl_->queue.size();
}

Expected<std::unique_ptr<Sandbox>> Sandbox::create(SandboxOptions options) {
  auto impl = std::make_unique<Impl>();
  if (options.n_workers < 1 || options.n_workers > 4096) {
    return make_error("n_workers must be in 1..4096, got ", options.n_workers);
  }
  if (!options.limits) options.limits = std::make_shared<RecordLimits>();
  auto engine = make_v8_engine(options.engine);
  if (!engine) return engine.take_error();
  impl->engine = std::move(*engine);
  impl->options = std::move(options);
  impl->imports = make_host_imports();
  Impl* p = impl.get();
  for (int i = 0; i < p->options.n_workers; ++i) {
    p->worker_cv.push_back(std::make_unique<std::condition_variable>());
  }
  for (int i = 0; i < p->options.n_workers; ++i) {
    p->workers.emplace_back([p, i] { p->worker_loop(i); });
  }
  return std::unique_ptr<Sandbox>(new Sandbox(std::move(impl)));
}

Status Sandbox::add_model(const std::string& name, std::shared_ptr<const model::Model> model,
                          engine::EngineOptions engine_options, const std::string& chat_template) {
  if (name.empty()) return make_error("a model needs a name");
  auto hm = HostModel::create(name, std::move(model), engine_options, chat_template);
  if (!hm) return hm.take_error();
  std::unique_lock lock(impl_->models_mu);
  if (impl_->models.count(name)) return make_error("a model named '", name, "' is already shared");
  impl_->models.emplace(name, std::move(*hm));
  return {};
}

Status Sandbox::remove_model(const std::string& name) {
  std::shared_ptr<HostModel> gone;
  {
    std::unique_lock lock(impl_->models_mu);
    auto it = impl_->models.find(name);
    if (it == impl_->models.end()) {
      return make_error(ErrorCode::NOT_FOUND, "no shared model named '", name, "'");
    }
    gone = std::move(it->second);
    impl_->models.erase(it);
    ++impl_->models_epoch;
  }
  return {};  // `gone` is freed here unless a request in flight still holds it
}

Expected<Sandbox::PromptInfo> Sandbox::prompt_tokens(const std::string& model,
                                                     const nlohmann::json& request) const {
  std::shared_ptr<HostModel> hm;
  {
    std::shared_lock lock(impl_->models_mu);
    auto it = impl_->models.find(model);
    if (it == impl_->models.end()) {
      return make_error(ErrorCode::NOT_FOUND, "no model named '", model, "'");
    }
    hm = it->second;
  }
  PromptInfo info;
  info.n_ctx_train = static_cast<int64_t>(hm->model->hparams().n_ctx_train);
  try {
    if (auto m = request.find("messages"); m != request.end() && !m->is_null()) {
      auto text = hm->render_chat(m->dump(), true);
      if (!text) return text.take_error();
      info.ids = hm->prompt_ids(*text, true);
    } else {
      info.ids = hm->prompt_ids(request.value("prompt", std::string()), false);
    }
  } catch (const std::exception& e) {
    return make_error("the request's prompt: ", e.what());
  }
  return info;
}

Expected<std::string> Sandbox::token_piece(const std::string& model, int32_t id) const {
  std::shared_lock lock(impl_->models_mu);
  auto it = impl_->models.find(model);
  if (it == impl_->models.end())
    return make_error(ErrorCode::NOT_FOUND, "no model named '", model, "'");
  const auto& tok = *it->second->tokenizer;
  if (!tok.vocab().valid(id)) return make_error("token id ", id, " is out of the vocabulary");
  return tok.token_to_piece(id, true);
}

Expected<std::shared_ptr<const WasmModule>> Sandbox::compile_module(
    std::span<const uint8_t> bytes) {
  auto m = impl_->engine->compile(bytes);
  if (!m) return m.take_error();
  const ModuleInfo& info = (*m)->info();
  for (const auto& req : required_exports()) {
    auto t = info.export_func_type(req.name);
    if (!t) return make_error("the module does not export ", req.name, " (guest ABI v1)");
    if (!(*t == req.type)) {
      return make_error("the module exports ", req.name, " as ", func_type_string(*t),
                        "; guest ABI v1 wants ", func_type_string(req.type));
    }
  }
  for (const auto& e : info.imports) {
    if (e.kind == ExternKind::MEMORY) continue;
    bool found = false;
    for (const auto& h : impl_->imports) {
      if (h.module == e.module && h.name == e.name && e.kind == ExternKind::FUNC) {
        if (!(h.type == info.types[e.type_index])) {
          return make_error("the module imports ", e.module, ".", e.name, " as ",
                            func_type_string(info.types[e.type_index]), "; the host provides ",
                            func_type_string(h.type));
        }
        found = true;
        break;
      }
    }
    if (!found) {
      return make_error("the module imports unknown host ", extern_kind_name(e.kind), " ", e.module,
                        ".", e.name);
    }
  }
  if (info.start_function) {
    return make_error("the module has a start section (function ", *info.start_function,
                      "), which would run guest code while it is instantiated; guest ABI v1 "
                      "modules are WASI reactors and initialize in _initialize");
  }
  if (info.defines_memory || !info.imported_memory()) {
    return make_error("the module must import its memory as env.memory (-Wl,--import-memory)");
  }
  return m;
}

Expected<std::shared_ptr<const WasmModule>> Sandbox::load_module(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error("cannot open guest module ", path);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  if (in.bad()) return make_error("cannot read guest module ", path);
  auto m = compile_module(bytes);
  if (!m) return make_error(path, ": ", m.error().message);
  return m;
}

Status Sandbox::add_tenant(TenantRecord record, std::shared_ptr<const WasmModule> module) {
  if (record.id.empty()) return make_error("a tenant needs an id");
  if (!module) return make_error("tenant '", record.id, "' has no module");
  std::unique_lock lock(impl_->tenants_mu);
  auto t = std::make_shared<Tenant>();
  t->record = std::move(record);
  t->module = std::move(module);
  t->generation = impl_->next_tenant_generation++;
  const std::string id = t->record.id;
  impl_->tenants[id] = std::move(t);
  return {};
}

std::future<RequestResult> Sandbox::submit(const std::string& tenant, std::string request_json,
                                           EventCallback on_event,
                                           std::shared_ptr<std::atomic<bool>> cancel) {
  auto job = std::make_unique<Job>();
  {
    std::shared_lock lock(impl_->tenants_mu);
    auto it = impl_->tenants.find(tenant);
    if (it != impl_->tenants.end()) job->tenant = it->second;
  }
  job->tenant_id = tenant;
  job->request = std::move(request_json);
  job->on_event = std::move(on_event);
  job->cancel = cancel ? std::move(cancel) : std::make_shared<std::atomic<bool>>(false);
  auto future = job->promise.get_future();
  {
    std::lock_guard<std::mutex> lock(impl_->queue_mu);
    impl_->queue.push_back(std::move(job));
    if (!impl_->idle.empty()) {
      const int w = impl_->idle.back();
      impl_->idle.pop_back();
      impl_->worker_cv[static_cast<size_t>(w)]->notify_one();
    }
  }
  return future;
}

RequestResult Sandbox::run_request(const std::string& tenant, std::string request_json,
                                   EventCallback on_event) {
  return submit(tenant, std::move(request_json), std::move(on_event)).get();
}

const Limits& Sandbox::limits() const {
  return *impl_->options.limits;
}

int Sandbox::n_workers() const {
  return impl_->options.n_workers;
}

uint64_t Sandbox::instances_created() const {
  return impl_->instances_created.load();
}

Expected<engine::EngineStats> Sandbox::model_stats(std::string_view model) const {
  auto m = impl_->find_model(model);
  if (!m) return make_error("no shared model named '", model, "'");
  return m->engine->stats();
}

std::vector<std::string> host_import_names() {
  std::vector<std::string> out;
  for (const auto& h : make_host_imports()) out.push_back(h.module + "." + h.name);
  return out;
}

// Host-state hooks that need the Impl (declared in host_state.h).
std::shared_ptr<const HostModel> find_host_model(Sandbox::Impl* impl, std::string_view name) {
  return impl->find_model(name);
}

void tenant_log(Sandbox::Impl* impl, const std::string& tenant, int level, std::string_view text) {
  impl->log(tenant, level, text);
}

model::KvType kv_type(Sandbox::Impl* impl) {
  return impl->options.kv_type;
}

}  // namespace realm::sandbox
