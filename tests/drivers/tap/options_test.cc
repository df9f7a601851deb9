#include "drivers/tap/options.h"

#include <vector>

#include <gtest/gtest.h>

namespace mknet::drivers {
namespace {

using namespace std::chrono_literals;

Result<Options> parse(std::vector<const char*> args, const char* runtimeDir = nullptr) {
  return parseOptions(args, runtimeDir);
}

TEST(OptionsTest, Defaults) {
  auto o = parse({});
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_EQ(o->tap, "mk0");
  EXPECT_EQ(o->stackSocket, "/run/mknet/stack.sock");
  EXPECT_FALSE(o->mac);
  EXPECT_EQ(o->spin, 50us);
  EXPECT_EQ(o->connectTimeout, 10s);
  EXPECT_EQ(o->logLevel, "info");
  EXPECT_TRUE(o->offload);
  EXPECT_FALSE(o->help);
  EXPECT_EQ(parse({}, "/tmp/rt")->stackSocket, "/tmp/rt/stack.sock");
  EXPECT_EQ(parse({}, "")->stackSocket, "/run/mknet/stack.sock");
}

TEST(OptionsTest, EveryFlagBothSpellings) {
  auto o = parse({"--tap", "mk7", "--stack-socket=/x/s.sock", "--mac", "02:AA:bb:cc:dd:ee",
                  "--spin-us=0", "--connect-timeout", "250ms", "--log-level=debug", "--no-offload",
                  "--help"});
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_EQ(o->tap, "mk7");
  EXPECT_EQ(o->stackSocket, "/x/s.sock");
  ASSERT_TRUE(o->mac);
  EXPECT_EQ(o->mac->toString(), "02:aa:bb:cc:dd:ee");
  EXPECT_EQ(o->spin, 0us);
  EXPECT_EQ(o->connectTimeout, 250ms);
  EXPECT_EQ(o->logLevel, "debug");
  EXPECT_FALSE(o->offload);
  EXPECT_TRUE(o->help);
  EXPECT_EQ(parse({"--connect-timeout=3"})->connectTimeout, 3s);
  EXPECT_EQ(parse({"--connect-timeout=4s"})->connectTimeout, 4s);
}

TEST(OptionsTest, BadInputNamesTheFlag) {
  struct Case {
    std::vector<const char*> args;
    const char* mention;
  };
  std::vector<Case> cases = {
      {{"--tap"}, "--tap"},
      {{"--tap="}, "--tap"},
      {{"--mac", "01:00:5e:00:00:01"}, "--mac"},  // multicast
      {{"--mac", "00:00:00:00:00:00"}, "--mac"},
      {{"--mac", "02:00:5e:00:00"}, "--mac"},
      {{"--spin-us", "-1"}, "--spin-us"},
      {{"--spin-us", "10x"}, "--spin-us"},
      {{"--connect-timeout", "soon"}, "--connect-timeout"},
      {{"--log-level", "loud"}, "--log-level"},
      {{"--frobnicate"}, "--frobnicate"},
      {{"mk0"}, "mk0"},
  };
  for (const auto& c : cases) {
    auto o = parse(c.args);
    ASSERT_FALSE(o) << c.mention;
    EXPECT_EQ(o.error().code, EINVAL);
    EXPECT_NE(o.error().context.find(c.mention), std::string::npos) << o.error().context;
  }
}

TEST(OptionsTest, RandomMacIsLocalUnicastAndVaries) {
  net::MacAddress a = randomLocalMac(), b = randomLocalMac();
  for (const auto& m : {a, b}) {
    EXPECT_FALSE(m.isMulticast());
    EXPECT_EQ(m.bytes()[0] & 0x02, 0x02);
  }
  EXPECT_NE(a, b);  // 46 random bits: equal with probability 2^-46
}

}  // namespace
}  // namespace mknet::drivers
