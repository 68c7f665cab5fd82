// The host side of guest ABI v1 (module "realm") and the WASI subset guests link against. Every
// guest pointer/length goes through GuestMemory (one overflow-safe bounds check); guest mistakes
// return REALM_E_* codes (WASI errno values for WASI calls); only exceeded limits trap.
#include <time.h>

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>

#include "sandbox/host_state.h"
#include "util/fault_injection.h"

namespace realm::sandbox {

namespace {

constexpr int32_t kWasiSuccess = 0;
constexpr int32_t kWasiBadf = 8;
constexpr int32_t kWasiFault = 21;
constexpr int32_t kWasiInval = 28;

// Largest inputs host imports accept: they bound the host's own work (termination only lands in
// wasm code).
constexpr uint64_t kMaxTextBytes = uint64_t{4} << 20;  // tokenize / chat_template input
constexpr int32_t kMaxDecodeTokens = 1 << 20;          // one decode call
constexpr uint64_t kMaxLogLine = 4096;                 // one log line

InstanceState& state(HostCallContext& ctx) {
  return *static_cast<InstanceState*>(ctx.user());
}

Val ok_i32(int32_t v) {
  return Val::make_i32(v);
}

// Writes a sized output: returns the needed size, writing only when it fits.
int32_t write_sized(HostCallContext& ctx, int32_t buf_ptr, int32_t buf_cap, std::string_view data) {
  if (buf_cap < 0) return REALM_E_INVALID;
  if (data.size() > static_cast<size_t>(INT32_MAX)) return REALM_E_LIMIT;
  const auto need = static_cast<int32_t>(data.size());
  if (need > buf_cap) return need;
  auto span = ctx.memory().span(guest_u32(buf_ptr), data.size());
  if (!span) return REALM_E_BOUNDS;
  if (!data.empty()) std::memcpy(span->data(), data.data(), data.size());
  return need;
}

// The model behind a handle, held for the call; null for a bad handle or an unloaded model.
std::shared_ptr<const HostModel> find_model(InstanceState& st, int32_t handle) {
  auto* m = st.models.find(handle);
  return m ? m->lock() : nullptr;
}

int64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Host work done for the guest (tokenizing, rendering a template, checking an event), charged to
// the request's host-time budget (outside requests, to the instance's): over_budget() gives the
// trap once the budget is spent; the cost of a call is added when it returns.
class HostWork {
 public:
  explicit HostWork(InstanceState& st) : st_(st), t0_(thread_cpu_ns()) {}
  ~HostWork() { used() += thread_cpu_ns() - t0_; }
  HostWork(const HostWork&) = delete;
  HostWork& operator=(const HostWork&) = delete;
  // Null when there is budget left, else the trap to return.
  std::optional<HostResult> over_budget(std::string_view what) {
    const int64_t budget = st_.request ? st_.request->host_ns_budget
                                       : std::chrono::duration_cast<std::chrono::nanoseconds>(
                                             st_.limits->host_time(st_.tenant->record))
                                             .count();
    if (used() < budget) return std::nullopt;
    st_.host_trap_kind = RequestError::HOST_WORK_LIMIT;
    return HostResult(
        make_error(ErrorCode::LIMIT, "host work limit exceeded in ", what, ": ", used() / 1000000,
                   " ms of host CPU time spent for the guest (limit ", budget / 1000000, " ms)"));
  }

