#include "servers/supervisor/options.h"

#include <gtest/gtest.h>

#include <vector>

namespace mknet::supervisor {
namespace {

using Words = std::vector<std::string>;

Result<Options> parse(const std::vector<const char*>& args, const char* env = nullptr) {
  return parseOptions(std::span<const char* const>(args.data(), args.size()), env);
}

TEST(SplitWords, PlainQuotedAndEscaped) {
  EXPECT_EQ(*splitWords("a b\t c"), (Words{"a", "b", "c"}));
  EXPECT_EQ(*splitWords("  "), Words{});
  EXPECT_EQ(*splitWords("'/my dir/bin' --x"), (Words{"/my dir/bin", "--x"}));
  EXPECT_EQ(*splitWords("\"a \\\"b\\\" $HOME\""), (Words{"a \"b\" $HOME"}));
  EXPECT_EQ(*splitWords("a\\ b c"), (Words{"a b", "c"}));
  EXPECT_EQ(*splitWords("x''y \"\""), (Words{"xy", ""}));
  EXPECT_EQ(*splitWords("'it''s'"), (Words{"its"}));
}

TEST(SplitWords, Errors) {
  EXPECT_FALSE(splitWords("'open"));
  EXPECT_FALSE(splitWords("\"open"));
  EXPECT_FALSE(splitWords("trailing\\"));
  EXPECT_EQ(splitWords("'open").error().code, EINVAL);
}

TEST(Options, StackAndDriversWithDefaults) {
  auto o = parse({"--driver", "d1=ip netns exec ns '/a b/drv' --tap mk0", "--stack",
                  "stack=/bin/stack --ip 1.2.3.4/24", "--driver", "d2=/bin/d2"},
                 "/tmp/rt");
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_EQ(o->runtimeDir, "/tmp/rt");
  EXPECT_EQ(o->socketPath, "/tmp/rt/supervisor.sock");
  ASSERT_EQ(o->processes.size(), 3u);
  // The stack first, drivers in the order given.
  EXPECT_EQ(o->processes[0].name, "stack");
  EXPECT_EQ(o->processes[0].role, Role::kStack);
  EXPECT_EQ(o->processes[1].name, "d1");
  EXPECT_EQ(o->processes[1].argv, (Words{"ip", "netns", "exec", "ns", "/a b/drv", "--tap", "mk0"}));
  EXPECT_EQ(o->processes[2].name, "d2");
  EXPECT_EQ(o->backoff.initial.count(), 100);
  EXPECT_EQ(o->backoff.max.count(), 2000);
  EXPECT_EQ(o->backoff.healthy.count(), 30000);
  EXPECT_EQ(o->stopTimeout.count(), 5000);
  EXPECT_TRUE(o->childLogs);
}

TEST(Options, ArgAppendsVerbatim) {
  auto o = parse({"--runtime-dir", "/r d", "--stack", "s", "--arg", "/with space/bin", "--arg", "--ip",
                  "--arg", "'q'", "--driver", "d=x", "--arg", "--tap", "--arg=a=b"});
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_EQ(o->runtimeDir, "/r d");
  EXPECT_EQ(o->socketPath, "/r d/supervisor.sock");
  EXPECT_EQ(o->processes[0].argv, (Words{"/with space/bin", "--ip", "'q'"}));
  EXPECT_EQ(o->processes[1].argv, (Words{"x", "--tap", "a=b"}));
}

TEST(Options, Flags) {
  auto o = parse({"--driver=d=/bin/true", "--backoff-initial-ms=50", "--backoff-max-ms", "400",
                  "--healthy-ms", "1000", "--stop-timeout-ms", "300", "--socket", "/tmp/s.sock",
                  "--log-level", "debug", "--no-child-logs"});
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_EQ(o->runtimeDir, "/run/mknet");
  EXPECT_EQ(o->processes[0].name, "d");
  EXPECT_EQ(o->backoff.initial.count(), 50);
  EXPECT_EQ(o->backoff.max.count(), 400);
  EXPECT_EQ(o->backoff.healthy.count(), 1000);
  EXPECT_EQ(o->stopTimeout.count(), 300);
  EXPECT_EQ(o->socketPath, "/tmp/s.sock");
  EXPECT_EQ(o->logLevel, "debug");
  EXPECT_FALSE(o->childLogs);
}

TEST(Options, Help) {
  auto o = parse({"--help"});
  ASSERT_TRUE(o);
  EXPECT_TRUE(o->help);
  EXPECT_NE(usage().find("--driver NAME"), std::string::npos);
}

TEST(Options, Errors) {
  auto fails = [](const std::vector<const char*>& args, const std::string& needle) {
    auto o = parse(args);
    if (o) return ::testing::AssertionFailure() << "accepted";
    if (o.error().code != EINVAL) return ::testing::AssertionFailure() << "code " << o.error().code;
    if (o.error().context.find(needle) == std::string::npos)
      return ::testing::AssertionFailure() << "'" << o.error().context << "' lacks '" << needle << "'";
    return ::testing::AssertionSuccess();
  };
  EXPECT_TRUE(fails({}, "nothing to supervise"));
  EXPECT_TRUE(fails({"--stack", "a=x", "--stack", "b=y"}, "twice"));
  EXPECT_TRUE(fails({"--arg", "x"}, "before any"));
  EXPECT_TRUE(fails({"--driver", "d=x", "--arg"}, "needs a value"));
  EXPECT_TRUE(fails({"--driver", "d"}, "no command"));
  EXPECT_TRUE(fails({"--driver", "a/b=x"}, "bad name"));
  EXPECT_TRUE(fails({"--driver", "supervisor=x"}, "bad name"));
  EXPECT_TRUE(fails({"--driver", "d=x", "--driver", "d=y"}, "two processes named"));
  EXPECT_TRUE(fails({"--driver", "d='x"}, "unterminated"));
  EXPECT_TRUE(fails({"--driver", "d=x", "--backoff-max-ms", "abc"}, "--backoff-max-ms"));
  EXPECT_TRUE(fails({"--driver", "d=x", "--healthy-ms", "0"}, "--healthy-ms"));
  EXPECT_TRUE(fails({"--driver", "d=x", "--backoff-initial-ms", "3000"}, "above"));
  EXPECT_TRUE(fails({"--driver", "d=x", "--log-level", "loud"}, "--log-level"));
  EXPECT_TRUE(fails({"--driver", "d=x", "--frobnicate"}, "--frobnicate"));
  EXPECT_TRUE(fails({"--driver", "d=x", "--runtime-dir"}, "needs a value"));
}

}  // namespace
}  // namespace mknet::supervisor
