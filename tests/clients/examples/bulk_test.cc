// mknet-bulk-kernel as real processes on loopback: both ends must agree on
// the byte count and SHA-256 of 256 MiB, in both directions, and that digest
// must equal sha256sum's of the stream generated on its own, off the network.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>

#include "app_harness.h"

namespace mknet::testing {
namespace {

const std::string kBulk = MKNET_BULK_KERNEL;
constexpr uint64_t k256MiB = 256ull << 20;

// The stream's definition, written out again here from the contract in
// prng_stream.h rather than by including it: splitmix64 from state = seed,
// each output little-endian.
std::vector<unsigned char> referenceStream(uint64_t seed, size_t n) {
  std::vector<unsigned char> out;
  out.reserve(n + 8);
  uint64_t state = seed;
  while (out.size() < n) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<unsigned char>(z >> (8 * i)));
  }
  out.resize(n);
  return out;
}

class BulkAppTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.valid()); }

  // `mknet-bulk dump` piped into sha256sum: the stream's digest computed by
  // an independent SHA-256 implementation, without any socket in between.
  std::string referenceDigest(uint64_t bytes, uint64_t seed) {
    int pipeFds[2];
    if (::pipe2(pipeFds, O_CLOEXEC) != 0) return "pipe failed";
    const std::string out = dir_.file("sha256sum.out");
    const int outFd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ChildProcess dump = ChildProcess::start(
        {kBulk, "dump", "--bytes", std::to_string(bytes), "--seed", std::to_string(seed)}, {-1, pipeFds[1], -1});
    ChildProcess sum = ChildProcess::start({"sha256sum"}, {pipeFds[0], outFd, -1});
    // Only the children hold the pipe now, so sha256sum sees EOF when dump exits.
    ::close(pipeFds[0]);
    ::close(pipeFds[1]);
    ::close(outFd);
    EXPECT_EQ(exitCode(dump.wait(25s)), 0);
    EXPECT_EQ(exitCode(sum.wait(25s)), 0);
    const std::string text = readFile(out);
    return text.substr(0, text.find(' '));
  }

  // Runs one app to completion; the key=value pairs of its last line.
  std::map<std::string, std::string> runToEnd(ChildProcess& p, const std::string& outPath,
                                              const std::string& errPath) {
    const auto status = p.wait(25s);
    EXPECT_EQ(exitCode(status), 0) << describeStatus(status) << "\n" << readFile(errPath);
    const auto outLines = lines(readFile(outPath));
    return outLines.empty() ? std::map<std::string, std::string>{} : parseKeyValues(outLines.back());
  }

  TempDir dir_;
};

TEST_F(BulkAppTest, DumpIsTheSpecifiedStreamWhateverTheChunking) {
  const size_t n = (1 << 20) + 3;  // not a multiple of the 8-byte word
  const auto want = referenceStream(5, n);
  for (const char* buffer : {"256K", "7"}) {
    const std::string out = dir_.file(std::string("dump-") + buffer);
    ChildProcess dump = ChildProcess::startLogged(
        {kBulk, "dump", "--bytes", std::to_string(n), "--seed", "5", "--buffer", buffer}, out, dir_.file("dump.err"));
    ASSERT_EQ(exitCode(dump.wait(20s)), 0) << readFile(dir_.file("dump.err"));
    const std::string got = readFile(out);
    ASSERT_EQ(got.size(), n) << "--buffer " << buffer;
    EXPECT_EQ(std::memcmp(got.data(), want.data(), n), 0) << "--buffer " << buffer;
  }
}

TEST_F(BulkAppTest, SendToSinkDelivers256MiBIntact) {
  RunningServer sink =
      startServer(dir_, "sink", {kBulk, "sink", "--port", "0", "--bind", "127.0.0.1", "--once"});
  ASSERT_NE(sink.port, 0) << readFile(sink.errPath);

  const std::string out = dir_.file("send.out");
  const std::string err = dir_.file("send.err");
  ChildProcess send = ChildProcess::startLogged({kBulk, "send", "--connect", "127.0.0.1:" + std::to_string(sink.port),
                                                 "--bytes", "256M", "--seed", "42"},
                                                out, err);
  const auto sent = runToEnd(send, out, err);
  const auto received = runToEnd(sink.process, sink.outPath, sink.errPath);

  ASSERT_EQ(sent.count("sha256"), 1u);
  ASSERT_EQ(received.count("sha256"), 1u);
  EXPECT_EQ(field(sent, "mode"), "send");
  EXPECT_EQ(field(received, "mode"), "sink");
  EXPECT_EQ(field(sent, "bytes"), std::to_string(k256MiB));
  EXPECT_EQ(field(received, "bytes"), std::to_string(k256MiB));
  EXPECT_EQ(field(received, "sha256"), field(sent, "sha256"));
  EXPECT_EQ(field(sent, "sha256"), referenceDigest(k256MiB, 42));
  EXPECT_GT(std::stod(field(received, "gbps")), 0.0);
}

