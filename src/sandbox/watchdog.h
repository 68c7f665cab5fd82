// Watchdog: bounds the time a thread spends in guest code. One ticker thread serves every slot;
// each slot belongs to one worker thread (one isolate) and costs two atomic operations per
// arm/disarm, with no lock on the call path (the pattern measured in notes/v8-embedding.md).
//
// A slot's state word holds (generation << 2 | state). The owner moves IDLE -> RUNNING (new
// generation) when guest code starts and RUNNING -> IDLE when it leaves (at the end of a call or
// when it enters a host function, which pauses the clock). The ticker moves an overdue RUNNING
// slot to FIRING, calls the slot's fire function (the isolate's terminate), then stores FIRED.
// An owner that loses the race waits for FIRED; the caller then clears the engine's termination.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace realm::sandbox {

class Watchdog;

class WatchSlot {
 public:
  // Starts the clock with `budget` of guest time (zero: no limit).
  void arm(std::chrono::nanoseconds budget);
  // Stops the clock. Returns false when the slot fired (the guest was terminated).
  bool disarm();
  // Pauses the clock while a host function runs. Returns false when the slot already fired.
  bool pause();
  // Resumes with what is left of the budget (after pause()).
  void resume();
  // Whether the last armed period ended by firing.
  bool fired() const { return fired_; }
  std::chrono::nanoseconds used() const { return used_; }

 private:
  friend class Watchdog;
  enum : uint64_t { IDLE = 0, RUNNING = 1, FIRING = 2, FIRED = 3 };
  void start_period();
  bool end_period();

  Watchdog* owner_ = nullptr;
  std::function<void()> fire_;
  std::atomic<uint64_t> word_{0};
  std::atomic<int64_t> deadline_ns_{0};
  // Owner-thread state.
  uint64_t gen_ = 0;
  bool limited_ = false;
  bool fired_ = false;
  std::chrono::nanoseconds budget_{0}, used_{0};
  std::chrono::steady_clock::time_point period_start_;
};

class Watchdog {
 public:
  // `tick`: the check interval while some slot runs guest code. With no slot running, the ticker
  // sleeps up to `idle_tick` (a slot that starts running wakes it), so an idle or decode-bound
  // process is not interrupted thousands of times a second.
  explicit Watchdog(std::chrono::microseconds tick = std::chrono::microseconds(1000),
                    std::chrono::microseconds idle_tick = std::chrono::microseconds(20000));
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // A slot whose timeout calls `fire` (from the ticker thread). Slots live as long as the watchdog.
  WatchSlot* add_slot(std::function<void()> fire);
  void remove_slot(WatchSlot* slot);

 private:
  void loop();

  friend class WatchSlot;
  std::chrono::microseconds tick_, idle_tick_;
  std::atomic<bool> idle_{false};  // the ticker is in its long sleep
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::vector<std::unique_ptr<WatchSlot>> slots_;
  std::thread thread_;
};

}  // namespace realm::sandbox
