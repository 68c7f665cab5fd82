// Admission: token buckets with reservations, the daily quota, concurrency and queues, on a fake
// clock.
#include "server/admission.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>

namespace realm::server {
namespace {

struct Fixture {
  std::atomic<double> now{1000};
  int64_t unix = 86400 * 20000 + 3600;
  int64_t used_before = 0;
  Admission a;
  explicit Fixture(QueueLimits q = {})
      : a(q, [this](const std::string&, int64_t) { return used_before; }) {
    a.now_s = [this] { return now.load(); };
    a.unix_s = [this] { return unix; };
  }
};

TEST(Admission, RequestsPerMinuteBucketRefills) {
  Fixture f;
  TenantQuota q{.rpm = 2, .tpm = 0, .daily_tokens = 0, .concurrency = 10};
  auto r1 = f.a.admit("t", q, 5, 5, true, nullptr);
  auto r2 = f.a.admit("t", q, 5, 5, true, nullptr);
  ASSERT_EQ(r1.refusal, Refusal::NONE);
  ASSERT_EQ(r2.refusal, Refusal::NONE);
  auto r3 = f.a.admit("t", q, 5, 5, true, nullptr);
  EXPECT_EQ(r3.refusal, Refusal::RATE_REQUESTS);
  EXPECT_NEAR(r3.retry_after_s, 30.0, 1e-9);  // one request per 30 s
  f.now += 30;
  EXPECT_EQ(f.a.admit("t", q, 5, 5, true, nullptr).refusal, Refusal::NONE);
  // Another tenant has its own bucket.
  EXPECT_EQ(f.a.admit("u", q, 5, 5, true, nullptr).refusal, Refusal::NONE);
}

TEST(Admission, TokensAreReservedAndTheUnusedPartReturned) {
  Fixture f;
  TenantQuota q{.rpm = 0, .tpm = 100, .daily_tokens = 0, .concurrency = 10};
  auto r1 = f.a.admit("t", q, 10, 50, true, nullptr);  // reserves 60
  ASSERT_EQ(r1.refusal, Refusal::NONE);
  // 40 left: a concurrent request wanting 60 cannot overdraw the bucket.
  auto r2 = f.a.admit("t", q, 10, 50, true, nullptr);
  EXPECT_EQ(r2.refusal, Refusal::RATE_TOKENS);
  EXPECT_GT(r2.retry_after_s, 0);
  // The first used only 20 of its 60: 40 go back.
  r1.ticket->finish(20);
  auto r3 = f.a.admit("t", q, 10, 50, true, nullptr);
  EXPECT_EQ(r3.refusal, Refusal::NONE);
  // The headers say what is left.
  bool found = false;
  for (const auto& [k, v] : r3.headers) {
    if (k == "x-ratelimit-remaining-tokens") {
      EXPECT_EQ(v, "20");
      found = true;
    }
  }
  EXPECT_TRUE(found);
}

TEST(Admission, TooLargeForTheTokensPerMinuteIsRefusedOrCut) {
  Fixture f;
  TenantQuota q{.rpm = 0, .tpm = 100, .daily_tokens = 0, .concurrency = 10};
  EXPECT_EQ(f.a.admit("t", q, 10, 200, true, nullptr).refusal, Refusal::TOO_LARGE);
  auto r = f.a.admit("t", q, 10, 200, false, nullptr);  // no explicit max: cut to the limit
  ASSERT_EQ(r.refusal, Refusal::NONE);
  EXPECT_EQ(r.max_tokens, 90);
}

TEST(Admission, DailyQuotaCutsMaxTokensThenRefuses) {
  Fixture f;
  f.used_before = 900;  // this UTC day so far, from the usage rows
  TenantQuota q{.rpm = 0, .tpm = 0, .daily_tokens = 1000, .concurrency = 10};
  auto r = f.a.admit("t", q, 40, 500, true, nullptr);
  ASSERT_EQ(r.refusal, Refusal::NONE);
  EXPECT_EQ(r.max_tokens, 60);  // 100 left - 40 prompt: the stream ends by length
  r.ticket->finish(100);
  auto r2 = f.a.admit("t", q, 1, 1, true, nullptr);
  EXPECT_EQ(r2.refusal, Refusal::DAILY_QUOTA);
  // The next UTC day starts again from the usage rows.
  f.unix += 86400;
  f.used_before = 0;
  EXPECT_EQ(f.a.admit("t", q, 1, 1, true, nullptr).refusal, Refusal::NONE);
}

TEST(Admission, ConcurrencyQueuesInOrderAndBoundsTheQueue) {
  QueueLimits lim;
  lim.max_waiting_per_tenant = 2;
  lim.max_waiting_total = 3;
  lim.max_wait = std::chrono::milliseconds(100000);
  Fixture f(lim);
  TenantQuota q{.rpm = 0, .tpm = 0, .daily_tokens = 0, .concurrency = 1};
  auto first = f.a.admit("t", q, 1, 1, true, nullptr);
  ASSERT_EQ(first.refusal, Refusal::NONE);
  std::vector<int> order;
  std::mutex mu;
  std::vector<std::thread> waiters;
  for (int i = 0; i < 2; ++i) {
    waiters.emplace_back([&, i] {
      auto r = f.a.admit("t", q, 1, 1, true, nullptr);
      ASSERT_EQ(r.refusal, Refusal::NONE);
      std::lock_guard<std::mutex> lock(mu);
      order.push_back(i);
      r.ticket->finish(2);
    });
    while (f.a.waiting("t") < size_t(i + 1))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // The tenant's queue is full; another tenant still gets the shared queue's last place.
  EXPECT_EQ(f.a.admit("t", q, 1, 1, true, nullptr).refusal, Refusal::QUEUE_FULL);
  auto other = f.a.admit("u", q, 1, 1, true, nullptr);
  EXPECT_EQ(other.refusal, Refusal::NONE);
  first.ticket->finish(2);
  for (auto& w : waiters) w.join();
  EXPECT_EQ(order, (std::vector<int>{0, 1}));
  EXPECT_EQ(f.a.running("t"), 0);
}

TEST(Admission, WaitingEndsByTimeoutAbandonOrShutdown) {
  QueueLimits lim;
  lim.max_wait = std::chrono::milliseconds(1000);
  Fixture f(lim);
  TenantQuota q{.rpm = 1, .tpm = 0, .daily_tokens = 0, .concurrency = 1};
  auto first = f.a.admit("t", q, 1, 1, true, nullptr);
  ASSERT_EQ(first.refusal, Refusal::NONE);
  f.now += 60;  // the rpm bucket is full again
  std::atomic<bool> gone{false};
  std::thread t([&] {
    auto r = f.a.admit("t", q, 1, 1, true, [&] { return gone.load(); });
    EXPECT_EQ(r.refusal, Refusal::ABANDONED);
  });
  while (f.a.waiting("t") == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  gone = true;
  t.join();
  // The abandoned request's reservation came back: the bucket still admits one.
  std::thread t2([&] {
    auto r = f.a.admit("t", q, 1, 1, true, nullptr);
    EXPECT_EQ(r.refusal, Refusal::QUEUE_TIMEOUT);
  });
  while (f.a.waiting("t") == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  f.now += 2;
  t2.join();
  std::thread t3([&] {
    auto r = f.a.admit("t", q, 1, 1, true, nullptr);
    EXPECT_EQ(r.refusal, Refusal::SHUTDOWN);
  });
  f.now += 60;
  while (f.a.waiting("t") == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  f.a.shutdown();
  t3.join();
}

TEST(Admission, DurationStrings) {
  EXPECT_EQ(duration_string(0.012), "12ms");
  EXPECT_EQ(duration_string(1.5), "1.5s");
  EXPECT_EQ(duration_string(360), "6m0s");
  EXPECT_EQ(duration_string(3723), "1h2m3s");
  EXPECT_EQ(duration_string(0), "0s");
}

}  // namespace
}  // namespace realm::server