 private:
  int64_t& used() { return st_.request ? st_.request->host_ns : st_.idle_host_ns; }
  InstanceState& st_;
  int64_t t0_;
};

// Checks an event's shape (docs/abi.md): a token event is an object with a string "text" and an
// integer "id" >= -1 (optional number "logprob", array "top_logprobs" of {id, logprob}); a final
// result an object whose "finish_reason" is stop, length, eos or cancelled (optional counts are
// non-negative integers). Returns what is wrong, or "" when the event is well formed.
std::string check_event(int32_t kind, std::string_view text) {
  if (text.find('\0') != std::string_view::npos) return "the event contains a NUL byte";
  const auto j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded()) return "the event is not one JSON value";
  if (!j.is_object()) return "the event is not a JSON object";
  const auto is_int = [](const nlohmann::json& v, int64_t lo) {
    return v.is_number_integer() && v.get<int64_t>() >= lo && v.get<int64_t>() <= INT32_MAX;
  };
  if (kind == REALM_EMIT_TOKEN) {
    auto t = j.find("text");
    if (t == j.end() || !t->is_string()) return "a token event needs a string \"text\"";
    auto id = j.find("id");
    if (id == j.end() || !is_int(*id, -1)) return "a token event needs an integer \"id\" >= -1";
    if (auto lp = j.find("logprob"); lp != j.end() && !lp->is_number()) {
      return "\"logprob\" must be a number";
    }
    if (auto top = j.find("top_logprobs"); top != j.end()) {
      if (!top->is_array()) return "\"top_logprobs\" must be an array";
      for (const auto& e : *top) {
        if (!e.is_object() || !e.contains("id") || !is_int(e["id"], 0) || !e.contains("logprob") ||
            !e["logprob"].is_number()) {
          return "\"top_logprobs\" entries must be {\"id\": integer, \"logprob\": number}";
        }
      }
    }
    return "";
  }
  auto fr = j.find("finish_reason");
  if (fr == j.end() || !fr->is_string()) return "a final result needs a string \"finish_reason\"";
  const std::string& reason = fr->get_ref<const std::string&>();
  if (reason != "stop" && reason != "length" && reason != "eos" && reason != "cancelled") {
    return "\"finish_reason\" must be stop, length, eos or cancelled, got \"" +
           escape_guest_text(reason, 64) + "\"";
  }
  for (const char* k : {"prompt_tokens", "completion_tokens"}) {
    if (auto c = j.find(k); c != j.end() && !is_int(*c, 0)) {
      return std::string("\"") + k + "\" must be a non-negative integer";
    }
  }
  return "";
}

// Returns `code` to the guest, keeping `why` for realm.host_error and the request's message.
template <typename... Args>
Val fail(InstanceState& st, int32_t code, const Args&... why) {
  st.host_error = make_error(why...).message;
  return ok_i32(code);
}

// The guest ABI status of an engine or template error.
int32_t abi_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::INVALID_ARGUMENT:
      return REALM_E_INVALID;
    case ErrorCode::LIMIT:
      return REALM_E_LIMIT;
    case ErrorCode::NOT_FOUND:
      return REALM_E_INVALID;
    case ErrorCode::FAILED_PRECONDITION:
      return REALM_E_STATE;
    case ErrorCode::CANCELLED:
      return REALM_E_CANCELLED;
    case ErrorCode::UNAVAILABLE:
    case ErrorCode::INTERNAL:
      return REALM_E_INTERNAL;
  }
  return REALM_E_INTERNAL;
}

// A host fault during an import (an INTERNAL engine error): the guest is trapped and the request
// ends with an internal error naming the cause.
HostResult host_fault(InstanceState& st, std::string_view where, const Error& e) {
  st.host_trap_kind = RequestError::INTERNAL;
  return make_error(ErrorCode::INTERNAL, "host fault in ", where, ": ", e.message);
}

void set_limit(Request& req, RequestError kind, std::string message) {
  if (req.limit_error == RequestError::NONE) {
    req.limit_error = kind;
    req.limit_message = std::move(message);
  }
}

// ---- realm.* ------------------------------------------------------------------------------

HostResult model_open(HostCallContext& ctx, std::span<const Val> a) {
  InstanceState& st = state(ctx);
  auto name = ctx.memory().string(guest_u32(a[0].i32), guest_u32(a[1].i32));
  if (!name) return ok_i32(REALM_E_BOUNDS);
  if (name->empty() || name->size() > 256) {
    return fail(st, REALM_E_INVALID, "model_open: a model name has 1..256 bytes, got ",
                name->size());
  }
  if (!st.tenant->record.may_use(*name)) {
    return fail(st, REALM_E_DENIED, "model_open: the tenant may not use model '",
                escape_guest_text(*name, 256), "'");
  }
  auto m = find_host_model(st.sandbox, *name);
  if (!m) {
    return fail(st, REALM_E_INVALID, "model_open: model '", escape_guest_text(*name, 256),
                "' is not loaded");
  }
  const int32_t h = st.models.insert(std::move(m));
  if (h <= 0) return fail(st, REALM_E_LIMIT, "model_open: too many open model handles");
  return ok_i32(h);
}

HostResult model_info(HostCallContext& ctx, std::span<const Val> a) {
  const auto m = find_model(state(ctx), a[0].i32);
  if (!m) return ok_i32(REALM_E_HANDLE);
  return ok_i32(write_sized(ctx, a[1].i32, a[2].i32, m->info_json));
}

