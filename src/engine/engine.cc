#include "engine/engine.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <list>

#include "util/fault_injection.h"

namespace realm::engine {

using model::kKvBlockTokens;

struct Tenant {
  double counter = 0;  // virtual tokens served
  int active = 0;      // engaged sessions (a step queued, or admitted)
};

struct Pending {
  Session* session = nullptr;
  int64_t start = 0;   // the session's size when the step was submitted
  int64_t target = 0;  // its size when the step is done
  bool all_logits = false;
  bool looked_up = false;  // counted in the prefix-cache queries
  bool charged = false;    // its tenant has been charged for it
  uint64_t seq = 0;        // submission order
  std::shared_ptr<const std::atomic<bool>> cancel;
  StepResult result;
  std::promise<Expected<StepResult>> promise;
};

// The state shared by an engine, its scheduler thread and its sessions (which may outlive it).
struct Core {
  EngineOptions options;
  model::Hparams hp;
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::list<std::unique_ptr<Pending>> queue;
  std::vector<Session*> running;  // admitted sessions
  std::map<std::string, Tenant> tenants;
  std::shared_ptr<model::KvPool> pools[2];  // by KvType, created on first use
  EngineStats stats;
  uint64_t seq = 0, admissions = 0;
  // The sessions whose step the last pass completed: running sessions step again within moments
  // (their caller samples and submits), so the next pass waits briefly for them to fill it.
  std::vector<Session*> awaited;
  double last_pass_ms = 0;
  bool awaited_back() const {
    for (const Session* s : awaited) {
      if (!s->busy_ && s->admitted_) return false;
    }
    return true;
  }

  Expected<std::shared_ptr<model::KvPool>> pool(model::KvType type) {
    auto& p = pools[static_cast<int>(type)];
    if (!p) {
      auto made = model::KvPool::create(
          hp, type, model::KvPool::blocks_for_bytes(hp, type, options.kv_budget_bytes));
      if (!made) return made.take_error();
      p = std::move(*made);
    }
    return p;
  }

  // The tenant's place in the fairness order: lower is served first.
  bool before(const Session& a, const Session& b) const {
    if (options.policy == SchedulePolicy::VTC && a.tenant_->counter != b.tenant_->counter) {
      return a.tenant_->counter < b.tenant_->counter;
    }
    return a.admitted_at_ < b.admitted_at_;
  }

  void charge(Session& s, double tokens) { s.tenant_->counter += tokens / s.options_.weight; }

  // Gives back a running session's blocks; it waits to be admitted again (mu held).
  void preempt(Session& s) {
    s.cache_.clear();
    s.admitted_ = false;
    running.erase(std::find(running.begin(), running.end(), &s));
    s.set_engaged();
    ++stats.preemptions;
  }

  void admit(Session& s) {
    s.admitted_ = true;
    s.admitted_at_ = ++admissions;
    running.push_back(&s);
    s.set_engaged();
  }

  // Reuses cached full blocks for the step's next positions (mu held).
  void look_up(Pending& p) {
    Session& s = *p.session;
    if (!s.options_.prefix_namespace) return;
    if (!p.looked_up) {
      p.looked_up = true;
      if (p.target - p.start >= 2)
        stats.prefix_queries += static_cast<uint64_t>(p.target - p.start);
    }
    // The positions whose logits the step returns are computed.
    const int64_t limit = p.all_logits ? p.start : p.target - 1;
    model::KvPool& pool = *s.cache_.pool();
    while (s.cache_.size() % kKvBlockTokens == 0 && s.cache_.size() + kKvBlockTokens <= limit) {
      const int64_t b = s.cache_.size() / kKvBlockTokens;
      const int32_t block = pool.lookup(s.key(b));
      if (block < 0) break;
      s.cache_.attach(block);
      s.published_ = std::max(s.published_, b + 1);
      const int64_t lo = std::max(b * kKvBlockTokens, p.start);
      const int64_t hi = std::min((b + 1) * kKvBlockTokens, p.target);
      if (hi > lo) {
        p.result.cached_tokens += hi - lo;
        stats.prefix_hits += static_cast<uint64_t>(hi - lo);
      }
    }
  }