TEST_F(BulkAppTest, ServeToRecvDelivers256MiBIntact) {
  RunningServer serve = startServer(
      dir_, "serve", {kBulk, "serve", "--port", "0", "--bind", "127.0.0.1", "--bytes", "256M", "--seed", "9", "--once"});
  ASSERT_NE(serve.port, 0) << readFile(serve.errPath);

  const std::string out = dir_.file("recv.out");
  const std::string err = dir_.file("recv.err");
  ChildProcess recv =
      ChildProcess::startLogged({kBulk, "recv", "--connect", "127.0.0.1:" + std::to_string(serve.port)}, out, err);
  const auto received = runToEnd(recv, out, err);
  const auto sent = runToEnd(serve.process, serve.outPath, serve.errPath);

  ASSERT_EQ(sent.count("sha256"), 1u);
  ASSERT_EQ(received.count("sha256"), 1u);
  EXPECT_EQ(field(sent, "bytes"), std::to_string(k256MiB));
  EXPECT_EQ(field(received, "bytes"), std::to_string(k256MiB));
  EXPECT_EQ(field(received, "sha256"), field(sent, "sha256"));
  EXPECT_EQ(field(received, "sha256"), referenceDigest(k256MiB, 9));
}

TEST_F(BulkAppTest, SinkServesOneConnectionAfterAnother) {
  RunningServer sink = startServer(dir_, "sink", {kBulk, "sink", "--port", "0", "--bind", "127.0.0.1"});
  ASSERT_NE(sink.port, 0) << readFile(sink.errPath);
  // Odd sizes, including empty, so the last partial word and the empty
  // stream are covered too.
  const uint64_t sizes[] = {1000003, 0, 17};
  for (uint64_t size : sizes) {
    const std::string out = dir_.file("send" + std::to_string(size) + ".out");
    const std::string err = dir_.file("send" + std::to_string(size) + ".err");
    ChildProcess send = ChildProcess::startLogged(
        {kBulk, "send", "--connect", "127.0.0.1:" + std::to_string(sink.port), "--bytes", std::to_string(size)}, out,
        err);
    const auto sent = runToEnd(send, out, err);
    EXPECT_EQ(field(sent, "bytes"), std::to_string(size));
    EXPECT_EQ(field(sent, "sha256"), referenceDigest(size, 1));
  }
  // The sink prints one line per connection, after the connection ends.
  std::vector<std::map<std::string, std::string>> results;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (results.size() < 3 && std::chrono::steady_clock::now() < deadline) {
    results.clear();
    for (const auto& line : lines(readFile(sink.outPath))) {
      if (line.rfind("mode=sink", 0) == 0) results.push_back(parseKeyValues(line));
    }
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(results.size(), 3u) << readFile(sink.outPath);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(field(results[i], "bytes"), std::to_string(sizes[i]));
    EXPECT_EQ(field(results[i], "sha256"), referenceDigest(sizes[i], 1));
  }
  EXPECT_FALSE(sink.process.wait(0ms).has_value()) << "a repeating sink must keep running";
}

TEST_F(BulkAppTest, BadCommandLinesExitWithUsageStatus) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const Case cases[] = {
      {{}, "missing mode"},
      {{"push"}, "unknown mode 'push'"},
      {{"send", "--bytes", "1M"}, "needs --connect"},
      {{"send", "--connect", "127.0.0.1:9"}, "needs --bytes"},
      {{"send", "--connect", "127.0.0.1:9", "--bytes", "12X"}, "bad --bytes"},
      {{"sink", "--port", "5", "--bytes", "1M"}, "--bytes does not apply to sink"},
      {{"recv", "--connect", "1.2.3:9"}, "bad --connect"},
      {{"serve", "--port", "5", "--bytes", "1", "--bogus"}, "unknown flag --bogus"},
  };
  int i = 0;
  for (const Case& c : cases) {
    std::vector<std::string> argv{kBulk};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    const std::string err = dir_.file("usage" + std::to_string(++i) + ".err");
    ChildProcess p = ChildProcess::startLogged(argv, dir_.file("usage.out"), err);
    const auto status = p.wait(10s);
    EXPECT_EQ(exitCode(status), 2) << c.message << ": " << describeStatus(status);
    EXPECT_NE(readFile(err).find(c.message), std::string::npos) << readFile(err);
  }
}

}  // namespace
}  // namespace mknet::testing
