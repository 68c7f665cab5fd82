// Engine: sessions over one shared model, and a scheduler thread that batches the decode steps
// submitted by many callers (tenants) into single forward passes over the weights.
//
// Callers submit steps asynchronously (submit() returns a future); the scheduler takes every
// pending step, up to max_batch_tokens tokens, into the next forward pass. A step longer than
// that (a long prompt) is run in chunks across several passes, so one tenant's prefill never
// holds the others back for more than one chunk. This is the one place where steps are cut:
// callers submit whole steps. Results are bit-identical to running the step alone, in one pass
// (the model's chunk- and batch-invariance contract).
//
// Failures stay with their step: a step whose cancel flag is set is withdrawn before its next
// pass (CANCELLED); an exception in a forward pass (an allocation failure) fails the steps of that
// pass (INTERNAL) and the scheduler keeps running. A failed or withdrawn step leaves its session
// as it was before the step.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "model/model.h"
#include "util/expected.h"

namespace realm::engine {

struct EngineOptions {
  int n_threads = 2;
  int64_t max_batch_tokens = 512;
};

// The sessions of one engine and the bytes of their caches (for metrics).
struct SessionCount {
  std::atomic<int64_t> sessions{0}, kv_bytes{0};
};

// One sequence: its KV cache and position. Owned by the caller; used through its Engine.
class Session {
 public:
  ~Session() {
    count_->sessions -= 1;
    count_->kv_bytes -= static_cast<int64_t>(cache_.bytes());
  }
  int64_t n_ctx() const { return cache_.n_ctx(); }
  // Tokens in the cache.
  int64_t size() const { return cache_.size(); }
  // Keeps the first n tokens (continue from there with the next step).
  void truncate(int64_t n) { cache_.truncate(n); }
  size_t kv_bytes() const { return cache_.bytes(); }

 private:
  friend class Engine;
  Session(const model::Hparams& hp, int64_t n_ctx, model::KvType kv,
          std::shared_ptr<SessionCount> count)
      : cache_(hp, n_ctx, kv), count_(std::move(count)) {
    count_->sessions += 1;
    count_->kv_bytes += static_cast<int64_t>(cache_.bytes());
  }
  model::KvCache cache_;
  std::shared_ptr<SessionCount> count_;
  bool busy_ = false;  // a step is queued or running
};

struct StepResult {
  // n_vocab floats per position asked for: every token of the step, or only the last.
  std::vector<float> logits;
};

class Engine {
 public:
  Engine(std::shared_ptr<const model::Model> model, EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const model::Model& model() const { return *model_; }
  const std::shared_ptr<const model::Model>& model_ptr() const { return model_; }

  std::unique_ptr<Session> open_session(int64_t n_ctx, model::KvType kv = model::KvType::F16);

  // Queues `tokens` for `session` (which must stay alive until the result is ready). Errors come
  // through the future, with their codes: a session with a step already in flight
  // (FAILED_PRECONDITION), empty steps or bad token ids (INVALID_ARGUMENT), a full context
  // (LIMIT), `cancel` set before the step completes (CANCELLED), an engine shutting down
  // (UNAVAILABLE), a host fault (INTERNAL).
  std::future<Expected<StepResult>> submit(Session& session, std::vector<int32_t> tokens,
                                           bool all_logits = false,
                                           std::shared_ptr<const std::atomic<bool>> cancel = {});
  // submit() and wait.
  Expected<StepResult> decode(Session& session, std::vector<int32_t> tokens,
                              bool all_logits = false,
                              std::shared_ptr<const std::atomic<bool>> cancel = {});

  // Forward passes run so far and the tokens they carried (for tests and metrics).
  uint64_t batches_run() const;
  uint64_t tokens_run() const;
  // Sessions open on this engine and the bytes their KV caches hold.
  int64_t sessions_open() const { return count_->sessions; }
  int64_t kv_bytes() const { return count_->kv_bytes; }

 private:
  struct Pending {
    Session* session;
    std::vector<int32_t> tokens;
    size_t done = 0;         // tokens already run (chunked prefill)
    int64_t start_size = 0;  // the session's size when the step was submitted
    bool all_logits;
    std::shared_ptr<const std::atomic<bool>> cancel;
    StepResult result;
    std::promise<Expected<StepResult>> promise;
  };
  void loop();
  // Ends the step at queue_[i] with `result`, releasing its session first (mu_ held).
  void finish(size_t i, Expected<StepResult> result);

  std::shared_ptr<const model::Model> model_;
  EngineOptions options_;
  model::Workspace ws_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Pending>> queue_;
  bool stop_ = false;
  uint64_t batches_ = 0, tokens_ = 0;
  std::shared_ptr<SessionCount> count_ = std::make_shared<SessionCount>();
  std::thread worker_;
};

}  // namespace realm::engine
