#!/usr/bin/env bash
# memlab's test runner, behind `make test` (and so behind .ci/run). Runs every stage even when an
# earlier one failed, so that one run reports everything; each stage writes TAP lines to
# build/results/<stage>.tap ("ok N - ..." / "not ok N - ..."), and a stage that dies without
# reporting counts as one failed test. Exits non-zero when any test failed.
#   stages: build (gcc and clang, -Werror), specs (busted), ctests (csrc/alloc in C, the
#           memory-error injection of spec/c/oom_lua.c, the C host of spec/c/embed_test.c), asan (specs + C tests under
#           AddressSanitizer+UBSan), tsan (the C host's threads under ThreadSanitizer, clang),
#           valgrind (specs, csrc/alloc tests, the C host under memcheck),
#           lab (every experiment, short durations), bench (every benchmark once, quick: it runs
#           to its end; no figure is checked), fuzz (libFuzzer, FUZZ_SECONDS each),
#           install (luarocks make into a scratch tree, then require from elsewhere),
#           apicheck (specs + lab under a Lua built with its C API checks, scripts/apicheck-lua.sh)
#   MEMLAB_STAGES="specs lab" scripts/test.sh   runs only those stages
#   scripts/test.sh --counts   prints "PASSED FAILED SKIPPED" of the last run's TAP files, or
#                              "0 0 0" when there are none (.ci/run's line counts with it)
set -u
cd "$(dirname "$0")/.."
top=$PWD
results=build/results

