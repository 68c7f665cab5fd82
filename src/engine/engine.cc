#include "engine/engine.h"

#include <algorithm>
#include <exception>

#include "util/fault_injection.h"

namespace realm::engine {
namespace {

// Options are fixed before the scheduler thread starts reading them.
EngineOptions clamped(EngineOptions o) {
  o.max_batch_tokens = std::max<int64_t>(1, o.max_batch_tokens);
  return o;
}

}  // namespace

Engine::Engine(std::shared_ptr<const model::Model> model, EngineOptions options)
    : model_(std::move(model)),
      options_(clamped(options)),
      ws_(options.n_threads),
      worker_([this] { loop(); }) {}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
  while (!queue_.empty()) finish(0, make_error(ErrorCode::UNAVAILABLE, "engine stopped"));
}

std::unique_ptr<Session> Engine::open_session(int64_t n_ctx, model::KvType kv) {
  return std::unique_ptr<Session>(new Session(model_->hparams(), n_ctx, kv, count_));
}

std::future<Expected<StepResult>> Engine::submit(Session& session, std::vector<int32_t> tokens,
                                                 bool all_logits,
                                                 std::shared_ptr<const std::atomic<bool>> cancel) {
  auto p = std::make_unique<Pending>();
  auto future = p->promise.get_future();
  const int64_t n_vocab = model_->hparams().n_vocab;
  Error err;
  bool bad = false;
  if (tokens.empty()) {
    err = make_error("decode: no tokens");
    bad = true;
  } else if (session.size() + static_cast<int64_t>(tokens.size()) > session.n_ctx()) {
    err =
        make_error(ErrorCode::LIMIT, "context full: ", session.size(), " tokens in the session + ",
                   tokens.size(), " new exceed the context size ", session.n_ctx());
    bad = true;
  } else {
    for (int32_t id : tokens) {
      if (id < 0 || id >= n_vocab) {
        err = make_error("token id ", id, " is out of range [0, ", n_vocab, ")");
        bad = true;
        break;
      }
    }
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (!bad && session.busy_) {
    err = make_error(ErrorCode::FAILED_PRECONDITION,
                     "decode: the session already has a step in flight");
    bad = true;
  }
  if (bad) {
    p->promise.set_value(std::move(err));
    return future;
  }
  if (stop_) {
    p->promise.set_value(make_error(ErrorCode::UNAVAILABLE, "engine stopped"));
    return future;
  }
  session.busy_ = true;
  p->session = &session;
  p->tokens = std::move(tokens);
  p->start_size = session.size();
  p->all_logits = all_logits;
  p->cancel = std::move(cancel);
  queue_.push_back(std::move(p));
  lock.unlock();
  cv_.notify_one();
  return future;
}

Expected<StepResult> Engine::decode(Session& session, std::vector<int32_t> tokens, bool all_logits,
                                    std::shared_ptr<const std::atomic<bool>> cancel) {
  return submit(session, std::move(tokens), all_logits, std::move(cancel)).get();
}

uint64_t Engine::batches_run() const {
  std::lock_guard<std::mutex> lock(mu_);
  return batches_;
}

uint64_t Engine::tokens_run() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tokens_;
}

void Engine::finish(size_t i, Expected<StepResult> result) {
  Pending& p = *queue_[i];
  if (!result && p.session->cache_.size() > p.start_size) p.session->truncate(p.start_size);
  // The session is released before the promise is set: the waiter may destroy the session as
  // soon as it has its result.
  p.session->busy_ = false;
  p.promise.set_value(std::move(result));
  queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(i));
}

void Engine::loop() {
  const int64_t n_vocab = model_->hparams().n_vocab;
  for (;;) {
    // Take the pending steps that fit in one batch (always at least one chunk of the first);
    // cancelled ones are withdrawn first.
    std::vector<Pending*> batch;
    std::vector<int64_t> take;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      for (size_t i = 0; i < queue_.size();) {
        if (queue_[i]->cancel && queue_[i]->cancel->load(std::memory_order_relaxed)) {
          finish(i, make_error(ErrorCode::CANCELLED, "decode: cancelled"));
        } else {
          ++i;
        }
      }
      int64_t budget = options_.max_batch_tokens;
      for (auto& p : queue_) {
        if (budget <= 0) break;
        const int64_t left = static_cast<int64_t>(p->tokens.size() - p->done);
        const int64_t n = std::min(left, budget);
        batch.push_back(p.get());
        take.push_back(n);
        budget -= n;
      }
    }
    if (batch.empty()) continue;
    std::vector<std::vector<float>> logits(batch.size());
    Status st;
    try {
      std::vector<model::SequenceStep> steps;
      for (size_t i = 0; i < batch.size(); ++i) {
        Pending& p = *batch[i];
        // Logits are needed for every token (all_logits) or for the final token of the step only.
        const bool all = p.all_logits;
        const int64_t rows = all ? take[i] : 1;
        logits[i].resize(static_cast<size_t>(rows * n_vocab));
        model::SequenceStep s;
        s.cache = &p.session->cache_;
        s.tokens = std::span<const int32_t>(p.tokens).subspan(p.done, static_cast<size_t>(take[i]));
        s.all_logits = all;
        s.logits = logits[i];
        steps.push_back(s);
      }
      fault::point(fault::Site::FORWARD);
      st = model_->forward(steps, ws_);
    } catch (const std::exception& e) {
      st = make_error(ErrorCode::INTERNAL, "forward pass failed: ", e.what());
    } catch (...) {
      st = make_error(ErrorCode::INTERNAL, "forward pass failed: unknown exception");
    }
    std::lock_guard<std::mutex> lock(mu_);
    ++batches_;
    for (int64_t n : take) tokens_ += static_cast<uint64_t>(n);
    for (size_t i = 0; i < batch.size(); ++i) {
      Pending& p = *batch[i];
      auto it = std::find_if(queue_.begin(), queue_.end(),
                             [&](const std::unique_ptr<Pending>& q) { return q.get() == &p; });
      const auto at = static_cast<size_t>(it - queue_.begin());
      if (!st) {
        Error e = st.error();
        e.code = ErrorCode::INTERNAL;  // the steps were checked at submit: a host fault
        finish(at, std::move(e));
        continue;
      }
      p.done += static_cast<size_t>(take[i]);
      try {
        if (p.all_logits) {
          p.result.logits.insert(p.result.logits.end(), logits[i].begin(), logits[i].end());
        } else if (p.done == p.tokens.size()) {
          p.result.logits = std::move(logits[i]);
        }
      } catch (const std::exception& e) {
        finish(at, make_error(ErrorCode::INTERNAL, "decode: ", e.what()));
        continue;
      }
      if (p.done == p.tokens.size()) {
        finish(at, std::move(p.result));
      } else {
        // A chunked prefill goes to the back, so the other steps run in the next pass.
        auto keep = std::move(queue_[at]);
        queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(at));
        queue_.push_back(std::move(keep));
      }
    }
  }
}

}  // namespace realm::engine
