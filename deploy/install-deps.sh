#!/usr/bin/env bash
# Installs every Debian package mknet needs to build, test and benchmark.
# Idempotent: packages already installed are left alone, and apt is not touched
# at all when nothing is missing. Only Debian's own repositories are used.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake pkg-config
  # libraries mknet links against
  libboost-dev           # Boost.Interprocess (header-only)
  capnproto libcapnp-dev # schemas, RPC, fd passing
  libspdlog-dev libfmt-dev
  liblwip-dev            # lwIP 2.1.3, the protocol engine
  libssl-dev             # SHA-256 in the example apps
  # tests
  googletest libgtest-dev libgmock-dev
  iproute2 iputils-ping curl procps coreutils python3
  nginx-light wrk        # real programs run on mknet by the preload tests (with curl, iperf3)
  # benchmarks
  libbenchmark-dev iperf3
)

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps.sh: must run as root (it calls apt-get)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps.sh: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# iperf3 asks whether to start a daemon; answer no.
echo "iperf3 iperf3/start_daemon boolean false" | debconf-set-selections
apt-get install -y -q --no-install-recommends "${missing[@]}"
# The tests start nginx themselves, on mknet; Debian's package would also
# start a system-wide one on port 80. Stop and disable that one (only when
# this script installed it).
if [[ " ${missing[*]} " == *" nginx-light "* ]] && command -v systemctl >/dev/null; then
  systemctl disable --now nginx >/dev/null 2>&1 || true
fi