HostResult tokenize(HostCallContext& ctx, std::span<const Val> a) {
  const auto m = find_model(state(ctx), a[0].i32);
  if (!m) return ok_i32(REALM_E_HANDLE);
  const int32_t flags = a[3].i32, out_ptr = a[4].i32, out_cap = a[5].i32;
  if ((flags & ~(REALM_TOKENIZE_ADD_SPECIAL | REALM_TOKENIZE_PARSE_SPECIAL)) != 0 || out_cap < 0)
    return ok_i32(REALM_E_INVALID);
  GuestMemory mem = ctx.memory();
  auto text = mem.string(guest_u32(a[1].i32), guest_u32(a[2].i32));
  if (!text) return ok_i32(REALM_E_BOUNDS);
  InstanceState& st = state(ctx);
  if (text->size() > kMaxTextBytes) {
    return fail(st, REALM_E_LIMIT, "tokenize: ", text->size(),
                " bytes of text exceed the limit of ", kMaxTextBytes);
  }
  // The output range is checked before the work, so a bad pointer costs nothing.
  auto out = mem.array(guest_u32(out_ptr), guest_u32(out_cap), sizeof(int32_t));
  if (!out) return ok_i32(REALM_E_BOUNDS);
  HostWork work(st);
  if (auto trap = work.over_budget("tokenize")) return *trap;
  fault::point(fault::Site::TOKENIZE);
  std::vector<int32_t> ids = m->tokenizer->encode(*text, (flags & REALM_TOKENIZE_ADD_SPECIAL) != 0,
                                                  (flags & REALM_TOKENIZE_PARSE_SPECIAL) != 0);
  if (ids.size() > static_cast<size_t>(INT32_MAX)) return ok_i32(REALM_E_LIMIT);
  const auto n = static_cast<int32_t>(ids.size());
  if (n <= out_cap && n > 0) std::memcpy(out->data(), ids.data(), ids.size() * sizeof(int32_t));
  return ok_i32(n);
}

HostResult token_piece(HostCallContext& ctx, std::span<const Val> a) {
  const auto m = find_model(state(ctx), a[0].i32);
  if (!m) return ok_i32(REALM_E_HANDLE);
  const int32_t id = a[1].i32;
  if (!m->tokenizer->vocab().valid(id)) return ok_i32(REALM_E_INVALID);
  HostWork work(state(ctx));
  if (auto trap = work.over_budget("token_piece")) return *trap;
  return ok_i32(write_sized(ctx, a[2].i32, a[3].i32, m->tokenizer->token_to_piece(id, false)));
}

HostResult chat_template(HostCallContext& ctx, std::span<const Val> a) {
  const auto m = find_model(state(ctx), a[0].i32);
  if (!m) return ok_i32(REALM_E_HANDLE);
  auto msgs = ctx.memory().string(guest_u32(a[1].i32), guest_u32(a[2].i32));
  if (!msgs) return ok_i32(REALM_E_BOUNDS);
  InstanceState& st = state(ctx);
  if (msgs->size() > kMaxTextBytes) {
    return fail(st, REALM_E_LIMIT, "chat_template: ", msgs->size(),
                " bytes of messages exceed the limit of ", kMaxTextBytes);
  }
  if (a[3].i32 != 0 && a[3].i32 != 1) {
    return fail(st, REALM_E_INVALID, "chat_template: add_generation_prompt must be 0 or 1, got ",
                a[3].i32);
  }
  if (!ctx.memory().span(guest_u32(a[4].i32), 0) || a[5].i32 < 0) return ok_i32(REALM_E_BOUNDS);
  if (!m->chat) {
    return fail(st, REALM_E_INVALID, "chat_template: model '", m->name,
                "' has no usable chat template");
  }
  HostWork work(st);
  if (auto trap = work.over_budget("chat_template")) return *trap;
  fault::point(fault::Site::CHAT_TEMPLATE);
  auto text = m->render_chat(*msgs, a[3].i32 == 1);
  if (!text) {
    return fail(st, abi_status(text.error().code), "chat_template: ", text.error().message);
  }
  return ok_i32(write_sized(ctx, a[4].i32, a[5].i32, *text));
}

