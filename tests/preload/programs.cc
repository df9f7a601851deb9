#include "tests/preload/programs.h"

#include <sys/stat.h>

#include <fstream>
#include <regex>
#include <vector>

namespace mknet::itest {

std::map<std::string, std::string> iperf3Result(const std::string& jsonPath) {
  static const char kScript[] = R"py(
import json, sys
d = json.load(open(sys.argv[1]))
e = d.get("end", {})
out = {}
if "error" in d: out["error"] = d["error"].replace(" ", "_")
if "sum_sent" in e:
    out["sent_bytes"] = e["sum_sent"]["bytes"]; out["sent_bps"] = int(e["sum_sent"]["bits_per_second"])
    r = e["sum_received"]
    out["received_bytes"] = r["bytes"]; out["received_bps"] = int(r["bits_per_second"])
    if "packets" in r:
        out["packets"] = r["packets"]; out["lost_packets"] = r["lost_packets"]
        out["lost_percent"] = "%.3f" % r["lost_percent"]
print(" ".join("%s=%s" % kv for kv in out.items()))
)py";
  auto r = runCommand({"python3", "-c", kScript, jsonPath}, 10s);
  auto kv = parseKeyValues(r.output);
  if (!r.ok()) kv["error"] = "cannot_parse_" + jsonPath;
  return kv;
}

std::map<std::string, std::string> wrkResult(const std::string& output) {
  std::map<std::string, std::string> m;
  std::smatch s;
  static const std::regex reqs(R"re((\d+) requests in)re"), rps(R"re(Requests/sec:\s+([\d.]+))re"),
      non2xx(R"re(Non-2xx or 3xx responses: (\d+))re"),
      sockErr(R"re(Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+))re"),
      bad(R"re(bad_bodies=(\d+))re");
  if (std::regex_search(output, s, reqs)) m["requests"] = s[1];
  if (std::regex_search(output, s, rps)) m["requests_per_sec"] = s[1];
  m["non_2xx"] = std::regex_search(output, s, non2xx) ? std::string(s[1]) : "0";
  if (std::regex_search(output, s, sockErr)) {
    m["socket_errors"] = std::to_string(std::stoull(s[1]) + std::stoull(s[2]) + std::stoull(s[3]) + std::stoull(s[4]));
  } else {
    m["socket_errors"] = "0";
  }
  if (std::regex_search(output, s, bad)) m["bad_bodies"] = s[1];
  return m;
}

std::string writeNginxSite(const std::string& dir, int port, bool master, int workers, size_t bigBytes,
                           std::string* indexBody) {
  for (const char* sub : {"", "/www", "/logs", "/tmp"}) {
    std::string d = dir + sub;
    if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) return "mkdir " + d;
  }
  std::string body;
  for (int i = 0; body.size() < 4096; ++i) body += "line " + std::to_string(i) + ": hello from nginx on mknet\n";
  body.resize(4096);
  body.back() = '\n';
  *indexBody = body;
  {
    std::ofstream f(dir + "/www/index.html", std::ios::binary);
    f << body;
    if (!f) return "write index.html";
  }
  if (!writeRandomFile(dir + "/www/big.bin", bigBytes)) return "write big.bin";
  std::ofstream conf(dir + "/nginx.conf");
  conf << "daemon off;\n"
       << "master_process " << (master ? "on" : "off") << ";\n"
       << "worker_processes " << workers << ";\n"
       << "pid " << dir << "/nginx.pid;\n"
       << "error_log stderr warn;\n"
       << "events { worker_connections 1024; use epoll; }\n"
       << "http {\n"
       << "  access_log off;\n"
       << "  sendfile on; tcp_nopush on; tcp_nodelay on;\n"
       << "  keepalive_timeout 65; keepalive_requests 1000000;\n"
       << "  client_body_temp_path " << dir << "/tmp/body;\n"
       << "  proxy_temp_path " << dir << "/tmp/proxy;\n"
       << "  fastcgi_temp_path " << dir << "/tmp/fastcgi;\n"
       << "  uwsgi_temp_path " << dir << "/tmp/uwsgi;\n"
       << "  scgi_temp_path " << dir << "/tmp/scgi;\n"
       << "  types { text/html html; application/octet-stream bin; }\n"
       << "  server { listen " << port << "; root " << dir << "/www; }\n"
       << "}\n";
  if (!conf) return "write nginx.conf";
  // wrk runs one Lua state per thread: each counts, done() adds them up.
  std::ofstream lua(dir + "/wrk-check.lua");
  lua << "local threads = {}\n"
      << "function setup(thread) table.insert(threads, thread) end\n"
      << "function init(args) bad = 0; expected = [==[" << body << "]==] end\n"
      << "function response(status, headers, body)\n"
      << "  if status ~= 200 or body ~= expected then bad = bad + 1 end\n"
      << "end\n"
      << "function done(summary, latency, requests)\n"
      << "  local total = 0\n"
      << "  for _, t in ipairs(threads) do total = total + t:get(\"bad\") end\n"
      << "  io.write(string.format(\"bad_bodies=%d\\n\", total))\n"
      << "end\n";
  if (!lua) return "write wrk-check.lua";
  return "";
}

}  // namespace mknet::itest
