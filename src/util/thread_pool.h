// ThreadPool: a fixed set of worker threads running one parallel_for at a time. The calling
// thread takes part as worker 0, so a pool of n threads starts n - 1 helpers.
//
// A decode step issues a few hundred short parallel_for calls, so waking the workers must cost
// far less than a condition-variable round trip: workers spin briefly on an atomic generation
// counter before they sleep, and the caller spins on the count of unfinished chunks.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace realm {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(begin, end) on disjoint chunks covering [0, n), split evenly over the threads (each
  // chunk a multiple of `grain`, except the last); returns when all are done. Not re-entrant:
  // one parallel_for per pool at a time (callers serialize).
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker(int index);
  void run_chunk(int index);

  int n_threads_;
  std::vector<std::thread> threads_;
  // The job: written by the caller before generation_ is bumped, read by workers after.
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, grain_ = 1;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  int sleeping_ = 0;  // guarded by mu_
};

}  // namespace realm