HostResult session_open(HostCallContext& ctx, std::span<const Val> a) {
  InstanceState& st = state(ctx);
  if (!st.generating()) return ok_i32(REALM_E_STATE);
  const auto m = find_model(st, a[0].i32);
  if (!m) return ok_i32(REALM_E_HANDLE);
  const int64_t train = m->model->hparams().n_ctx_train;
  int64_t n_ctx = a[1].i32;
  if (n_ctx < 0) return fail(st, REALM_E_INVALID, "session_open: n_ctx ", n_ctx, " < 0");
  if (n_ctx == 0) n_ctx = std::min<int64_t>(train > 0 ? train : 4096, 4096);
  const int64_t max_ctx = st.limits->max_session_ctx(st.tenant->record);
  if (n_ctx > max_ctx) {
    return fail(st, REALM_E_LIMIT, "session_open: n_ctx ", n_ctx,
                " exceeds the tenant's largest session context ", max_ctx);
  }
  if (!st.limits->acquire_session(st.tenant->record)) {
    return fail(st, REALM_E_LIMIT,
                "session_open: the tenant's concurrent-session limit is reached");
  }
  OpenSession os;
  os.model = m;
  engine::SessionOptions so;
  so.kv_type = kv_type(st.sandbox);
  so.tenant = st.tenant->record.id;
  so.weight = st.tenant->record.weight;
  const engine::EngineOptions& eo = m->engine->options();
  if (eo.prefix_cache) so.prefix_namespace = eo.shared_prefix ? std::string() : so.tenant;
  os.session = m->engine->open_session(n_ctx, std::move(so));
  const int32_t h = st.request->sessions.insert(std::move(os));
  if (h <= 0) {
    st.limits->release_session(st.tenant->record);
    return ok_i32(REALM_E_LIMIT);
  }
  return ok_i32(h);
}

HostResult session_close(HostCallContext& ctx, std::span<const Val> a) {
  InstanceState& st = state(ctx);
  if (!st.generating()) return ok_i32(REALM_E_STATE);
  if (!st.request->sessions.erase(a[0].i32)) return ok_i32(REALM_E_HANDLE);
  st.limits->release_session(st.tenant->record);
  return ok_i32(REALM_OK);
}

HostResult session_truncate(HostCallContext& ctx, std::span<const Val> a) {
  InstanceState& st = state(ctx);
  if (!st.generating()) return ok_i32(REALM_E_STATE);
  OpenSession* s = st.request->sessions.find(a[0].i32);
  if (!s) return ok_i32(REALM_E_HANDLE);
  if (a[1].i32 < 0 || a[1].i32 > s->session->size()) return ok_i32(REALM_E_INVALID);
  s->session->truncate(a[1].i32);
  return ok_i32(REALM_OK);
}

HostResult decode(HostCallContext& ctx, std::span<const Val> a) {
  InstanceState& st = state(ctx);
  Request* req = st.request;
  if (!st.generating()) return ok_i32(REALM_E_STATE);
  OpenSession* s = req->sessions.find(a[0].i32);
  if (!s) return ok_i32(REALM_E_HANDLE);
  if (req->cancelled()) return ok_i32(REALM_E_CANCELLED);
  const int32_t n_tokens = a[2].i32, logits_cap = a[4].i32;
  if (n_tokens <= 0 || n_tokens > kMaxDecodeTokens || logits_cap < 0) {
    return fail(st, REALM_E_INVALID, "decode: n_tokens must be in 1..", kMaxDecodeTokens, ", got ",
                n_tokens);
  }
  const int32_t n_vocab = s->model->n_vocab;
  GuestMemory mem = ctx.memory();
  auto toks = mem.array(guest_u32(a[1].i32), guest_u32(n_tokens), sizeof(int32_t));
  if (!toks) return ok_i32(REALM_E_BOUNDS);
  if (logits_cap < n_vocab) return ok_i32(REALM_E_NOSPACE);
  auto out = mem.array(guest_u32(a[3].i32), static_cast<uint64_t>(n_vocab), sizeof(float));
  if (!out) return ok_i32(REALM_E_BOUNDS);
  std::vector<int32_t> ids(static_cast<size_t>(n_tokens));
  std::memcpy(ids.data(), toks->data(), ids.size() * sizeof(int32_t));
  for (int32_t id : ids) {
    if (id < 0 || id >= n_vocab) {
      return fail(st, REALM_E_INVALID, "decode: token id ", id, " is out of range [0, ", n_vocab,
                  ")");
    }
  }
  if (s->session->size() + n_tokens > s->session->n_ctx()) {
    return fail(st, REALM_E_LIMIT, "decode: context full: ", s->session->size(),
                " tokens in the session + ", n_tokens, " new exceed its context of ",
                s->session->n_ctx());
  }
  if (req->tokens_used + n_tokens > req->token_budget) {
    set_limit(*req, RequestError::TOKEN_LIMIT,
              "decoding " + std::to_string(n_tokens) +
                  " more tokens would exceed the request's "
                  "budget of " +
                  std::to_string(req->token_budget) + " (" + std::to_string(req->tokens_used) +
                  " used)");
    return ok_i32(REALM_E_LIMIT);
  }
  req->tokens_used += n_tokens;
  // The whole step goes to the engine, which cuts long ones into passes and withdraws the step
  // when the request's cancel flag is set.
  const auto t0 = std::chrono::steady_clock::now();
  auto r = s->model->engine->decode(*s->session, std::move(ids), false, req->cancel);
  req->decode_ms +=
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (!r) {
    if (r.error().code == ErrorCode::INTERNAL) return host_fault(st, "decode", r.error());
    return fail(st, abi_status(r.error().code), "decode: ", r.error().message);
  }
  if (r->logits.size() != static_cast<size_t>(n_vocab)) {
    return host_fault(
        st, "decode",
        make_error("the engine returned ", r->logits.size(), " logits, not ", n_vocab));
  }
  std::memcpy(out->data(), r->logits.data(), r->logits.size() * sizeof(float));
  // The prompt's tokens found in the prefix cache (usage's cached_tokens).
  if (req->n_events == 0) req->cached_tokens += r->cached_tokens;
  return ok_i32(n_vocab);
}

