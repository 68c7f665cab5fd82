// Engine: sessions over one shared model, and a scheduler thread that batches the decode steps
// submitted by many callers (tenants) into single forward passes over the weights, within a KV
// memory budget. docs/architecture.md, "scheduler", describes the policy; in short:
//
// - Memory: the sessions' keys and values live in one pool of fixed-size blocks (model/kv_cache.h)
//   sized by EngineOptions::kv_budget_bytes. A session takes blocks as it grows.
// - Admission: a session's first step (its prompt) starts only when the blocks for it can be had
//   and fewer than max_seqs sessions are running; waiting sessions are admitted in the fairness
//   order, and one that does not fit holds back those behind it.
// - Fairness: the Virtual Token Counter (Sheng et al., OSDI 2024). Every tenant has a counter;
//   it is charged the input tokens it has computed (1 each) and 2 per decoded token, divided by
//   its weight. Admission serves the waiting session of the tenant with the lowest counter; a
//   tenant that becomes backlogged again (from no running or queued session) has its counter lifted
//   to the lowest counter among the backlogged tenants. Steps enter a pass in this order too
//   (decode steps of running sessions first, then prompt chunks, then admissions) when the per-pass
//   token budget (max_batch_tokens) is the constraint, and the running session of the tenant with
//   the highest counter (latest admitted first) is the one preempted.
// - Preemption: when a running session needs a block and none is free, the victim's blocks are
//   given back and it waits; when it is admitted again its tokens are recomputed (its full blocks
//   are usually still in the prefix cache). Results are the same bits either way.
// - Prefix cache: a session with a namespace (its tenant, or "" for a model-wide shared cache)
//   publishes its full blocks under (namespace, token chain); a later step of any session of the
//   same namespace starts from the longest cached chain of its tokens. Other namespaces never see
//   them.
// - Chunked prefill: a step longer than the pass's budget runs in chunks across passes, so running
//   streams keep a bounded inter-token latency.
//
// Results are bit-identical to running the step alone, in one pass (the model's chunk- and
// batch-invariance contract), whatever was cached, preempted or batched.
//
// Failures stay with their step: a step whose cancel flag is set is withdrawn before its next
// pass (CANCELLED); a step that cannot fit in the KV budget even alone fails (LIMIT); an exception
// in a forward pass (an allocation failure) fails the steps of that pass (INTERNAL) and the
// scheduler keeps running. A failed or withdrawn step leaves its session as it was before it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "model/model.h"
#include "util/expected.h"

namespace realm::engine {

enum class SchedulePolicy { VTC, FIFO };

struct EngineOptions {
  int n_threads = 2;
  // Tokens of one forward pass (decode steps and prompt chunks together).
  int64_t max_batch_tokens = 512;
  // The KV pool of each cache type.
  uint64_t kv_budget_bytes = uint64_t{1} << 30;
  // Sessions admitted (holding blocks, stepping) at once.
  int max_seqs = 256;
  SchedulePolicy policy = SchedulePolicy::VTC;
  // For the sandbox's sessions: each tenant's prompts are cached for that tenant only, or (an
  // operator's explicit choice for a model) in one namespace shared by every tenant.
  bool prefix_cache = true;
  bool shared_prefix = false;
};

struct SessionOptions {
  model::KvType kv_type = model::KvType::F16;
  // The tenant charged for the session's work, and its weight (> 0).
  std::string tenant;
  double weight = 1.0;
  // The prefix-cache namespace: the session publishes its full blocks there and reuses the ones
  // found there. Empty optional: no prefix caching.
  std::optional<std::string> prefix_namespace;
};

struct Core;
struct Tenant;

// One sequence: the tokens it holds and their KV blocks. Owned by the caller; used through its
// Engine (which must outlive it).
class Session {
 public:
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  int64_t n_ctx() const { return n_ctx_; }
  // Tokens in the session (the next token goes at position size()).
  int64_t size() const;
  // Keeps the first n tokens (continue from there with the next step).
  void truncate(int64_t n);

