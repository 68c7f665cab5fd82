#include "sandbox/watchdog.h"

#include <gtest/gtest.h>

namespace realm::sandbox {
namespace {

TEST(Watchdog, Placeholder) {}

}  // namespace
}  // namespace realm::sandbox