// realm.host_error(buf_ptr, buf_cap) -> i32: why the last failing host import failed (sized
// output; "" when none has).
HostResult host_error(HostCallContext& ctx, std::span<const Val> a) {
  InstanceState& st = state(ctx);
  return ok_i32(write_sized(ctx, a[0].i32, a[1].i32, st.host_error));
}

HostResult emit(HostCallContext& ctx, std::span<const Val> a) {
  InstanceState& st = state(ctx);
  Request* req = st.request;
  if (!st.generating()) return ok_i32(REALM_E_STATE);
  const int32_t kind = a[0].i32;
  if (kind != REALM_EMIT_TOKEN && kind != REALM_EMIT_FINAL) return ok_i32(REALM_E_INVALID);
  const uint64_t len = guest_u32(a[2].i32);
  auto text = ctx.memory().string(guest_u32(a[1].i32), len);
  if (!text) return ok_i32(REALM_E_BOUNDS);
  if (req->limit_error == RequestError::OUTPUT_LIMIT) {
    // Told once with REALM_E_LIMIT and still emitting: stop it.
    st.host_trap_kind = RequestError::OUTPUT_LIMIT;
    return make_error("output limit exceeded: the guest kept emitting after REALM_E_LIMIT (",
                      req->output_bytes, " bytes emitted, limit ", req->max_output, ")");
  }
  if (len > req->max_event || req->output_bytes + len > req->max_output) {
    set_limit(*req, RequestError::OUTPUT_LIMIT,
              "an event of " + std::to_string(len) + " bytes after " +
                  std::to_string(req->output_bytes) + " bytes exceeds the limits (" +
                  std::to_string(req->max_event) + " bytes per event, " +
                  std::to_string(req->max_output) + " per request)");
    return ok_i32(REALM_E_LIMIT);
  }
  if (req->final_emitted) {
    return fail(st, REALM_E_STATE, "emit: the request's final result was already emitted");
  }
  {
    HostWork work(st);
    if (auto trap = work.over_budget("emit")) return *trap;
    if (std::string bad = check_event(kind, *text); !bad.empty()) {
      return fail(st, REALM_E_INVALID, "emit: ", bad);
    }
  }
  req->output_bytes += len;
  if (kind == REALM_EMIT_FINAL) {
    req->final_emitted = true;
    req->final_json.assign(*text);
  } else {
    if (req->n_events++ == 0) req->tokens_before_first_event = req->tokens_used;
  }
  if (req->cancelled()) return ok_i32(REALM_EMIT_CLIENT_GONE);
  if (*req->on_event && !(*req->on_event)(kind, *text)) {
    req->client_gone = true;
    return ok_i32(1);
  }
  return ok_i32(0);
}

// Log text from `log` or fd_write, bounded per request (or per instance outside requests).
void guest_log(InstanceState& st, int level, std::string_view text) {
  uint64_t& used = st.request ? st.request->log_bytes : st.idle_log_bytes;
  const uint64_t cap =
      st.request ? st.request->max_log : st.limits->max_log_bytes(st.tenant->record);
  if (used >= cap) return;
  // Rate: at most kLogBurst lines at once, kLogLinesPerSecond sustained; the rest is dropped.
  constexpr double kLogLinesPerSecond = 50, kLogBurst = 100;
  const auto now = std::chrono::steady_clock::now();
  st.log_tokens = std::min(
      kLogBurst, st.log_tokens + kLogLinesPerSecond *
                                     std::chrono::duration<double>(now - st.log_refill).count());
  st.log_refill = now;
  if (st.log_tokens < 1) return;
  st.log_tokens -= 1;
  text = text.substr(0, std::min<uint64_t>({text.size(), cap - used, kMaxLogLine}));
  used += text.size();
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);  // the line's own end
  tenant_log(st.sandbox, st.tenant->record.id, level, escape_guest_text(text, kMaxLogLine));
}