# The one count of the TAP files: passed (skips not included), failed, skipped.
counts() {
  local pass=0 fail=0 skip=0
  if ls "$results"/*.tap >/dev/null 2>&1; then
    pass=$(cat "$results"/*.tap | grep -ac '^ok' || true)
    skip=$(cat "$results"/*.tap | grep -ac '^ok.*# SKIP' || true)
    fail=$(cat "$results"/*.tap | grep -ac '^not ok' || true)
  fi
  echo "$((pass - skip)) $fail $skip"
}
if [ "${1:-}" = --counts ]; then counts; exit 0; fi

rm -rf "$results"; mkdir -p "$results"
LUA=${LUA:-lua5.4}
BUSTED=$(command -v busted || echo /usr/bin/busted)
stages=${MEMLAB_STAGES:-"build specs ctests asan tsan valgrind lab bench fuzz install apicheck"}
export FUZZ_SECONDS=${FUZZ_SECONDS:-15}

lua_env() { # $1: build dir holding memlab/core.so; LUA_SYS_PATH/CPATH: more to look in (apicheck)
  export LUA_PATH="$top/lua/?.lua;$top/lua/?/init.lua;$top/spec/?.lua;;${LUA_SYS_PATH:-}"
  export LUA_CPATH="$top/$1/?.so;$top/build/test/?.so;;${LUA_SYS_CPATH:-}"
  # busted puts .busted's cpath (build/) in front of LUA_CPATH: name the build explicitly
  BUSTED_CPATH="--cpath=$top/$1/?.so;$top/build/test/?.so"
}

# busted_specs [PREFIX...]: busted -o TAP over every spec file, run as PREFIX... $LUA busted, in
# two processes at once, each taking every other file, on a machine of two cores or more
# (MEMLAB_JOBS=1: one process): the specs under valgrind and ASan take minutes, and one
# interpreter uses one core. Each file passes alone (that is how they are split); each half's
# output is shown when it ends. Fails when any half fails.
busted_specs() {
  local files=(spec/*_spec.lua) # (relative, as busted names them when given the directory)
  if [ "${MEMLAB_JOBS:-$(nproc 2>/dev/null || echo 1)}" -lt 2 ]; then
    "$@" "$LUA" "$BUSTED" "$BUSTED_CPATH" -o TAP spec
    return
  fi
  local i h out pids=() rc=0
  out=$(mktemp -d)
  for h in 0 1; do
    local part=()
    for i in "${!files[@]}"; do [ $((i % 2)) -eq "$h" ] && part+=("${files[i]}"); done
    "$@" "$LUA" "$BUSTED" "$BUSTED_CPATH" -o TAP "${part[@]}" > "$out/$h" 2>&1 &
    pids+=($!)
  done
  for h in 0 1; do
    wait "${pids[h]}" || rc=1
    cat "$out/$h"
  done
  rm -rf "$out"
  return $rc
}

# run_stage NAME COMMAND...: runs COMMAND, keeps the TAP lines it prints, shows everything.
run_stage() {
  local name=$1; shift
  local log="$results/$name.log" tap="$results/$name.tap"
  echo "=== stage $name: $*"
  local start=$SECONDS
  ( "$@" ) 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  grep -aE '^(not )?ok [0-9]+' "$log" > "$tap" || true
  if [ "$rc" -ne 0 ] && ! grep -aq '^not ok' "$tap"; then
    echo "not ok 0 - stage $name exited with status $rc without a failing test" >> "$tap"
  fi
  if [ ! -s "$tap" ]; then echo "not ok 0 - stage $name reported no tests" >> "$tap"; fi
  echo "=== stage $name: $(grep -ac '^ok' "$tap") ok, $(grep -ac '^not ok' "$tap") not ok" \
       "($((SECONDS - start)) s)"
}

stage_build() {
  local n=0 rc=0
  for cc in gcc clang; do
    n=$((n + 1))
    if make --no-print-directory CC=$cc WERROR=1 BUILD=build/$cc build/$cc/memlab/core.so; then
      echo "ok $n - $cc builds memlab.core with -Werror"
    else echo "not ok $n - $cc builds memlab.core with -Werror"; rc=1; fi
  done
  return $rc
}

stage_specs() {
  make --no-print-directory WERROR=1 all test-helpers >/dev/null || return 1
  lua_env build
  busted_specs
}

stage_ctests() {
  local rc=0
  make --no-print-directory WERROR=1 alloc-test || rc=1
  make --no-print-directory alloc-headers || rc=1
  make --no-print-directory WERROR=1 oom-test || rc=1
  make --no-print-directory WERROR=1 embed-test || rc=1
  return $rc
}

# tagged TAG COMMAND...: runs COMMAND, prefixing its TAP test names with [TAG]; COMMAND's status.
tagged() {
  local tag=$1; shift
  "$@" | sed -u -E "s/^((not )?ok [0-9]+ - )/\1[$tag] /"
  return "${PIPESTATUS[0]}"
}

ASAN_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
stage_asan() {
  make --no-print-directory BUILD=build/asan OPT=-O1 EXTRA_CFLAGS="$ASAN_FLAGS" \
    build/asan/memlab/core.so >/dev/null || return 1
  make --no-print-directory test-helpers >/dev/null || return 1
  lua_env build/asan
  local rc=0
  tagged asan busted_specs env LD_PRELOAD="$(gcc -print-file-name=libasan.so)" \
    ASAN_OPTIONS="detect_leaks=0:allow_user_segv_handler=1:allocator_may_return_null=1" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" MEMLAB_UNDER=asan || rc=1
  tagged asan make --no-print-directory alloc-asan || rc=1
  tagged asan make --no-print-directory BUILD=build/asan OPT=-O1 EXTRA_CFLAGS="$ASAN_FLAGS" \
    WERROR=1 oom-test || rc=1
  tagged asan make --no-print-directory BUILD=build/asan OPT=-O1 EXTRA_CFLAGS="$ASAN_FLAGS" \
    WERROR=1 embed-test || rc=1
  return $rc
}

# The threads of memlab's C host (embed_test: several Lua states, one per thread, mapping,
# arming snapshots, catching faults and loading memlab at once) under ThreadSanitizer: a data race
# on memlab's process-wide state is reported and fails the stage (exit status 66). Built with
# clang, whose TSan runtime is the one the set-up script installs; run with address-space
# randomisation off where setarch can turn it off (clang 14's runtime stops at "unexpected memory
# mapping" under the wider randomisation of recent kernels).
TSAN_FLAGS="-fsanitize=thread -fno-omit-frame-pointer"
stage_tsan() {
  make --no-print-directory CC=clang BUILD=build/tsan OPT=-O1 EXTRA_CFLAGS="$TSAN_FLAGS" \
    WERROR=1 build/tsan/memlab/core.so build/tsan/embed/embed_test >/dev/null || return 1
  local norand=()
  if setarch "$(uname -m)" -R true 2>/dev/null; then norand=(setarch "$(uname -m)" -R); fi
  tagged tsan env TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1" \
    "${norand[@]}" build/tsan/embed/embed_test "$top" "$top/build/tsan"
}

stage_valgrind() {
  make --no-print-directory WERROR=1 all test-helpers >/dev/null || return 1
  lua_env build
  local rc=0
  tagged valgrind busted_specs env MEMLAB_UNDER=valgrind valgrind -q --error-exitcode=99 \
    --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
    --suppressions="$top/spec/valgrind.supp" || rc=1
  tagged valgrind make --no-print-directory alloc-valgrind || rc=1
  make --no-print-directory WERROR=1 build/embed/embed_test >/dev/null || return 1
  tagged valgrind env MEMLAB_UNDER=valgrind valgrind -q --error-exitcode=99 \
    --suppressions="$top/spec/valgrind.supp" build/embed/embed_test "$top" "$top/build" || rc=1
  return $rc
}

stage_lab() {
  make --no-print-directory WERROR=1 all >/dev/null || return 1
  lua_env build
  "$LUA" examples/run.lua --tap --quick
}

stage_bench() {
  make --no-print-directory WERROR=1 bench-smoke
}

# libFuzzer on each allocator in C, then on the Lua API (spec/c/fuzz_lua.c), FUZZ_SECONDS each.
stage_fuzz() {
  local rc=0
  make --no-print-directory alloc-fuzz FUZZ_SECONDS="$FUZZ_SECONDS" || rc=1
  make --no-print-directory lua-fuzz FUZZ_SECONDS="$FUZZ_SECONDS" || rc=1
  return $rc
}

# The specs and the lab under Lua built from Debian's source with its C API checks on
# (scripts/apicheck-lua.sh): a misuse of the API in memlab (an index out of the stack, a push
# without room) aborts there, where the stock lua5.4 goes on. The interpreters the specs start as
# lua5.4 take it too (first in PATH). Busted's own modules are Debian's, found by full path.
stage_apicheck() {
  make --no-print-directory WERROR=1 all test-helpers >/dev/null || return 1
  local rc=0
  bash scripts/apicheck-lua.sh >/dev/null || rc=$?
  if [ "$rc" -eq 2 ]; then
    echo "ok 1 - API-checked Lua # SKIP Debian's lua5.4 source could not be fetched here"
    return 0
  fi
  [ "$rc" -eq 0 ] || return 1
  local ma chk="$top/build/apicheck/bin"
  ma=$(gcc -print-multiarch)
  local LUA_SYS_PATH=";/usr/share/lua/5.4/?.lua;/usr/share/lua/5.4/?/init.lua" \
    LUA_SYS_CPATH=";/usr/lib/$ma/lua/5.4/?.so" # (busted's own modules, for the stages below)
  rc=0
  LUA="$chk/lua5.4" PATH="$chk:$PATH" tagged apicheck stage_specs || rc=1
  LUA="$chk/lua5.4" PATH="$chk:$PATH" tagged apicheck stage_lab || rc=1
  return $rc
}

stage_install() {
  local tree; tree=$(mktemp -d)
  if ! luarocks --lua-version=5.4 --tree "$tree" make memlab-scm-1.rockspec >/dev/null; then
    echo "not ok 1 - luarocks make installs memlab"; return 1
  fi
  echo "ok 1 - luarocks make installs memlab"
  local out
  out=$(cd / && LUA_PATH="$tree/share/lua/5.4/?.lua;$tree/share/lua/5.4/?/init.lua;;" \
        LUA_CPATH="$tree/lib/lua/5.4/?.so;;" \
        "$LUA" -e 'local M = require "memlab"; local b = M.malloc(4); b:write(0, "ok!!")
                   io.write(b:read(0, 2), M.type(b))' 2>&1)
  # a site names the script's line, not the installed memlab.lua's (M.map calls M.mmap)
  local site
  site=$(cd / && LUA_PATH="$tree/share/lua/5.4/?.lua;$tree/share/lua/5.4/?/init.lua;;" \
        LUA_CPATH="$tree/lib/lua/5.4/?.so;;" \
        "$LUA" -e 'local M = require "memlab"
                   local m = M.map{ length = 4096 }; m:free()
                   local _, e = pcall(m.read, m); io.write(e:match("allocated at (.-:%d+)"))' 2>&1)
  rm -rf "$tree"
  local rc=0
  if [ "$out" = "okbuffer" ]; then echo "ok 2 - the installed memlab is required from /"
  else echo "not ok 2 - the installed memlab is required from / # got: $out"; rc=1; fi
  if [ "$site" = "(command line):2" ]; then echo "ok 3 - the installed memlab names the script's line as a block's site"
  else echo "not ok 3 - the installed memlab names the script's line as a block's site # got: $site"; rc=1; fi
  return $rc
}

for s in $stages; do
  if declare -F "stage_$s" >/dev/null; then run_stage "$s" "stage_$s"
  else echo "unknown stage $s" >&2; exit 2; fi
done

read -r pass fail skip < <(counts)
echo "=== tests: $pass passed, $fail failed, $skip skipped"
grep -ah '^not ok' "$results"/*.tap | sed 's/^/FAILED: /'
[ "$fail" -eq 0 ]