  // Ends a step (mu held): a failed one leaves its session as it was before it.
  void finish(Pending* p, Expected<StepResult> result) {
    Session& s = *p->session;
    if (!result) {
      s.tokens_.resize(static_cast<size_t>(p->start));
      if (s.cache_.size() > p->start) s.cache_.truncate(p->start);
      const auto full = static_cast<size_t>(p->start / kKvBlockTokens);
      if (s.keys_.size() > full) s.keys_.resize(full);
      s.published_ = std::min<int64_t>(s.published_, p->start / kKvBlockTokens);
    }
    // The session is released before the promise is set: the waiter may destroy the session as
    // soon as it has its result.
    s.busy_ = false;
    s.set_engaged();
    p->promise.set_value(std::move(result));
    queue.remove_if([&](const std::unique_ptr<Pending>& q) { return q.get() == p; });
  }

  struct Take {
    Pending* p;
    int64_t from, n;
  };
  std::vector<Take> plan();
};

// ---- Session ------------------------------------------------------------------------------------

Session::Session(std::shared_ptr<Core> core, std::shared_ptr<model::KvPool> pool, int64_t n_ctx,
                 Tenant* tenant, SessionOptions options)
    : core_(std::move(core)),
      n_ctx_(n_ctx),
      cache_(std::move(pool), n_ctx),
      tenant_(tenant),
      options_(std::move(options)) {
  if (!(options_.weight > 0)) options_.weight = 1.0;
}

Session::~Session() {
  std::lock_guard<std::mutex> lock(core_->mu);
  if (admitted_) {
    core_->running.erase(std::find(core_->running.begin(), core_->running.end(), this));
    admitted_ = false;
  }
  busy_ = false;
  set_engaged();
  cache_.clear();
  core_->stats.sessions -= 1;
  auto& aw = core_->awaited;
  aw.erase(std::remove(aw.begin(), aw.end(), this), aw.end());
  core_->cv.notify_all();  // blocks were given back
}

int64_t Session::size() const {
  std::lock_guard<std::mutex> lock(core_->mu);
  return static_cast<int64_t>(tokens_.size());
}

void Session::truncate(int64_t n) {
  std::lock_guard<std::mutex> lock(core_->mu);
  if (n < 0 || n >= static_cast<int64_t>(tokens_.size())) return;
  tokens_.resize(static_cast<size_t>(n));
  if (cache_.size() > n) cache_.truncate(n);
  const auto full = static_cast<size_t>(n / kKvBlockTokens);
  if (keys_.size() > full) keys_.resize(full);
  published_ = std::min<int64_t>(published_, n / kKvBlockTokens);
  core_->cv.notify_all();
}

const model::BlockKey& Session::key(int64_t b) {
  while (static_cast<int64_t>(keys_.size()) <= b) {
    const model::BlockKey prev =
        keys_.empty() ? model::root_key(*options_.prefix_namespace) : keys_.back();
    const size_t at = keys_.size() * static_cast<size_t>(kKvBlockTokens);
    keys_.push_back(model::chain_key(
        prev, std::span<const int32_t>(tokens_).subspan(at, static_cast<size_t>(kKvBlockTokens))));
  }
  return keys_[static_cast<size_t>(b)];
}

void Session::set_engaged() {
  const bool now = busy_ || admitted_;
  if (now == engaged_) return;
  engaged_ = now;
  if (!now) {
    --tenant_->active;
    return;
  }
  if (tenant_->active++ == 0) {
    // Backlogged again: lifted to the lowest counter among the backlogged tenants.
    double lowest = 0;
    bool any = false;
    for (const auto& [name, t] : core_->tenants) {
      if (&t == tenant_ || t.active == 0) continue;
      lowest = any ? std::min(lowest, t.counter) : t.counter;
      any = true;
    }
    if (any) tenant_->counter = std::max(tenant_->counter, lowest);
  }
}

// ---- the scheduler's plan -----------------------------------------------------------------------

std::vector<Core::Take> Core::plan() {
  for (auto it = queue.begin(); it != queue.end();) {
    Pending* p = (it++)->get();
    if (p->cancel && p->cancel->load(std::memory_order_relaxed)) {
      finish(p, make_error(ErrorCode::CANCELLED, "decode: cancelled"));
    }
  }
  // Decode steps of running sessions, then their longer steps, then admissions; each group in the
  // fairness order (FIFO: submission order).
  std::vector<Pending*> order;
  for (auto& p : queue) order.push_back(p.get());
  const auto group = [](const Pending* p) {
    const Session& s = *p->session;
    if (!s.admitted_) return 2;
    return p->target - s.cache_.size() == 1 ? 0 : 1;
  };
  std::stable_sort(order.begin(), order.end(), [&](const Pending* a, const Pending* b) {
    const int ga = group(a), gb = group(b);
    if (ga != gb) return ga < gb;
    if (options.policy == SchedulePolicy::VTC &&
        a->session->tenant_->counter != b->session->tenant_->counter) {
      return a->session->tenant_->counter < b->session->tenant_->counter;
    }
    return a->seq < b->seq;
  });

  std::vector<Take> takes;
  std::vector<const Session*> in_pass;
  const auto taken = [&](const Session* s) {
    return std::find(in_pass.begin(), in_pass.end(), s) != in_pass.end();
  };
  int64_t budget = options.max_batch_tokens;
  bool admission_closed = false;
  for (Pending* p : order) {
    if (budget <= 0) break;
    Session& s = *p->session;
    model::KvPool& pool = *s.cache_.pool();
    if (!s.admitted_) {
      if (admission_closed) continue;
      const int64_t need = (p->target + kKvBlockTokens - 1) / kKvBlockTokens;
      if (static_cast<int64_t>(running.size()) >= options.max_seqs ||
          need > pool.available_blocks()) {
        // The session first in the order waits, and the ones behind it with it.
        admission_closed = true;
        continue;
      }
      admit(s);
    }
    look_up(*p);
    if (!p->charged) {
      p->charged = true;
      const int64_t fresh = p->target - std::max(p->start, s.cache_.size());
      // A one-token step after the prompt is a decoded token; recomputed tokens are free.
      charge(s, p->target - p->start == 1 && p->start > 0 ? 2.0 : static_cast<double>(fresh));
    }
    const int64_t from = s.cache_.size();
    const int64_t n = std::min(p->target - from, budget);
    bool self_preempted = false;
    while (s.cache_.blocks_needed(from + n) > pool.available_blocks()) {
      Session* victim = nullptr;
      for (Session* r : running) {
        if (r == &s || taken(r) || r->cache_.n_blocks() == 0 || r->cache_.pool().get() != &pool) {
          continue;
        }
        if (!victim || before(*victim, *r)) victim = r;
      }
      if (!victim) break;
      if (before(*victim, s)) {
        // This session is the most served: it gives its blocks back instead.
        if (s.cache_.n_blocks() > 0) {
          preempt(s);
          self_preempted = true;
          break;
        }
      }
      preempt(*victim);
    }
    if (self_preempted) continue;
    if (s.cache_.blocks_needed(from + n) > pool.available_blocks()) {
      if (takes.empty()) {
        bool others_hold = false;
        for (Session* r : running) others_hold |= r != &s && r->cache_.n_blocks() > 0;
        if (!others_hold) {
          finish(p, make_error(ErrorCode::LIMIT, "the KV budget (", pool.n_blocks(), " blocks of ",
                               kKvBlockTokens, " positions) cannot hold this session"));
          continue;
        }
      }
      continue;  // next pass
    }
    s.cache_.reserve(from + n);
    takes.push_back({p, from, n});
    in_pass.push_back(&s);
    budget -= n;
  }
  return takes;
}

// ---- Engine -------------------------------------------------------------------------------------

namespace {
// Options are fixed before the scheduler thread starts reading them.
EngineOptions clamped(EngineOptions o) {
  o.max_batch_tokens = std::max<int64_t>(1, o.max_batch_tokens);
  o.max_seqs = std::max(1, o.max_seqs);
  return o;
}
}  // namespace

Engine::Engine(std::shared_ptr<const model::Model> model, EngineOptions options)
    : model_(std::move(model)),
      options_(clamped(options)),
      ws_(options.n_threads),
      core_(std::make_shared<Core>()) {
  core_->options = options_;
  core_->hp = model_->hparams();
  worker_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(core_->mu);
    core_->stop = true;
  }
  core_->cv.notify_all();
  worker_.join();
  std::lock_guard<std::mutex> lock(core_->mu);
  while (!core_->queue.empty()) {
    core_->finish(core_->queue.front().get(), make_error(ErrorCode::UNAVAILABLE, "engine stopped"));
  }
}