HostResult log(HostCallContext& ctx, std::span<const Val> a) {
  InstanceState& st = state(ctx);
  auto text = ctx.memory().string(guest_u32(a[1].i32), guest_u32(a[2].i32));
  if (text) guest_log(st, std::clamp(a[0].i32, 0, 3), *text);
  return Val{};
}

HostResult clock_ms(HostCallContext&, std::span<const Val>) {
  return Val::make_f64(
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

// ---- wasi_snapshot_preview1 -----------------------------------------------------------------

HostResult fd_write(HostCallContext& ctx, std::span<const Val> a) {
  InstanceState& st = state(ctx);
  const int32_t fd = a[0].i32;
  const uint64_t iovs = guest_u32(a[1].i32), n_iovs = guest_u32(a[2].i32);
  if (fd != 1 && fd != 2) return ok_i32(kWasiBadf);
  if (n_iovs > 1024) return ok_i32(kWasiInval);
  GuestMemory mem = ctx.memory();
  if (!mem.array(iovs, n_iovs, 8)) return ok_i32(kWasiFault);
  // One write is one log record, whatever its pieces.
  uint64_t total = 0;
  std::string record;
  for (uint64_t i = 0; i < n_iovs; ++i) {
    const uint32_t ptr = *mem.load<uint32_t>(iovs + 8 * i);
    const uint32_t len = *mem.load<uint32_t>(iovs + 8 * i + 4);
    auto text = mem.string(ptr, len);
    if (!text) return ok_i32(kWasiFault);
    if (record.size() < kMaxLogLine) record.append(text->substr(0, kMaxLogLine - record.size()));
    total += len;
  }
  if (!record.empty()) guest_log(st, fd == 2 ? 2 : 1, record);
  if (total > UINT32_MAX) return ok_i32(kWasiInval);
  if (!mem.store<uint32_t>(guest_u32(a[3].i32), static_cast<uint32_t>(total))) {
    return ok_i32(kWasiFault);
  }
  return ok_i32(kWasiSuccess);
}

HostResult proc_exit(HostCallContext& ctx, std::span<const Val> a) {
  state(ctx).host_trap_kind = RequestError::PROC_EXIT;
  return make_error("the guest called proc_exit(", a[0].i32, ")");
}

HostResult sizes_get(HostCallContext& ctx, std::span<const Val> a) {
  GuestMemory mem = ctx.memory();
  if (!mem.store<uint32_t>(guest_u32(a[0].i32), 0) ||
      !mem.store<uint32_t>(guest_u32(a[1].i32), 0)) {
    return ok_i32(kWasiFault);
  }
  return ok_i32(kWasiSuccess);
}

HostResult empty_get(HostCallContext&, std::span<const Val>) {
  return ok_i32(kWasiSuccess);
}

HostResult clock_time_get(HostCallContext& ctx, std::span<const Val> a) {
  const int32_t id = a[0].i32;
  uint64_t ns;
  if (id == 0) {
    ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
  } else if (id >= 1 && id <= 3) {
    ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
  } else {
    return ok_i32(kWasiInval);
  }
  if (!ctx.memory().store<uint64_t>(guest_u32(a[2].i32), ns)) return ok_i32(kWasiFault);
  return ok_i32(kWasiSuccess);
}

HostResult random_get(HostCallContext& ctx, std::span<const Val> a) {
  InstanceState& st = state(ctx);
  auto buf = ctx.memory().span(guest_u32(a[0].i32), guest_u32(a[1].i32));
  if (!buf) return ok_i32(kWasiFault);
  if (buf->size() > (uint64_t{1} << 20)) return ok_i32(kWasiInval);
  for (size_t i = 0; i < buf->size(); i += 8) {
    const uint64_t r = st.rng();
    std::memcpy(buf->data() + i, &r, std::min<size_t>(8, buf->size() - i));
  }
  return ok_i32(kWasiSuccess);
}

HostResult badf(HostCallContext&, std::span<const Val>) {
  return ok_i32(kWasiBadf);
}

HostResult sched_yield(HostCallContext&, std::span<const Val>) {
  return ok_i32(kWasiSuccess);
}

}  // namespace

std::vector<HostImport> make_host_imports() {
  using V = ValType;
  const V i32 = V::I32, i64 = V::I64, f64 = V::F64;
  auto fn = [](std::vector<V> p, std::vector<V> r) { return FuncType{std::move(p), std::move(r)}; };
  std::vector<HostImport> t = {
      {"realm", "model_open", fn({i32, i32}, {i32}), model_open},
      {"realm", "model_info", fn({i32, i32, i32}, {i32}), model_info},
      {"realm", "tokenize", fn({i32, i32, i32, i32, i32, i32}, {i32}), tokenize},
      {"realm", "token_piece", fn({i32, i32, i32, i32}, {i32}), token_piece},
      {"realm", "chat_template", fn({i32, i32, i32, i32, i32, i32}, {i32}), chat_template},
      {"realm", "session_open", fn({i32, i32}, {i32}), session_open},
      {"realm", "session_close", fn({i32}, {i32}), session_close},
      {"realm", "session_truncate", fn({i32, i32}, {i32}), session_truncate},
      {"realm", "decode", fn({i32, i32, i32, i32, i32}, {i32}), decode},
      {"realm", "emit", fn({i32, i32, i32}, {i32}), emit},
      {"realm", "log", fn({i32, i32, i32}, {}), log},
      {"realm", "clock_ms", fn({}, {f64}), clock_ms},
      {"realm", "host_error", fn({i32, i32}, {i32}), host_error},
  };
  const std::string w = "wasi_snapshot_preview1";
  t.push_back({w, "fd_write", fn({i32, i32, i32, i32}, {i32}), fd_write});
  t.push_back({w, "proc_exit", fn({i32}, {}), proc_exit});
  t.push_back({w, "environ_sizes_get", fn({i32, i32}, {i32}), sizes_get});
  t.push_back({w, "environ_get", fn({i32, i32}, {i32}), empty_get});
  t.push_back({w, "args_sizes_get", fn({i32, i32}, {i32}), sizes_get});
  t.push_back({w, "args_get", fn({i32, i32}, {i32}), empty_get});
  t.push_back({w, "clock_time_get", fn({i32, i64, i32}, {i32}), clock_time_get});
  t.push_back({w, "random_get", fn({i32, i32}, {i32}), random_get});
  t.push_back({w, "fd_close", fn({i32}, {i32}), badf});
  t.push_back({w, "fd_seek", fn({i32, i64, i32, i32}, {i32}), badf});
  t.push_back({w, "fd_fdstat_get", fn({i32, i32}, {i32}), badf});
  t.push_back({w, "fd_read", fn({i32, i32, i32, i32}, {i32}), badf});
  t.push_back({w, "fd_prestat_get", fn({i32, i32}, {i32}), badf});
  t.push_back({w, "fd_prestat_dir_name", fn({i32, i32, i32}, {i32}), badf});
  t.push_back({w, "sched_yield", fn({}, {i32}), sched_yield});
  return t;
}

// ---- escaping -------------------------------------------------------------------------------

std::string escape_guest_text(std::string_view text, size_t max_bytes) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  const size_t n = std::min(text.size(), max_bytes);
  out.reserve(n);
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    if (c == '\\') {
      out += "\\\\";
      ++i;
      continue;
    }
    if (c < 0x80) {
      if (c == '\n') {
        out += "\\n";
      } else if (c == '\t') {
        out += "\\t";
      } else if (c == '\r') {
        out += "\\r";
      } else {
        out += "\\x";
        out += hex[c >> 4];
        out += hex[c & 15];
      }
      ++i;
      continue;
    }
    // A well-formed UTF-8 sequence (shortest form, no surrogates) is kept, except C1 controls.
    const int len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
    uint32_t cp = len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    bool ok = len > 0 && i + static_cast<size_t>(len) <= n;
    for (int k = 1; ok && k < len; ++k) {
      ok = (p[i + k] & 0xc0) == 0x80;
      cp = cp << 6 | (p[i + k] & 0x3f);
    }
    ok = ok && !(len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) &&
         !(len == 4 && (cp < 0x10000 || cp > 0x10ffff));
    if (!ok) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
      ++i;
      continue;
    }
    if (cp >= 0x80 && cp <= 0x9f) {
      out += "\\u00";
      out += hex[cp >> 4];
      out += hex[cp & 15];
    } else {
      out.append(text.data() + i, static_cast<size_t>(len));
    }
    i += static_cast<size_t>(len);
  }
  if (text.size() > max_bytes) out += "...";
  return out;
}

