// Flags and the number parsers shared by the example apps.
#include "flags.h"

#include <gtest/gtest.h>

#include <vector>

namespace mknet::examples {
namespace {

constexpr FlagSpec kSpecs[] = {{"port", true}, {"udp", false}, {"bytes", true}};

std::optional<Flags> parseWords(std::vector<std::string> words, std::string* error) {
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  return Flags::parse(argv, kSpecs, error);
}

TEST(FlagsTest, AcceptsBothValueFormsAndSwitches) {
  std::string error;
  const auto flags = parseWords({"--port", "80", "--udp", "--bytes=1M"}, &error);
  ASSERT_TRUE(flags) << error;
  EXPECT_EQ(flags->value("port"), "80");
  EXPECT_EQ(flags->value("bytes"), "1M");
  EXPECT_TRUE(flags->has("udp"));
  EXPECT_FALSE(flags->value("missing"));
  EXPECT_FALSE(flags->has("missing"));
}

TEST(FlagsTest, CountFlagsInRange) {
  std::string error;
  const auto flags = parseWords({"--bytes", "2K", "--port", "x"}, &error);
  ASSERT_TRUE(flags) << error;
  uint64_t n = 7;
  EXPECT_TRUE(flags->count("missing", &n, 1, 10));
  EXPECT_EQ(n, 7u);  // absent: left alone
  EXPECT_TRUE(flags->count("bytes", &n, 1, 4096));
  EXPECT_EQ(n, 2048u);
  n = 7;
  EXPECT_FALSE(flags->count("bytes", &n, 1, 2047));  // above the range
  EXPECT_FALSE(flags->count("bytes", &n, 2049, 4096));  // below it
  EXPECT_FALSE(flags->count("port", &n, 0, UINT64_MAX));  // not a count
  EXPECT_EQ(n, 7u);
}

TEST(FlagsTest, RefusesWhatItDoesNotKnow) {
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"--bogus"}, "unknown flag --bogus"},
      {{"--port"}, "flag --port needs a value"},
      {{"--udp=yes"}, "flag --udp takes no value"},
      {{"--port", "1", "--port", "2"}, "flag --port given twice"},
      {{"stray"}, "unexpected argument 'stray'"},
      {{"-p"}, "unexpected argument '-p'"},
  };
  for (const auto& [words, message] : cases) {
    std::string error;
    EXPECT_FALSE(parseWords(words, &error));
    EXPECT_EQ(error, message);
  }
}

TEST(FlagsTest, ParsesCountsPortsAndSeconds) {
  EXPECT_EQ(parseCount("0"), 0u);
  EXPECT_EQ(parseCount("1000003"), 1000003u);
  EXPECT_EQ(parseCount("256K"), 256u << 10);
  EXPECT_EQ(parseCount("256M"), 256u << 20);
  EXPECT_EQ(parseCount("4g"), 4ull << 30);
  EXPECT_EQ(parseCount("1T"), 1ull << 40);
  EXPECT_EQ(parseCount("18446744073709551615"), UINT64_MAX);
  for (const char* bad : {"", "M", "-1", "+1", "1.5M", "1MB", "12X", "18446744073709551616", "17179869184G"}) {
    EXPECT_FALSE(parseCount(bad)) << bad;
  }
  EXPECT_EQ(parsePort("0"), 0);
  EXPECT_EQ(parsePort("65535"), 65535);
  EXPECT_FALSE(parsePort("65536"));
  EXPECT_FALSE(parsePort("80a"));
  EXPECT_FALSE(parsePort(""));
  EXPECT_EQ(parseSeconds("0.5"), 0.5);
  EXPECT_EQ(parseSeconds("30"), 30.0);
  EXPECT_FALSE(parseSeconds("0"));
  EXPECT_FALSE(parseSeconds("-1"));
  EXPECT_FALSE(parseSeconds("1s"));
  EXPECT_FALSE(parseSeconds("inf"));
}

}  // namespace
}  // namespace mknet::examples
