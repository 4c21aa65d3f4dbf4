#!/usr/bin/env bash
# Builds Lua 5.4 from Debian's source package (lua5.4) with the C API checks on, as
# build/apicheck/bin/lua5.4, for the apicheck stage of scripts/test.sh:
#   LUA_USE_APICHECK  every lua_* call checks its stack indices and the room it pushes into;
#   LUAI_ASSERT       Lua's internal assertions (and lauxlib's luaL_Buffer ones).
# A C module that misuses the API aborts there, where the stock interpreter goes on (the extra
# pushes land in spare slots, or corrupt memory). Fetched with apt-get into build/apicheck/apt
# (its own lists: the system's sources need no deb-src line, and nothing is installed).
# Exit status 0 and the binary built; 2 when the source cannot be had here (no network, not
# Debian): the stage then says so and skips; anything else is a failure.
set -eu
cd "$(dirname "$0")/.."
out=$PWD/build/apicheck
[ -x "$out/bin/lua5.4" ] && exit 0
. /etc/os-release
if [ "${ID:-}" != debian ] || [ -z "${VERSION_CODENAME:-}" ]; then
  echo "apicheck: Lua's source comes from Debian's lua5.4 source package; this is ${ID:-?}" >&2
  exit 2
fi
rm -rf "$out"
mkdir -p "$out/apt/lists/partial" "$out/apt/cache/archives/partial" "$out/src" "$out/bin"
echo "deb-src http://deb.debian.org/debian $VERSION_CODENAME main" > "$out/apt/sources.list"
apt_opts=(-o "Dir::Etc::sourcelist=$out/apt/sources.list" -o "Dir::Etc::sourceparts=-"
          -o "Dir::State::Lists=$out/apt/lists" -o "Dir::Cache=$out/apt/cache"
          -o "APT::Get::List-Cleanup=0" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=$(id -un)")
if ! apt-get "${apt_opts[@]}" update -q </dev/null >"$out/apt.log" 2>&1 ||
   ! (cd "$out/src" && apt-get "${apt_opts[@]}" source --download-only lua5.4 </dev/null \
        >>"$out/apt.log" 2>&1); then
  echo "apicheck: could not fetch Debian's lua5.4 source (see $out/apt.log)" >&2
  exit 2
fi
tarball=$(ls "$out"/src/lua5.4_*.orig.tar.gz)
tar -xzf "$tarball" -C "$out/src"
srcdir=$(ls -d "$out"/src/lua-5.4*/)
make -s -C "$srcdir/src" linux-noreadline MYCFLAGS="-g -O1 -DLUA_USE_APICHECK -DLUAI_ASSERT" \
  >"$out/build.log" 2>&1 || { cat "$out/build.log" >&2; exit 1; }
cp "$srcdir/src/lua" "$out/bin/lua5.4"
"$out/bin/lua5.4" -v
