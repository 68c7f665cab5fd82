#include "server/models.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "gguf/split.h"
#include "model/model.h"

namespace realm::server {

using Json = nlohmann::json;

ModelRegistry::ModelRegistry(sandbox::Sandbox& sandbox, Options options)
    : sandbox_(sandbox), options_(std::move(options)) {}

ModelRegistry::~ModelRegistry() = default;

ModelRegistry::Lease::~Lease() {
  r_.release(name_, cancel_);
}

Json ModelRegistry::record(const Entry& e) const {
  const char* state = e.state == Entry::State::READY     ? "ready"
                      : e.state == Entry::State::LOADING ? "loading"
                                                         : "unloading";
  return {{"name", e.spec.name},   {"source", e.spec.source},    {"path", e.spec.path},
          {"state", state},        {"bytes", e.bytes},           {"loaded_at", e.loaded_at},
          {"load_ms", e.load_ms},  {"pack_cache", e.pack_cache}, {"running", e.running.size()},
          {"requests", e.requests}};
}

uint64_t ModelRegistry::loaded_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t n = 0;
  for (const auto& [name, e] : models_) n += e.bytes;
  return n;
}

namespace {
engine::EngineOptions engine_options_for(const engine::EngineOptions& base, const ServedModel& m) {
  engine::EngineOptions o = base;
  o.shared_prefix = m.shared_prefix;
  return o;
}
}  // namespace

Expected<Json> ModelRegistry::load(const ServedModel& m) {
  if (m.name.empty() || m.name.size() > 256) {
    return make_error("a model name has 1..256 bytes, got ", m.name.size());
  }
  // The files' size, for the budget, before anything is loaded (a split model's shards by name).
  uint64_t bytes = 0;
  {
    std::error_code ec;
    const auto split = gguf::parse_split_path(m.path);
    for (uint64_t i = 1; i <= (split ? split->count : 1); ++i) {
      const std::string p = split ? gguf::split_path(split->prefix, i, split->count) : m.path;
      bytes += std::filesystem::file_size(p, ec);
      if (ec) return make_error(ErrorCode::NOT_FOUND, "cannot open ", p, ": ", ec.message());
    }
  }
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (models_.count(m.name)) {
      return make_error(ErrorCode::FAILED_PRECONDITION, "a model named '", m.name,
                        "' is already served (unload it first)");
    }
    if (options_.memory_budget > 0) {
      if (bytes > options_.memory_budget) {
        return make_error(ErrorCode::LIMIT, "the model's ", bytes,
                          " bytes exceed the model memory budget of ", options_.memory_budget);
      }
      // Unload idle models, least recently used first, until the new one fits.
      for (;;) {
        uint64_t used = 0;
        for (const auto& [name, e] : models_) used += e.bytes;
        if (used + bytes <= options_.memory_budget) break;
        Entry* victim = nullptr;
        for (auto& [name, e] : models_) {
          if (e.state == Entry::State::READY && e.running.empty() &&
              (victim == nullptr || e.last_used < victim->last_used)) {
            victim = &e;
          }
        }
        if (victim == nullptr) {
          return make_error(ErrorCode::UNAVAILABLE, "loading '", m.name, "' (", bytes,
                            " bytes) needs ", used + bytes - options_.memory_budget,
                            " more bytes of the model memory budget (", options_.memory_budget,
                            ") and no idle model can be unloaded");
        }
        const std::string gone = victim->spec.name;
        std::fprintf(stderr, "realm serve: model memory budget: unloading idle model '%s'\n",
                     gone.c_str());
        (void)sandbox_.remove_model(gone);
        models_.erase(gone);
      }
    }
    Entry e;
    e.spec = m;
    e.bytes = bytes;
    models_.emplace(m.name, std::move(e));
  }
  auto fail = [&](Error err) -> Expected<Json> {
    std::lock_guard<std::mutex> lock(mu_);
    models_.erase(m.name);
    return err;
  };
  model::LoadOptions lo;
  lo.pack_cache_dir = m.pack_cache_dir;
  lo.source_sha256 = m.sha256;
  model::LoadReport report;
  auto loaded = model::Model::load(m.path, lo, &report);
  if (!loaded) return fail(loaded.take_error());
  if (auto st =
          sandbox_.add_model(m.name, *loaded, engine_options_for(options_.engine, m),
                             m.chat_template.empty() ? options_.chat_template : m.chat_template);
      !st) {
    return fail(st.take_error());
  }
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = models_.at(m.name);
  e.state = Entry::State::READY;
  e.loaded_at = static_cast<int64_t>(std::time(nullptr));
  e.last_used = std::chrono::steady_clock::now();
  e.pack_cache = report.pack_cache;
  e.load_ms = report.load_ms;
  return record(e);
}

std::unique_ptr<ModelRegistry::Lease> ModelRegistry::acquire(
    const std::string& name, std::shared_ptr<std::atomic<bool>> cancel) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(name);
  if (it == models_.end() || it->second.state != Entry::State::READY) return nullptr;
  it->second.running.insert(cancel);
  it->second.last_used = std::chrono::steady_clock::now();
  ++it->second.requests;
  return std::unique_ptr<Lease>(new Lease(*this, name, std::move(cancel)));
}

void ModelRegistry::release(const std::string& name,
                            const std::shared_ptr<std::atomic<bool>>& cancel) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(name);
  if (it == models_.end()) return;
  it->second.running.erase(cancel);
  it->second.last_used = std::chrono::steady_clock::now();
  cv_.notify_all();
}

Expected<ModelRegistry::Unloaded> ModelRegistry::unload(const std::string& name,
                                                        std::chrono::milliseconds timeout) {
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  auto it = models_.find(name);
  if (it == models_.end() || it->second.state == Entry::State::LOADING) {
    return make_error(ErrorCode::NOT_FOUND, "the model '", name, "' is not served");
  }
  if (it->second.state == Entry::State::UNLOADING) {
    return make_error(ErrorCode::FAILED_PRECONDITION, "the model '", name,
                      "' is being unloaded already");
  }
  it->second.state = Entry::State::UNLOADING;  // new requests get 404 from now on
  Unloaded u;
  u.waited = static_cast<int>(it->second.running.size());
  auto idle = [&] { return models_.at(name).running.empty(); };
  if (!cv_.wait_for(lock, timeout, idle)) {
    u.cancelled = static_cast<int>(models_.at(name).running.size());
    for (const auto& c : models_.at(name).running) sandbox_.cancel(c);
    cv_.wait(lock, idle);  // a cancelled request ends within a token
  }
  (void)sandbox_.remove_model(name);
  models_.erase(name);
  u.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return u;
}

bool ModelRegistry::has(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(name);
  return it != models_.end() && it->second.state == Entry::State::READY;
}

std::vector<std::string> ModelRegistry::names() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& [name, e] : models_) {
    if (e.state == Entry::State::READY) out.push_back(name);
  }
  return out;
}

Json ModelRegistry::list() const {
  std::lock_guard<std::mutex> lock(mu_);
  Json out = Json::array();
  for (const auto& [name, e] : models_) out.push_back(record(e));
  return out;
}

}  // namespace realm::server