 private:
  friend class Engine;
  friend struct Core;
  Session(std::shared_ptr<Core> core, std::shared_ptr<model::KvPool> pool, int64_t n_ctx,
          Tenant* tenant, SessionOptions options);
  // The key of full block b of tokens_ (b < tokens_.size() / kKvBlockTokens), computed on demand.
  const model::BlockKey& key(int64_t b);
  void set_engaged();  // mu held

  std::shared_ptr<Core> core_;
  int64_t n_ctx_;
  model::KvCache cache_;               // the KV of tokens_[0, cache_.size())
  std::vector<int32_t> tokens_;        // every token of the sequence, the step in flight included
  std::vector<model::BlockKey> keys_;  // of the first full blocks of tokens_
  int64_t published_ = 0;              // full blocks offered to the prefix cache
  Tenant* tenant_;
  SessionOptions options_;
  bool busy_ = false;      // a step is queued or running
  bool admitted_ = false;  // running: may hold blocks
  bool engaged_ = false;   // busy_ || admitted_ (the tenant is backlogged)
  uint64_t admitted_at_ = 0;
};

struct StepResult {
  // n_vocab floats per position asked for: every token of the step, or only the last.
  std::vector<float> logits;
  // Tokens of the step whose keys and values came from the prefix cache.
  int64_t cached_tokens = 0;
};

// Counters of one engine (metrics).
struct EngineStats {
  uint64_t batches = 0, tokens = 0;  // forward passes run and the tokens they carried
  int64_t sessions = 0;              // open
  int64_t running = 0;               // admitted
  int64_t waiting = 0;               // with a step queued, not admitted
  int64_t kv_blocks = 0, kv_blocks_used = 0, kv_blocks_cached = 0;
  uint64_t kv_block_bytes = 0;
  uint64_t preemptions = 0;
  uint64_t prefix_queries = 0, prefix_hits = 0;  // prompt tokens looked up / found
  int64_t max_session_tokens = 0;                // the most one session can hold (the budget)
};

class Engine {
 public:
  Engine(std::shared_ptr<const model::Model> model, EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const model::Model& model() const { return *model_; }
  const std::shared_ptr<const model::Model>& model_ptr() const { return model_; }
  const EngineOptions& options() const { return options_; }

  std::unique_ptr<Session> open_session(int64_t n_ctx, SessionOptions options = {});
  std::unique_ptr<Session> open_session(int64_t n_ctx, model::KvType kv) {
    SessionOptions o;
    o.kv_type = kv;
    return open_session(n_ctx, std::move(o));
  }

  // Queues `tokens` for `session` (which must stay alive until the result is ready). Errors come
  // through the future, with their codes: a session with a step already in flight
  // (FAILED_PRECONDITION), empty steps or bad token ids (INVALID_ARGUMENT), a full context or a
  // session larger than the KV budget (LIMIT), `cancel` set before the step completes (CANCELLED),
  // an engine shutting down (UNAVAILABLE), a host fault (INTERNAL).
  std::future<Expected<StepResult>> submit(Session& session, std::vector<int32_t> tokens,
                                           bool all_logits = false,
                                           std::shared_ptr<const std::atomic<bool>> cancel = {});
  // submit() and wait.
  Expected<StepResult> decode(Session& session, std::vector<int32_t> tokens,
                              bool all_logits = false,
                              std::shared_ptr<const std::atomic<bool>> cancel = {});

  EngineStats stats() const;
  // Forward passes run so far and the tokens they carried (for tests and metrics).
  uint64_t batches_run() const { return stats().batches; }
  uint64_t tokens_run() const { return stats().tokens; }
  // The largest session (positions) the KV budget can hold.
  int64_t max_session_tokens(model::KvType kv = model::KvType::F16) const;
  // A tenant's virtual token counter (tests, metrics); 0 for one never seen.
  double tenant_counter(const std::string& tenant) const;

 private:
  void loop();

  std::shared_ptr<const model::Model> model_;
  EngineOptions options_;
  model::Workspace ws_;
  std::shared_ptr<Core> core_;
  std::thread worker_;
};

}  // namespace realm::engine
