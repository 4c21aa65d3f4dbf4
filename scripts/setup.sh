#!/usr/bin/env bash
# memlab's one set-up script: installs, through apt-get, the Debian packages a goal needs and that
# are missing, and does nothing when everything is already there.
#   scripts/setup.sh build   compiler, Lua 5.4 and its headers (enough for `make` and `make lab`)
#   scripts/setup.sh test    build + busted, valgrind, the sanitizer runtimes, clang's libFuzzer
#   scripts/setup.sh bench   build + mimalloc and jemalloc, the allocators the benchmarks compare
# Runs apt-get non-interactively (CI has no terminal) and through sudo when not root.
set -eu

goal=${1:-build}
build_pkgs="gcc make libc6-dev pkg-config lua5.4 liblua5.4-dev luarocks"
# clang's libFuzzer runtime comes in a package named for clang's major version (14 on Debian 12)
clang_major=$(apt-cache policy clang 2>/dev/null |
              sed -n 's/^ *Candidate: \([0-9]*:\)\{0,1\}\([0-9][0-9]*\)\..*/\2/p')
test_pkgs="lua-busted valgrind libasan8 libubsan1 clang libclang-rt-${clang_major:-14}-dev"
bench_pkgs="libmimalloc-dev libjemalloc-dev"

case "$goal" in
  build) want="$build_pkgs" ;;
  test)  want="$build_pkgs $test_pkgs" ;;
  bench) want="$build_pkgs $bench_pkgs" ;;
  all)   want="$build_pkgs $test_pkgs $bench_pkgs" ;;
  *) echo "usage: $0 build|test|bench|all" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: these packages are missing and this is not a Debian system:$missing" >&2
  echo "setup: install them by hand (names are Debian's), then run make again." >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup: need root or sudo to install:$missing" >&2; exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "setup: installing$missing"
apt_install() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" </dev/null; }
log=$(mktemp "${TMPDIR:-/tmp}/memlab-setup.XXXXXX")
# A fresh machine may have empty package lists: update once if the first attempt fails.
# shellcheck disable=SC2086
if ! apt_install $missing >"$log" 2>&1; then
  $SUDO apt-get update -q </dev/null >>"$log" 2>&1 || true
  # shellcheck disable=SC2086
  apt_install $missing >>"$log" 2>&1 || { tail -20 "$log" >&2; echo "setup: the whole log: $log" >&2; exit 1; }
fi
rm -f "$log"
echo "setup: done"