Expected<std::string> HostModel::render_chat(std::string_view messages_json,
                                             bool add_generation_prompt) const {
  if (!chat) return make_error("model '", name, "' has no usable chat template");
  chat::ChatInputs in;
  auto messages = chat::messages_from_json_text(messages_json, &in.extra);
  if (!messages) return messages.take_error();
  in.messages = std::move(*messages);
  in.add_generation_prompt = add_generation_prompt;
  in.bos_token = chat->bos_token;
  in.eos_token = chat->eos_token;
  jinja::Limits lim;
  lim.max_output_bytes = kMaxTextBytes;
  return chat::render_chat(chat->source, in, lim);
}

std::vector<int32_t> HostModel::prompt_ids(std::string_view text, bool is_chat) const {
  std::vector<int32_t> ids = tokenizer->encode(text, true, true);
  const int32_t bos = tokenizer->vocab().bos();
  if (is_chat && ids.size() >= 2 && bos >= 0 && ids[0] == bos && ids[1] == bos) {
    ids.erase(ids.begin());
  }
  return ids;
}

// ---- HostModel / InstanceState --------------------------------------------------------------

Expected<std::shared_ptr<HostModel>> HostModel::create(std::string name,
                                                       std::shared_ptr<const model::Model> model,
                                                       engine::EngineOptions engine_options,
                                                       const std::string& chat_template) {
  if (!model) return make_error("model '", name, "' is null");
  auto tokenizer = tok::Tokenizer::from_gguf(model->file());
  if (!tokenizer) return make_error("model '", name, "': ", tokenizer.error().message);
  auto hm = std::make_shared<HostModel>();
  hm->name = std::move(name);
  hm->tokenizer = std::make_unique<tok::Tokenizer>(std::move(*tokenizer));
  auto tmpl = chat::chat_template_from_gguf(model->file());
  if (tmpl) {
    hm->chat = std::move(*tmpl);
    if (!chat_template.empty()) {
      hm->chat->source = chat_template;
      hm->chat->is_fallback = false;
    }
  }
  const auto& hp = model->hparams();
  const auto& vocab = hm->tokenizer->vocab();
  hm->n_vocab = static_cast<int32_t>(hp.n_vocab);
  nlohmann::ordered_json j;
  j["n_vocab"] = hp.n_vocab;
  j["n_ctx_train"] = hp.n_ctx_train;
  j["bos"] = vocab.bos();
  j["eos"] = vocab.eos();
  j["eog"] = vocab.eog_ids();
  j["add_bos"] = vocab.add_bos();
  j["add_eos"] = vocab.add_eos();
  j["name"] = hm->name;
  hm->info_json = j.dump();
  hm->engine = std::make_unique<engine::Engine>(model, engine_options);
  hm->model = std::move(model);
  return hm;
}

