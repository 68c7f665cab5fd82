// ThreadPool: a fixed set of worker threads running one parallel_for at a time. The calling
// thread takes part, so a pool of n threads starts n - 1 helpers.
//
// A decode step issues a few hundred short parallel_for calls, so waking the workers must cost
// far less than a condition-variable round trip: workers spin briefly on an atomic generation
// counter before they sleep. Chunks are claimed dynamically (two per thread) and the caller
// works through them itself, so a helper the OS has not scheduled (a loaded machine, more threads
// than free cores) delays a call by at most the chunk it is running, not by a whole time slice.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
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

  // Calls fn(begin, end) on disjoint chunks covering [0, n) (each a multiple of `grain` long,
  // except the last), on whichever threads claim them; returns when all are done. If fn throws,
  // the remaining chunks are skipped and the first exception is rethrown here once no thread
  // runs fn any more. Not re-entrant: one parallel_for per pool at a time (callers serialize).
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  struct Job {
    const std::function<void(int64_t, int64_t)>* fn = nullptr;
    int64_t n = 0, chunk = 0, n_chunks = 0;
    std::atomic<int64_t> next{0};  // next unclaimed chunk
    std::atomic<int64_t> done{0};  // finished (or skipped) chunks
    std::mutex error_mu;
    std::exception_ptr error;  // the first exception fn threw
  };
  static void run_chunks(Job& job);
  void worker();

  int n_threads_;
  std::vector<std::thread> threads_;
  std::atomic<Job*> job_{nullptr};  // the caller's job while parallel_for runs
  std::atomic<int> active_{0};      // helpers that may hold a pointer to the job
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  int sleeping_ = 0;  // guarded by mu_
};

}  // namespace realm
