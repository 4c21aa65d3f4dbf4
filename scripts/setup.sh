#!/usr/bin/env bash
# memlab's one set-up script: installs, through apt-get, the Debian packages a goal needs and that
# are missing, and does nothing when everything is already there.
#   scripts/setup.sh build   compiler, Lua 5.4 and its headers (enough for `make` and `make lab`)
#   scripts/setup.sh test    build + busted, valgrind, the sanitizer runtimes, clang's libFuzzer
#   scripts/setup.sh bench   build + mimalloc and jemalloc, the allocators the benchmarks compare
# Runs apt-get non-interactively (CI has no terminal) and through sudo when not root.
set -eu

goal=${1:-build}
case "$goal" in build|test|bench|all) ;; *) echo "usage: $0 build|test|bench|all" >&2; exit 2 ;; esac

# The packages the goal wants, by the names this system's package lists give (asked again after
# an apt-get update: a fresh machine may have none). gcc brings its own sanitizer runtimes
# (libgcc-N-dev depends on the libasan and libubsan of its version: libasan8 on Debian 12 and 13,
# libasan6 on Ubuntu 22.04). clang's libFuzzer runtime is in a package named for clang's major
# version: libclang-rt-N-dev (Debian 12: 14, Debian 13: 19, Ubuntu 24.04: 18), or before that
# package was split off, libclang-common-N-dev (Ubuntu 22.04's clang 14).
clang_runtime() {
  local major rt
  major=$(apt-cache policy clang 2>/dev/null |
          sed -n 's/^ *Candidate: \([0-9]*:\)\{0,1\}\([0-9][0-9]*\)\..*/\2/p')
  major=${major:-14}
  rt="libclang-rt-$major-dev"
  if ! apt-cache show "$rt" >/dev/null 2>&1 &&
     apt-cache show "libclang-common-$major-dev" >/dev/null 2>&1; then
    rt="libclang-common-$major-dev"
  fi
  echo "$rt"
}
wanted() {
  local build_pkgs="gcc make libc6-dev pkg-config lua5.4 liblua5.4-dev luarocks"
  local bench_pkgs="libmimalloc-dev libjemalloc-dev"
  case "$goal" in
    build) echo "$build_pkgs" ;;
    test)  echo "$build_pkgs lua-busted valgrind clang $(clang_runtime)" ;;
    bench) echo "$build_pkgs $bench_pkgs" ;;
    all)   echo "$build_pkgs lua-busted valgrind clang $(clang_runtime) $bench_pkgs" ;;
  esac
}

missing_of() {
  local p out=""
  for p in $1; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || out="$out $p"
  done
  echo "$out"
}

# busted installed is not always busted that runs: Ubuntu 22.04 packages its modules (cliargs,
# system, say...) for Lua 5.1-5.3 only, and the specs would stop at busted's first require.
busted_runs() {
  case "$goal" in test|all) ;; *) return 0 ;; esac
  lua5.4 -e 'require "busted.core"' >/dev/null 2>&1 && return 0
  echo "setup: busted is installed but does not run under lua5.4:" >&2
  lua5.4 -e 'require "busted.core"' 2>&1 | head -1 >&2
  echo "setup: this system packages busted's modules for older Lua versions only (so does" >&2
  echo "setup: Ubuntu 22.04): the specs cannot run here; \`make lab\` can." >&2
  return 1
}

missing=$(missing_of "$(wanted)")
if [ -z "$missing" ]; then busted_runs; exit; fi

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
  missing=$(missing_of "$(wanted)")
  # shellcheck disable=SC2086
  [ -z "$missing" ] || apt_install $missing >>"$log" 2>&1 ||
    { tail -20 "$log" >&2; echo "setup: the whole log: $log" >&2; exit 1; }
fi
rm -f "$log"
echo "setup: done"
busted_runs
