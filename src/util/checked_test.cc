#include "util/checked.h"

#include <gtest/gtest.h>

#include <limits>

namespace realm {
namespace {

TEST(Checked, AddMulDetectOverflow) {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  EXPECT_EQ(checked_add<uint64_t>(1, 2), 3u);
  EXPECT_FALSE(checked_add<uint64_t>(kMax, 1));
  EXPECT_EQ(checked_mul<uint64_t>(1ull << 31, 4), 1ull << 33);
  EXPECT_FALSE(checked_mul<uint64_t>(1ull << 32, 1ull << 32));
}

TEST(Checked, AlignUp) {
  EXPECT_EQ(checked_align_up(0, 32), 0u);
  EXPECT_EQ(checked_align_up(1, 32), 32u);
  EXPECT_EQ(checked_align_up(64, 32), 64u);
  EXPECT_FALSE(checked_align_up(std::numeric_limits<uint64_t>::max() - 3, 32));
}

TEST(Checked, RangeWithin) {
  EXPECT_TRUE(range_within(0, 10, 10));
  EXPECT_TRUE(range_within(10, 0, 10));
  EXPECT_FALSE(range_within(5, 6, 10));
  EXPECT_FALSE(range_within(11, 0, 10));
  EXPECT_FALSE(range_within(1, std::numeric_limits<uint64_t>::max(), 10));
}

}  // namespace
}  // namespace realm
