#include "sandbox/watchdog.h"

#include <algorithm>

namespace realm::sandbox {

namespace {
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

void WatchSlot::start_period() {
  period_start_ = std::chrono::steady_clock::now();
  ++gen_;
  if (limited_) {
    const auto left = std::max(budget_ - used_, std::chrono::nanoseconds(0));
    deadline_ns_.store(now_ns() + left.count(), std::memory_order_relaxed);
    word_.store(gen_ << 2 | RUNNING, std::memory_order_seq_cst);
    if (owner_->idle_.load(std::memory_order_seq_cst)) {
      // The ticker holds the mutex from setting idle_ until it waits: no lost wake-up.
      std::lock_guard<std::mutex> lock(owner_->mu_);
      owner_->cv_.notify_one();
    }
  }
}

bool WatchSlot::end_period() {
  used_ += std::chrono::steady_clock::now() - period_start_;
  if (!limited_) return true;
  uint64_t expected = gen_ << 2 | RUNNING;
  if (word_.compare_exchange_strong(expected, gen_ << 2 | IDLE, std::memory_order_acq_rel)) {
    return true;
  }
  // The ticker won: wait until it has finished calling fire().
  while ((word_.load(std::memory_order_acquire) & 3) != FIRED) std::this_thread::yield();
  fired_ = true;
  return false;
}

void WatchSlot::arm(std::chrono::nanoseconds budget) {
  budget_ = budget;
  used_ = std::chrono::nanoseconds(0);
  limited_ = budget.count() > 0;
  fired_ = false;
  start_period();
}

bool WatchSlot::disarm() {
  if (fired_) return false;
  return end_period();
}

bool WatchSlot::pause() {
  if (fired_) return false;
  return end_period();
}

void WatchSlot::resume() {
  if (!fired_) start_period();
}

Watchdog::Watchdog(std::chrono::microseconds tick, std::chrono::microseconds idle_tick)
    : tick_(tick), idle_tick_(idle_tick), thread_([this] { loop(); }) {}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

WatchSlot* Watchdog::add_slot(std::function<void()> fire) {
  auto slot = std::make_unique<WatchSlot>();
  slot->owner_ = this;
  slot->fire_ = std::move(fire);
  std::lock_guard<std::mutex> lock(mu_);
  slots_.push_back(std::move(slot));
  return slots_.back().get();
}

void Watchdog::remove_slot(WatchSlot* slot) {
  std::lock_guard<std::mutex> lock(mu_);
  std::erase_if(slots_, [&](const std::unique_ptr<WatchSlot>& s) { return s.get() == slot; });
}

void Watchdog::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    const int64_t now = now_ns();
    bool any_running = false;
    for (auto& s : slots_) {
      uint64_t w = s->word_.load(std::memory_order_acquire);
      if ((w & 3) != WatchSlot::RUNNING) continue;
      any_running = true;
      if (s->deadline_ns_.load(std::memory_order_relaxed) > now) continue;
      const uint64_t gen = w >> 2;
      if (!s->word_.compare_exchange_strong(w, gen << 2 | WatchSlot::FIRING,
                                            std::memory_order_acq_rel)) {
        continue;
      }
      s->fire_();
      s->word_.store(gen << 2 | WatchSlot::FIRED, std::memory_order_release);
    }
    if (any_running) {
      cv_.wait_for(lock, tick_);
    } else {
      // A slot that starts running after this store wakes us; one that started between the scan
      // and this store is seen at the latest after idle_tick.
      idle_.store(true, std::memory_order_seq_cst);
      cv_.wait_for(lock, idle_tick_);
      idle_.store(false, std::memory_order_seq_cst);
    }
  }
}

}  // namespace realm::sandbox
