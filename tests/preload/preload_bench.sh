#!/usr/bin/env bash
# preload_bench.sh: unmodified programs on mknet (through libmknet-preload.so)
# next to the same programs on the Linux kernel over a veth pair, same run:
# iperf3 TCP both ways (10 s each) and nginx (one process, epoll) under wrk
# with 64 keep-alive connections (30 s, every body checked). Root.
#
#   tests/preload/preload_bench.sh [--build DIR] [--seconds S] [--wrk-seconds S]
#
# DIR is a build tree (default $MKNET_BUILD_DIR/release or build/release) with
# the stack, the driver, the supervisor and libmknet-preload.so built.
# Everything runs in namespaces this script creates (198.18.210.0/24 for the
# kernel pair, 198.18.211.0/24 for mknet); it stops only the processes it
# started (by PID) and removes the namespaces on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${MKNET_BUILD_DIR:-$ROOT/build}/release
SECS=10 WRK_SECS=30
while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --wrk-seconds) WRK_SECS=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--seconds S] [--wrk-seconds S]" >&2; exit 2 ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "preload_bench: needs root (namespaces)" >&2; exit 1; }
LIB=$BUILD/clients/preload/libmknet-preload.so
[[ -f $LIB ]] || { echo "preload_bench: $LIB missing; build first" >&2; exit 1; }
for p in iperf3 nginx wrk curl python3; do command -v $p >/dev/null || { echo "preload_bench: $p missing" >&2; exit 1; }; done

TAG=mkpb$$ K1=${TAG}k1 K2=${TAG}k2 M=${TAG}m
RT=$(mktemp -d /tmp/mknet-preload-bench.XXXXXX)
PIDS=()
# deploy/mknet wants BUILD_ROOT/release: point a private root at the tree.
LINKROOT=$RT/buildroot
mkdir -p "$LINKROOT" && ln -s "$(cd "$BUILD" && pwd)" "$LINKROOT/release"

cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  MKNET_BUILD_DIR=$LINKROOT "$ROOT/deploy/mknet" down --ns "$M" --runtime-dir "$RT/mknet" >/dev/null 2>&1
  for n in "$K1" "$K2" "$M"; do ip netns del "$n" 2>/dev/null; done
  rm -rf "$RT"
}
trap cleanup EXIT

ip netns add "$K1"; ip netns add "$K2"
ip link add "${TAG}a" netns "$K1" type veth peer name "${TAG}b" netns "$K2"
ip -n "$K1" addr add 198.18.210.1/24 dev "${TAG}a"
ip -n "$K2" addr add 198.18.210.2/24 dev "${TAG}b"
for n in "$K1" "$K2"; do ip -n "$n" link set lo up; done
ip -n "$K1" link set "${TAG}a" up; ip -n "$K2" link set "${TAG}b" up
MKNET_BUILD_DIR=$LINKROOT "$ROOT/deploy/mknet" up --no-build --no-check --no-demo --ns "$M" --tap "${TAG}t" \
  --runtime-dir "$RT/mknet" --linux-ip 198.18.211.1/24 --ip 198.18.211.2/24 >/dev/null
# No "--" at the end: the pair helpers below split their arguments on "--".
ONM=("$ROOT/deploy/mknet" run --runtime-dir "$RT/mknet" --lib "$LIB")

json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.2f" % (d["end"]["sum_received"]["bits_per_second"]/1e9))' "$1"; }

iperf_pair() {  # iperf_pair SERVER_PREFIX... -- CLIENT_PREFIX... -- SERVER_IP EXTRA: Gbit/s received
  local srv=() cli=()
  while [[ $1 != -- ]]; do srv+=("$1"); shift; done; shift
  while [[ $1 != -- ]]; do cli+=("$1"); shift; done; shift
  local ip=$1 extra=${2:-}
  "${srv[@]}" iperf3 -s -1 -4 -p 5201 >"$RT/iperf-server.log" 2>&1 &
  PIDS+=($!)
  sleep 1
  "${cli[@]}" iperf3 -c "$ip" -p 5201 -4 -t "$SECS" $extra --json >"$RT/iperf.json"
  wait "${PIDS[-1]}" 2>/dev/null || true
  json "$RT/iperf.json"
}