std::unique_ptr<Session> Engine::open_session(int64_t n_ctx, SessionOptions options) {
  std::lock_guard<std::mutex> lock(core_->mu);
  auto pool = core_->pool(options.kv_type);
  if (!pool) throw std::bad_alloc();
  Tenant* t = &core_->tenants[options.tenant];
  core_->stats.sessions += 1;
  return std::unique_ptr<Session>(new Session(core_, *pool, n_ctx, t, std::move(options)));
}

std::future<Expected<StepResult>> Engine::submit(Session& session, std::vector<int32_t> tokens,
                                                 bool all_logits,
                                                 std::shared_ptr<const std::atomic<bool>> cancel) {
  auto p = std::make_unique<Pending>();
  auto future = p->promise.get_future();
  const int64_t n_vocab = model_->hparams().n_vocab;
  std::unique_lock<std::mutex> lock(core_->mu);
  const auto size = static_cast<int64_t>(session.tokens_.size());
  const auto n = static_cast<int64_t>(tokens.size());
  const int64_t pool_tokens = session.cache_.pool()->n_blocks() * kKvBlockTokens;
  Error err;
  bool bad = false;
  if (tokens.empty()) {
    err = make_error("decode: no tokens");
    bad = true;
  } else if (size + n > session.n_ctx()) {
    err = make_error(ErrorCode::LIMIT, "context full: ", size, " tokens in the session + ", n,
                     " new exceed the context size ", session.n_ctx());
    bad = true;
  } else if (size + n > pool_tokens) {
    err = make_error(ErrorCode::LIMIT, "the session's ", size + n,
                     " tokens exceed the KV budget of ", pool_tokens, " tokens");
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
  if (!bad && session.busy_) {
    err = make_error(ErrorCode::FAILED_PRECONDITION,
                     "decode: the session already has a step in flight");
    bad = true;
  }
  if (bad) {
    p->promise.set_value(std::move(err));
    return future;
  }
  if (core_->stop) {
    p->promise.set_value(make_error(ErrorCode::UNAVAILABLE, "engine stopped"));
    return future;
  }
  session.tokens_.insert(session.tokens_.end(), tokens.begin(), tokens.end());
  session.busy_ = true;
  session.set_engaged();
  p->session = &session;
  p->start = size;
  p->target = size + n;
  p->all_logits = all_logits;
  p->cancel = std::move(cancel);
  p->seq = ++core_->seq;
  core_->queue.push_back(std::move(p));
  lock.unlock();
  core_->cv.notify_all();
  return future;
}

Expected<StepResult> Engine::decode(Session& session, std::vector<int32_t> tokens, bool all_logits,
                                    std::shared_ptr<const std::atomic<bool>> cancel) {
  return submit(session, std::move(tokens), all_logits, std::move(cancel)).get();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(core_->mu);
  EngineStats s = core_->stats;
  s.running = static_cast<int64_t>(core_->running.size());
  // The budget of the cache type in use (F16 when none is yet).
  s.max_session_tokens = max_session_tokens(
      core_->pools[0] || !core_->pools[1] ? model::KvType::F16 : model::KvType::F32);
  for (const auto& p : core_->queue) s.waiting += p->session->admitted_ ? 0 : 1;
  for (const auto& pool : core_->pools) {
    if (!pool) continue;
    s.kv_blocks += pool->n_blocks();
    s.kv_blocks_used += pool->used_blocks();
    s.kv_blocks_cached += pool->cached_blocks();
    s.kv_block_bytes = pool->block_bytes();
  }
  return s;
}

int64_t Engine::max_session_tokens(model::KvType kv) const {
  return model::KvPool::blocks_for_bytes(model_->hparams(), kv, options_.kv_budget_bytes) *
         kKvBlockTokens;
}

double Engine::tenant_counter(const std::string& tenant) const {
  std::lock_guard<std::mutex> lock(core_->mu);
  auto it = core_->tenants.find(tenant);
  return it == core_->tenants.end() ? 0.0 : it->second.counter;
}

void Engine::loop() {
  Core& c = *core_;
  const int64_t n_vocab = model_->hparams().n_vocab;
  for (;;) {
    std::vector<Core::Take> takes;
    {
      std::unique_lock<std::mutex> lock(c.mu);
      c.cv.wait(lock, [&] { return c.stop || !c.queue.empty(); });
      if (c.stop) return;
      // Gather the running sessions of the last pass (a fifth of its time at most, 5 ms), so one
      // early step does not leave with a pass of its own and the rest wait for the next one.
      const auto gather =
          std::chrono::microseconds(static_cast<int64_t>(std::min(5000.0, c.last_pass_ms * 200.0)));
      c.cv.wait_for(lock, gather, [&] { return c.stop || c.awaited_back(); });
      if (c.stop) return;
      takes = c.plan();
      if (takes.empty()) {
        // Everything queued waits for blocks or a free slot: a session ending or shrinking
        // notifies; a cancel flag is seen at the latest here.
        c.cv.wait_for(lock, std::chrono::milliseconds(20));
        continue;
      }
    }
    std::vector<std::vector<float>> logits(takes.size());
    Status st;
    double last_ms = 0;
    try {
      std::vector<model::SequenceStep> steps;
      for (size_t i = 0; i < takes.size(); ++i) {
        const Core::Take& t = takes[i];
        Session& s = *t.p->session;
        const int64_t rows = t.p->all_logits ? t.n : 1;
        logits[i].resize(static_cast<size_t>(rows * n_vocab));
        model::SequenceStep step;
        step.cache = &s.cache_;
        step.tokens = std::span<const int32_t>(s.tokens_).subspan(static_cast<size_t>(t.from),
                                                                  static_cast<size_t>(t.n));
        step.all_logits = t.p->all_logits;
        step.logits = logits[i];
        steps.push_back(step);
      }
      fault::point(fault::Site::FORWARD);
      const auto t0 = std::chrono::steady_clock::now();
      st = model_->forward(steps, ws_);
      last_ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    } catch (const std::exception& e) {
      st = make_error(ErrorCode::INTERNAL, "forward pass failed: ", e.what());
    } catch (...) {
      st = make_error(ErrorCode::INTERNAL, "forward pass failed: unknown exception");
    }
    std::lock_guard<std::mutex> lock(c.mu);
    ++c.stats.batches;
    c.last_pass_ms = last_ms;
    c.awaited.clear();
    for (const auto& t : takes) c.stats.tokens += static_cast<uint64_t>(t.n);
    for (size_t i = 0; i < takes.size(); ++i) {
      Pending& p = *takes[i].p;
      Session& s = *p.session;
      if (!st) {
        Error e = st.error();
        e.code = ErrorCode::INTERNAL;  // the steps were checked at submit: a host fault
        c.finish(&p, std::move(e));
        continue;
      }
      // Full blocks go to the prefix cache.
      if (s.options_.prefix_namespace) {
        model::KvPool& pool = *s.cache_.pool();
        for (int64_t b = s.published_; b < s.cache_.size() / kKvBlockTokens; ++b) {
          pool.publish(s.cache_.block(b), s.key(b));
        }
        s.published_ = std::max(s.published_, s.cache_.size() / kKvBlockTokens);
      }
      const int64_t from = takes[i].from, end = from + takes[i].n;
      try {
        if (p.all_logits) {
          const int64_t skip = std::max<int64_t>(0, p.start - from);  // recomputed positions
          if (skip < takes[i].n) {
            p.result.logits.insert(p.result.logits.end(), logits[i].begin() + skip * n_vocab,
                                   logits[i].end());
          }
        } else if (end == p.target) {
          p.result.logits = std::move(logits[i]);
        }
      } catch (const std::exception& e) {
        c.finish(&p, make_error(ErrorCode::INTERNAL, "decode: ", e.what()));
        continue;
      }
      if (end == p.target) {
        c.awaited.push_back(&s);
        c.finish(&p, std::move(p.result));
      }
    }
  }
}

}  // namespace realm::engine
