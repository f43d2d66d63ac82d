#!/usr/bin/env bash
# `make deb`'s packages, built and checked without root: a release build of its own
# (configured for /usr, as `make deb` does) under the ctest build directory, `cpack -G DEB`,
# then the control fields (names, version, architecture, section, Depends) and contents
# (dpkg-deb -I / -c), the soname of the unpacked library (readelf -d), and finally both
# packages unpacked with `dpkg -x` into a scratch root and examples/hello.c built out of tree
# against them (pkg-config through the unpacked squall.pc, which is relocatable, and
# find_package(squall)), run with LD_LIBRARY_PATH and asked for a page with curl.
# Skipped (77) where dpkg-deb is missing.
set -euo pipefail
src=${SQ_SOURCE_DIR:?}
bld=${SQ_BUILD_DIR:?}/install-deb
command -v dpkg-deb >/dev/null || { echo "SKIP: dpkg-deb not found"; exit 77; }
command -v cpack >/dev/null || { echo "SKIP: cpack not found"; exit 77; }
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL $*"; exit 1; }

cmake -S "$src" -B "$bld" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
  -DSQ_BUILD_TESTS=OFF -DSQ_BUILD_EXAMPLES=OFF -DSQ_BUILD_BENCH=OFF >"$tmp/configure.log" 2>&1 \
  || { cat "$tmp/configure.log"; fail "configure"; }