site() {  # site DIR: nginx.conf + www, as tests/preload/programs.cc writes them
  local d=$1
  mkdir -p "$d/www" "$d/tmp"
  python3 - "$d" <<'PY'
import sys
d = sys.argv[1]
body = "".join("line %d: hello from nginx on mknet\n" % i for i in range(200))[:4095] + "\n"
open(d + "/www/index.html", "w").write(body)
open(d + "/nginx.conf", "w").write(f"""daemon off; master_process off; worker_processes 1;
pid {d}/nginx.pid; error_log stderr warn;
events {{ worker_connections 1024; use epoll; }}
http {{ access_log off; sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_timeout 65; keepalive_requests 1000000;
  client_body_temp_path {d}/tmp/body; proxy_temp_path {d}/tmp/proxy; fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi; scgi_temp_path {d}/tmp/scgi;
  types {{ text/html html; }}
  server {{ listen 8080; root {d}/www; }} }}
""")
open(d + "/check.lua", "w").write("""local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0; expected = [==[""" + body + """]==] end
function response(status, headers, body) if status ~= 200 or body ~= expected then bad = bad + 1 end end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("bad") end
  io.write(string.format("bad_bodies=%d\\n", total))
end
""")
PY
}

wrk_run() {  # wrk_run NGINX_PREFIX... -- WRK_PREFIX... -- URL DIR: "req/s errors"
  local srv=() cli=()
  while [[ $1 != -- ]]; do srv+=("$1"); shift; done; shift
  while [[ $1 != -- ]]; do cli+=("$1"); shift; done; shift
  local url=$1 d=$2
  "${srv[@]}" nginx -p "$d" -c "$d/nginx.conf" -e stderr >"$d/nginx.log" 2>&1 &
  local np=$!
  PIDS+=($np)
  for i in $(seq 50); do "${cli[@]}" curl -s -o /dev/null --max-time 1 "$url" && break; sleep 0.2; done
  "${cli[@]}" wrk -t 2 -c 64 -d "${WRK_SECS}s" --timeout 5s -s "$d/check.lua" "$url" >"$d/wrk.out"
  kill -QUIT $np; wait $np 2>/dev/null || true
  local rps errs bad non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' "$d/wrk.out")
  errs=$(awk '/Socket errors/ {gsub(",",""); print $4+$6+$8+$10}' "$d/wrk.out")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$d/wrk.out")
  bad=$(sed -n 's/bad_bodies=//p' "$d/wrk.out")
  echo "$rps ${errs:-0} ${non2xx:-0} ${bad:-?}"
}

K1E=(ip netns exec "$K1") K2E=(ip netns exec "$K2") ME=(ip netns exec "$M")
echo "preload_bench: iperf3 TCP ${SECS}s each way, kernel veth" >&2
k_fwd=$(iperf_pair "${K2E[@]}" -- "${K1E[@]}" -- 198.18.210.2)
k_rev=$(iperf_pair "${K2E[@]}" -- "${K1E[@]}" -- 198.18.210.2 -R)
echo "preload_bench: iperf3 TCP ${SECS}s each way, server on mknet" >&2
m_in=$(iperf_pair "${ONM[@]}" -- "${ME[@]}" -- 198.18.211.2)
m_out=$(iperf_pair "${ONM[@]}" -- "${ME[@]}" -- 198.18.211.2 -R)
site "$RT/site-k"; site "$RT/site-m"
echo "preload_bench: nginx + wrk -c64 ${WRK_SECS}s, kernel veth" >&2
read -r k_rps k_err k_non k_bad <<<"$(wrk_run "${K2E[@]}" -- "${K1E[@]}" -- http://198.18.210.2:8080/index.html "$RT/site-k")"
echo "preload_bench: nginx + wrk -c64 ${WRK_SECS}s, nginx on mknet" >&2
read -r m_rps m_err m_non m_bad <<<"$(wrk_run "${ONM[@]}" -- "${ME[@]}" -- http://198.18.211.2:8080/index.html "$RT/site-m")"

echo
echo "preload bench ($(nproc) CPUs, $(uname -r), $(date -u +%Y-%m-%dT%H:%M:%SZ)), same programs, same run"
printf '%-44s %14s %14s\n' metric "kernel (veth)" "mknet (shim)"
printf '%-44s %14s %14s\n' "iperf3 TCP peer->server-app Gbit/s" "$k_fwd" "$m_in"
printf '%-44s %14s %14s\n' "iperf3 TCP server-app->peer (-R) Gbit/s" "$k_rev" "$m_out"
printf '%-44s %14s %14s\n' "nginx wrk -c64 keep-alive requests/s" "$k_rps" "$m_rps"
printf '%-44s %14s %14s\n' "  wrk socket errors / non-2xx / bad bodies" "$k_err/$k_non/$k_bad" "$m_err/$m_non/$m_bad"
