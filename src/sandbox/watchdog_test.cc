#include "sandbox/watchdog.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace realm::sandbox {
namespace {

using namespace std::chrono_literals;

// Spins (like guest code) until the watchdog's fire function stops it.
TEST(Watchdog, FiresWhenTheBudgetIsSpent) {
  Watchdog wd;
  std::atomic<bool> stop{false};
  std::atomic<int> fired{0};
  WatchSlot* slot = wd.add_slot([&] {
    fired++;
    stop = true;
  });
  slot->arm(20ms);
  const auto t0 = std::chrono::steady_clock::now();
  while (!stop && std::chrono::steady_clock::now() - t0 < 60s) {
  }
  EXPECT_FALSE(slot->disarm());
  EXPECT_TRUE(slot->fired());
  EXPECT_EQ(fired.load(), 1);
  // The slot is reusable: a call that ends in time does not fire.
  stop = false;
  slot->arm(std::chrono::hours(1));
  EXPECT_TRUE(slot->disarm());
  EXPECT_FALSE(slot->fired());
  EXPECT_EQ(fired.load(), 1);
}

// Time spent paused (in host functions) is not counted.
TEST(Watchdog, PausedTimeIsNotCounted) {
  Watchdog wd;
  std::atomic<int> fired{0};
  WatchSlot* slot = wd.add_slot([&] { fired++; });
  slot->arm(50ms);
  ASSERT_TRUE(slot->pause());
  std::this_thread::sleep_for(150ms);
  slot->resume();
  EXPECT_TRUE(slot->disarm());
  EXPECT_EQ(fired.load(), 0);
  EXPECT_LT(slot->used(), 50ms);
}

TEST(Watchdog, ZeroBudgetMeansNoLimit) {
  Watchdog wd;
  std::atomic<int> fired{0};
  WatchSlot* slot = wd.add_slot([&] { fired++; });
  slot->arm(0ns);
  std::this_thread::sleep_for(5ms);
  EXPECT_TRUE(slot->disarm());
  EXPECT_EQ(fired.load(), 0);
  wd.remove_slot(slot);
}

}  // namespace
}  // namespace realm::sandbox