cmake --build "$bld" -j 2 >"$tmp/build.log" 2>&1 || { tail -30 "$tmp/build.log"; fail "build"; }
rm -f "$bld"/packages/*.deb
(cd "$bld" && cpack -G DEB) >"$tmp/cpack.log" 2>&1 || { cat "$tmp/cpack.log"; fail "cpack"; }

version=$(sed -n 's/^project(squall VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")-1
arch=$(dpkg --print-architecture)
lib="$bld/packages/libsquall0_${version}_${arch}.deb"
dev="$bld/packages/libsquall-dev_${version}_${arch}.deb"
[ -f "$lib" ] && [ -f "$dev" ] || { ls -l "$bld/packages"; fail "expected $(basename "$lib") and $(basename "$dev")"; }
echo "ok   built $(basename "$lib") and $(basename "$dev")"

# control fields
field() { dpkg-deb -f "$1" "$2"; }
check_field() {
  local deb=$1 name=$2 want=$3 got
  got=$(field "$deb" "$name")
  [ "$got" = "$want" ] || fail "$(basename "$deb"): $name is '$got', not '$want'"
}
check_field "$lib" Package libsquall0
check_field "$dev" Package libsquall-dev
for d in "$lib" "$dev"; do
  check_field "$d" Version "$version"
  check_field "$d" Architecture "$arch"
  [ -n "$(field "$d" Maintainer)" ] || fail "$(basename "$d"): no Maintainer"
  [ -n "$(field "$d" Description)" ] || fail "$(basename "$d"): no Description"
done
check_field "$lib" Section libs
check_field "$dev" Section libdevel
# Depends, as names (the versions come from dpkg-shlibdeps): every runtime library
lib_deps=$(field "$lib" Depends)
for p in libc6 libssl3 zlib1g libpcre2-8-0 libjansson4 libcurl4 libnghttp2-14 libhiredis0.14; do
  grep -Eq "(^|, )$p( |,|$)" <<<"$lib_deps" || fail "libsquall0 does not depend on $p: $lib_deps"
done
echo "ok   libsquall0 $version $arch, Section libs, Depends: $lib_deps"
dev_deps=$(field "$dev" Depends)
grep -Fq "libsquall0 (= $version)" <<<"$dev_deps" || fail "libsquall-dev does not depend on libsquall0 (= $version): $dev_deps"
for p in libssl-dev zlib1g-dev libpcre2-dev libjansson-dev libcurl4-openssl-dev libnghttp2-dev libhiredis-dev; do
  grep -Eq "(^|, |\| )$p( |,|$)" <<<"$dev_deps" || fail "libsquall-dev does not depend on $p: $dev_deps"
done
echo "ok   libsquall-dev $version $arch, Section libdevel, Depends: $dev_deps"
dpkg-deb -I "$lib" shlibs >"$tmp/shlibs" 2>/dev/null || fail "libsquall0 has no shlibs file"
grep -q "^libsquall 0 libsquall0" "$tmp/shlibs" || fail "shlibs: $(cat "$tmp/shlibs")"
echo "ok   libsquall0 shlibs: $(cat "$tmp/shlibs")"

# contents: the runtime package holds the shared library and nothing for development
dpkg-deb -c "$lib" | awk '{print $6}' >"$tmp/lib.files"
dpkg-deb -c "$dev" | awk '{print $6}' >"$tmp/dev.files"
grep -Eq '^\./usr/lib/([^/]+/)?libsquall\.so\.0$' "$tmp/lib.files" || fail "libsquall0 has no libsquall.so.0 link"
grep -Eq '^\./usr/lib/([^/]+/)?libsquall\.so\.0\.[0-9]+\.[0-9]+$' "$tmp/lib.files" || fail "libsquall0 has no libsquall.so.0.x.y"
extra=$(grep -Ev '/$|libsquall\.so\.0' "$tmp/lib.files" || true)
[ -z "$extra" ] || fail "libsquall0 holds more than the library: $extra"
for f in '/usr/include/squall\.h' '/usr/include/squall/http\.h' '/usr/lib/([^/]+/)?libsquall\.so' \
         '/usr/lib/([^/]+/)?libsquall\.a' '/usr/lib/([^/]+/)?pkgconfig/squall\.pc' \
         '/usr/lib/([^/]+/)?cmake/squall/squallConfig\.cmake' \
         '/usr/lib/([^/]+/)?cmake/squall/squallConfigVersion\.cmake'; do
  grep -Eq "^\.$f\$" "$tmp/dev.files" || fail "libsquall-dev lacks $f"
done
! grep -q 'libsquall\.so\.0' "$tmp/dev.files" || fail "libsquall-dev holds the shared library itself"
echo "ok   contents: libsquall0 $(grep -c 'libsquall' "$tmp/lib.files") files (libsquall.so.0 -> libsquall.so.0.x.y); libsquall-dev has the headers, libsquall.so, libsquall.a, squall.pc, squallConfig.cmake"

# unpack both without root
root="$tmp/root"
dpkg -x "$lib" "$root"
dpkg -x "$dev" "$root"
so=$(find "$root/usr/lib" -name 'libsquall.so.0.*' -type f | head -1)
libdir=$(dirname "$so")
soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libsquall.so.0" ] || fail "SONAME is '$soname'"
[ "$(readlink "$libdir/libsquall.so")" = "libsquall.so.0" ] || fail "libsquall.so does not point at libsquall.so.0"
! readelf -d "$so" | grep -Eq 'RPATH|RUNPATH' || fail "the packaged library has an rpath"
echo "ok   unpacked: SONAME $soname, no rpath, libsquall.so -> libsquall.so.0 -> $(readlink "$libdir/libsquall.so.0")"

serve() {
  local bin=$1 what=$2 port line
  LD_LIBRARY_PATH="$libdir" "$bin" 0 >"$tmp/$what.out" 2>"$tmp/$what.err" &
  pids+=($!)
  for _ in $(seq 1 200); do
    line=$(head -1 "$tmp/$what.out" 2>/dev/null || true)
    [ -n "$line" ] && break
    sleep 0.05
  done
  port=${line##* }
  [ -n "$port" ] || { cat "$tmp/$what.err"; fail "$what: no 'listening on port' line"; }
  body=$(curl -sS --max-time 10 "http://127.0.0.1:$port/") || fail "$what: no answer"
  [ "$body" = "Hello, World!" ] || fail "$what: answered '$body'"
  kill "${pids[-1]}"
  wait "${pids[-1]}" 2>/dev/null || true
  echo "ok   $what: built out of tree against the unpacked packages, ran, answered 'Hello, World!'"
}

# pkg-config through the unpacked squall.pc (${pcfiledir}: its prefix is the scratch root)
export PKG_CONFIG_PATH="$libdir/pkgconfig"
flags=$(pkg-config --cflags --libs squall) || fail "pkg-config squall"
incdir=$(pkg-config --variable=includedir squall)
[ "$(realpath "$incdir")" = "$(realpath "$root/usr/include")" ] \
  || fail "squall.pc's includedir is $incdir, not the scratch root's"
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -Werror -o "$tmp/hello-pc" "$src/examples/hello.c" $flags \
  || fail "cc with pkg-config flags ($flags)"
loaded=$(LD_LIBRARY_PATH="$libdir" ldd "$tmp/hello-pc")
grep -Fq "$libdir/libsquall.so.0" <<<"$loaded" || fail "hello does not load the unpacked libsquall.so.0: $loaded"
serve "$tmp/hello-pc" "pkg-config build"

# find_package(squall) with the scratch root's /usr as the prefix
if command -v cmake >/dev/null; then
  mkdir -p "$tmp/app"
  cp "$src/examples/hello.c" "$tmp/app/"
  cat >"$tmp/app/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.20)
project(hello C)
find_package(squall 0.1 REQUIRED)
add_executable(hello hello.c)
target_link_libraries(hello PRIVATE squall::squall)
CM
  cmake -S "$tmp/app" -B "$tmp/app/build" -DCMAKE_PREFIX_PATH="$root/usr" >"$tmp/app.log" 2>&1 \
    || { cat "$tmp/app.log"; fail "find_package(squall)"; }
  cmake --build "$tmp/app/build" >>"$tmp/app.log" 2>&1 || { tail -20 "$tmp/app.log"; fail "cmake build"; }
  serve "$tmp/app/build/hello" "CMake build"
fi
echo "all passed"
