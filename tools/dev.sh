#!/usr/bin/env bash
# ringmx developer entry point: installs Debian packages, builds, tests.
#   tools/dev.sh run     install, build and start ringmx on its embedded defaults
#   tools/dev.sh test    install, build (release, ASan+UBSan, libFuzzer) and run every test
#   tools/dev.sh build   install and build the release tree (build/release)
#   tools/dev.sh bench   build and run the micro-benchmarks
#   tools/dev.sh deps    install the Debian packages only
# Runs as root on Debian 12 (apt-get); every build goes through ccache.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_PKGS=(cmake ninja-build g++ clang clang-format clang-tidy pkg-config ccache
  liburing-dev libwolfssl-dev libmimalloc-dev libc-ares-dev
  libtomlplusplus-dev libfmt-dev libcli11-dev libsystemd-dev
  libgtest-dev libgmock-dev libbenchmark-dev libclang-rt-14-dev libfuse3-dev libcrypt-dev
  libargon2-dev)
# Real peers of the integration tests: swaks (with Net::SSLeay for its TLS),
# openssl s_client, Postfix and Dovecot LMTP (private instances each test
# starts itself), promtool and the Prometheus server, HAProxy (in front of two
# test nodes), dnsmasq (the resolver's DNS server); fuse3 for the power-cut test's file system (tests/powercut);
# groff and man for the man pages (test_man_pages, test_install);
# systemd-analyze (systemd) for the unit and strace for the system calls the
# daemon makes (test_systemd_unit, test_durability); real milters for the
# milter client (tests/integration/milter_peers.py): OpenDKIM and its
# opendkim-genkey (opendkim-tools), Rspamd's proxy worker, pymilter for the
# scriptable test filter and python3-dkim to verify signatures independently.
TEST_PKGS=(swaks libnet-ssleay-perl python3 prometheus openssl postfix dovecot-core dovecot-lmtpd
  haproxy dnsmasq-base fuse3 groff-base man-db systemd strace
  opendkim opendkim-tools rspamd python3-milter python3-dkim)

deps() {
  local want=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}") missing=()
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "== installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Postfix is only a test peer: no system configuration, and no service may
    # start while packages install (policy-rc.d answers "not allowed": that
    # covers opendkim's and rspamd's init scripts and units too, which
    # invoke-rc.d / deb-systemd-invoke start only when it allows).
    echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
    local policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
      chmod 755 /usr/sbin/policy-rc.d
      policy=1
    fi
    local rc=0
    apt-get update -qq || rc=$?
    ((rc)) || apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
    ((policy)) && rm -f /usr/sbin/policy-rc.d
    return "$rc"
  fi
}

configure() {  # configure DIR [cmake args...]: the project's own trees, warnings are errors
  local dir=$1
  shift
  cmake -S . -B "$dir" -G Ninja -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DRINGMX_WERROR=ON "$@" \
    >/dev/null
}

build_release() {
  configure build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo
  ninja -C build/release
}

# What a user or packager runs: plain CMake, the Release type (-O3), no
# -Werror. It must build whatever the compiler warns about.
build_packager() {
  cmake -S . -B build/pkg -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
    -DRINGMX_WERROR=OFF >/dev/null
  ninja -C build/pkg
}

run_ctest() {  # run_ctest DIR
  ctest --test-dir "$1" --output-on-failure -j"$(nproc)" --timeout 900
}

cmd=${1:-}
case "$cmd" in
  deps) deps ;;
  build) deps && build_release ;;
  run)
    deps && build_release
    exec build/release/tools/ringmx "${@:2}"
    ;;
  bench)
    deps && build_release
    build/release/bench/ringmx_microbench --benchmark_repetitions=3 \
      --benchmark_report_aggregates_only=true "${@:2}"
    ;;
  test)
    deps
    export CCACHE_DIR=${CCACHE_DIR:-$HOME/.ccache}
    echo "== libFuzzer targets (clang, ASan+UBSan), ${RINGMX_FUZZ_SECONDS:-40} s each"
    configure build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
      -DRINGMX_FUZZ=ON -DRINGMX_TESTS=OFF -DRINGMX_BENCH=OFF \
      -DRINGMX_FUZZ_SECONDS="${RINGMX_FUZZ_SECONDS:-40}"
    ninja -C build/fuzz
    run_ctest build/fuzz
    echo "== unit tests under ASan+UBSan"
    configure build/asan -DCMAKE_BUILD_TYPE=Debug -DRINGMX_SANITIZE=ON -DRINGMX_BENCH=OFF
    ninja -C build/asan
    run_ctest build/asan
    echo "== packager build (cmake -DCMAKE_BUILD_TYPE=Release): builds, unit tests pass"
    build_packager
    build/pkg/tests/ringmx_unit_tests --gtest_brief=1
    echo "== release build: unit and integration tests"
    build_release
    run_ctest build/release
    ;;
  *)
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
