// The models `realm serve` serves, loaded and unloaded while it runs (the admin API's
// /admin/models). A request holds a lease on its model for its whole life; an unload first stops
// new requests (they get 404), waits for the leased ones up to a timeout, then cancels them, and
// removes the model from the sandbox: other models keep serving throughout. With a memory budget,
// a load that does not fit unloads the least recently used idle models first.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "sandbox/sandbox.h"
#include "util/expected.h"

namespace realm::server {

struct ServedModel {
  std::string name;
  std::string path;            // the GGUF file (or the first shard)
  std::string source;          // as the operator gave it: a path or a pulled model's name
  std::string pack_cache_dir;  // model::LoadOptions ("" = pack in memory)
  std::string sha256;          // of `path`, when known
  std::string chat_template;   // Jinja2 source instead of the file's ("": the server's default)
  // The operator's choice: one prefix cache for every tenant of this model (else one per tenant).
  bool shared_prefix = false;
};

class ModelRegistry {
 public:
  struct Options {
    engine::EngineOptions engine;  // of every model's engine (threads, KV budget, scheduling)
    std::string chat_template;     // for every model without its own
    uint64_t memory_budget = 0;    // bytes of loaded model files; 0 = no budget
  };
  ModelRegistry(sandbox::Sandbox& sandbox, Options options);
  ~ModelRegistry();

  // Loads `m` and serves it as m.name; returns its record (list()'s shape). Errors:
  // FAILED_PRECONDITION when the name is taken (or being loaded), the load's own error (a bad
  // file...), LIMIT when it is larger than the whole memory budget, UNAVAILABLE when it does not
  // fit because the other models are busy.
  Expected<nlohmann::json> load(const ServedModel& m);

  // A request on a model: null when the model is not served (absent, loading, unloading).
  // `cancel` is set when a forced unload ends the request.
  class Lease {
   public:
    ~Lease();
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;

   private:
    friend class ModelRegistry;
    Lease(ModelRegistry& r, std::string name, std::shared_ptr<std::atomic<bool>> cancel)
        : r_(r), name_(std::move(name)), cancel_(std::move(cancel)) {}
    ModelRegistry& r_;
    std::string name_;
    std::shared_ptr<std::atomic<bool>> cancel_;
  };
  std::unique_ptr<Lease> acquire(const std::string& name,
                                 std::shared_ptr<std::atomic<bool>> cancel);

  struct Unloaded {
    int waited = 0;     // requests that were running when the unload began
    int cancelled = 0;  // of those, cancelled at the timeout
    double seconds = 0;
  };
  // NOT_FOUND when the model is not served; FAILED_PRECONDITION when it is being unloaded already.
  Expected<Unloaded> unload(const std::string& name, std::chrono::milliseconds timeout);

  bool has(const std::string& name) const;
  std::vector<std::string> names() const;  // served now, sorted
  nlohmann::json list() const;             // {"name","source","path","bytes","loaded_at",...}
  uint64_t loaded_bytes() const;

 private:
  struct Entry {
    ServedModel spec;
    enum class State { LOADING, READY, UNLOADING } state = State::LOADING;
    uint64_t bytes = 0;
    int64_t loaded_at = 0;
    std::chrono::steady_clock::time_point last_used;
    std::string pack_cache;
    double load_ms = 0;
    int64_t requests = 0;
    std::set<std::shared_ptr<std::atomic<bool>>> running;
  };
  nlohmann::json record(const Entry& e) const;
  void release(const std::string& name, const std::shared_ptr<std::atomic<bool>>& cancel);

  sandbox::Sandbox& sandbox_;
  Options options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Entry, std::less<>> models_;
};

}  // namespace realm::server
