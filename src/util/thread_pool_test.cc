#include "util/thread_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

namespace realm {
namespace {

TEST(ThreadPool, CoversRangeExactlyOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 5, 64, 1000, 1001}) {
      for (int64_t grain : {1, 4, 32}) {
        std::vector<std::atomic<int>> hits(n);
        pool.parallel_for(n, grain, [&](int64_t b, int64_t e) {
          if (b % grain != 0)
            ADD_FAILURE() << "chunk start " << b << " not a multiple of " << grain;
          for (int64_t i = b; i < e; ++i) hits[i]++;
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
      }
    }
  }
}

TEST(ThreadPool, ManyRoundsReuseThreads) {
  ThreadPool pool(4);
  std::atomic<int64_t> sum{0};
  for (int r = 0; r < 2000; ++r) {
    pool.parallel_for(100, 1, [&](int64_t b, int64_t e) { sum += e - b; });
  }
  EXPECT_EQ(sum.load(), 200000);
}

// An exception from fn, on the caller or on a helper, comes back out of parallel_for after every
// thread has left the call; the pool keeps working.
TEST(ThreadPool, ExceptionsPropagateAndThePoolSurvives) {
  ThreadPool pool(4);
  for (int round = 0; round < 200; ++round) {
    const int64_t bad = round % 64;
    EXPECT_THROW(pool.parallel_for(64, 1,
                                   [&](int64_t b, int64_t e) {
                                     for (int64_t i = b; i < e; ++i) {
                                       if (i == bad) throw std::runtime_error("chunk failed");
                                     }
                                   }),
                 std::runtime_error);
    std::atomic<int64_t> sum{0};
    pool.parallel_for(100, 1, [&](int64_t b, int64_t e) { sum += e - b; });
    ASSERT_EQ(sum.load(), 100);
  }
}

// More threads than cores, with the cores also kept busy by other threads: every call still
// covers its range exactly once and finishes (chunks are claimed dynamically).
TEST(ThreadPool, OversubscribedPoolsStillCoverEverything) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> hogs;
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < cores; ++i) {
    hogs.emplace_back([&] {
      while (!stop.load()) {
      }
    });
  }
  ThreadPool pool(static_cast<int>(cores) * 2 + 1);
  for (int r = 0; r < 300; ++r) {
    std::vector<std::atomic<int>> hits(257);
    pool.parallel_for(257, 3, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[i]++;
    });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1);
  }
  stop = true;
  for (auto& t : hogs) t.join();
}

}  // namespace
}  // namespace realm