InstanceState::~InstanceState() {
  end_request();
}

void InstanceState::begin_request(Request* r) {
  request = r;
  host_trap_kind = RequestError::NONE;
  host_error.clear();
}

void InstanceState::end_request() {
  if (!request) return;
  request->sessions.for_each([&](OpenSession&) { limits->release_session(tenant->record); });
  request->sessions.clear();
  request = nullptr;
}

bool InstanceState::memory_at_cap() const {
  if (!wasm) return false;
  const uint64_t size = wasm->memory().size();
  const uint64_t cap = wasm->memory_max_bytes();
  return size + (uint64_t{1} << 20) >= cap;
}

std::string InstanceState::last_error(int32_t handle) {
  const auto limit = limits->call_time(tenant->record);
  constexpr int32_t kCap = 4096;
  CallResult a = wasm->call("realm_alloc", std::vector<Val>{Val::make_i32(kCap)}, limit);
  if (!a.ok()) faulted = true;
  if (!a.ok() || !a.value || a.value->i32 == 0) return "";
  const int32_t buf = a.value->i32;
  CallResult e = wasm->call(
      "realm_last_error",
      std::vector<Val>{Val::make_i32(handle), Val::make_i32(buf), Val::make_i32(kCap)}, limit);
  std::string out;
  if (!e.ok()) {
    faulted = true;
    return "(realm_last_error failed: " + e.message + ")";
  }
  if (e.value && e.value->i32 > 0 && e.value->i32 <= kCap) {
    if (auto s = wasm->memory().string(guest_u32(buf), guest_u32(e.value->i32))) {
      out = escape_guest_text(*s, kCap);
    }
  }
  if (!wasm->call("realm_free", std::vector<Val>{Val::make_i32(buf)}, limit).ok()) faulted = true;
  return out;
}

}  // namespace realm::sandbox
