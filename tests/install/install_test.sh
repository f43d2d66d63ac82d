#!/usr/bin/env bash
# Install squall into a temporary prefix and build examples/hello.c out of tree against it,
# both ways a user would: pkg-config (gcc … $(pkg-config --cflags --libs squall)) and CMake
# (find_package(squall) -> squall::squall).  Each program is run and must answer a request.
# The library is built here without sanitizers (a program linked against an ASan build
# would need the ASan runtime itself), libraries, headers and nothing else.
set -euo pipefail
src=${SQ_SOURCE_DIR:?}
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL $*"; exit 1; }

cmake -S "$src" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release -DSQ_BUILD_TESTS=OFF \
  -DSQ_BUILD_EXAMPLES=OFF -DSQ_BUILD_BENCH=OFF >"$tmp/configure.log" 2>&1 \
  || { cat "$tmp/configure.log"; fail "configure"; }
cmake --build "$tmp/build" -j 2 >"$tmp/build.log" 2>&1 || { tail -30 "$tmp/build.log"; fail "build"; }
# DESTDIR and a prefix, as a packager installs
DESTDIR="$tmp/dest" cmake --install "$tmp/build" --prefix /opt/squall >"$tmp/install.log" 2>&1 \
  || { cat "$tmp/install.log"; fail "install"; }
prefix="$tmp/dest/opt/squall"
libdir=$(dirname "$(find "$prefix" -name libsquall.so.0 | head -1)")
[ -n "$libdir" ] || fail "no libsquall.so.0 installed"
for f in "$prefix/include/squall.h" "$prefix/include/squall/http.h" "$prefix/include/squall/tls.h" \
         "$libdir/libsquall.a" "$libdir/libsquall.so" "$libdir/pkgconfig/squall.pc" \
         "$libdir/cmake/squall/squallConfig.cmake"; do
  [ -e "$f" ] || fail "not installed: $f"
done
soname=$(objdump -p "$libdir/libsquall.so.0" | awk '/SONAME/ {print $2}')
[ "$soname" = "libsquall.so.0" ] || fail "soname is '$soname', not libsquall.so.0"
# never unloaded (dlclose): the heap trim's thread must not return into unmapped code
readelf -d "$libdir/libsquall.so.0" | grep -q 'Flags:.*NODELETE' ||
  fail "libsquall.so.0 lacks -z nodelete (FLAGS_1 NODELETE)"
echo "ok   installed: headers, libsquall.a, libsquall.so -> libsquall.so.0 (soname $soname, nodelete), squall.pc, CMake package"

# serve: run a hello binary on an ephemeral port and fetch a page from it
serve() {
  local bin=$1 what=$2 port line
  "$bin" 0 >"$tmp/$what.out" 2>"$tmp/$what.err" &
  pids+=($!)
  for _ in $(seq 1 100); do
    line=$(head -1 "$tmp/$what.out" 2>/dev/null || true)
    [ -n "$line" ] && break
    sleep 0.05
  done
  port=${line##* }
  [ -n "$port" ] || fail "$what: no 'listening on port' line"
  body=$(curl -sS --max-time 5 "http://127.0.0.1:$port/") || fail "$what: no answer"
  [ "$body" = "Hello, World!" ] || fail "$what: answered '$body'"
  kill "${pids[-1]}"
  wait "${pids[-1]}" 2>/dev/null || true
  echo "ok   $what: built out of tree, ran, answered 'Hello, World!'"
}

# 1. pkg-config, against the shared library (an rpath, as with any library outside the
#    loader's path)
export PKG_CONFIG_PATH="$libdir/pkgconfig"
flags=$(pkg-config --cflags --libs squall) || fail "pkg-config squall"
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -Werror -o "$tmp/hello-pc" "$src/examples/hello.c" $flags \
  -Wl,-rpath,"$libdir" || fail "cc with pkg-config flags ($flags)"
serve "$tmp/hello-pc" "pkg-config build"
# A program that calls jansson itself, as the README's template example does
# (sq_render(h, "page.html", json_pack(...))): squall's API takes json_t, so
# `pkg-config --libs squall` alone must link it.
cat >"$tmp/tmpl.c" <<'C'
#include <squall.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    static const char src[] = "Hello, {{ user }}";
    char err[256], *out;
    size_t len;
    sq_templates *t = sq_templates_new(NULL, NULL);
    sq_template *tpl = t ? sq_template_compile(t, "t", src, sizeof src - 1, err, sizeof err) : NULL;
    json_t *ctx = json_pack("{s:s}", "user", "<ann>");
    if (!tpl || !ctx || sq_template_render(tpl, ctx, &out, &len, err, sizeof err) < 0) return 1;
    puts(out);
    free(out);
    json_decref(ctx);
    sq_template_free(tpl);
    sq_templates_free(t);
    return 0;
}
C
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -Werror -o "$tmp/tmpl-pc" "$tmp/tmpl.c" $flags -Wl,-rpath,"$libdir" \
  || fail "a program calling jansson (json_pack) does not link with only the pkg-config flags ($flags)"
out=$("$tmp/tmpl-pc") || fail "the jansson program failed"
[ "$out" = "Hello, &lt;ann&gt;" ] || fail "the jansson program printed '$out'"
echo "ok   a program calling jansson links with \$(pkg-config --libs squall) alone"
# and libsquall.a, with its dependencies as the shared libraries they are on Debian (their
# list is squall.pc's Requires and Requires.private; `pkg-config --static` would want every
# static library libcurl was built with)
deps=$(sed -n 's/^Requires\(.private\)\?: //p' "$libdir/pkgconfig/squall.pc" | tr '\n' ' ')
# shellcheck disable=SC2086
cc -std=c11 -o "$tmp/hello-static" "$src/examples/hello.c" -I"$prefix/include" \
  "$libdir/libsquall.a" $(pkg-config --libs $deps) -lpthread -lm \
  || fail "link with libsquall.a"
serve "$tmp/hello-static" "static build"

# 2. CMake
mkdir -p "$tmp/app"
cp "$src/examples/hello.c" "$tmp/app/"
cat >"$tmp/app/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.20)
project(hello C)
find_package(squall 0.1 REQUIRED)
add_executable(hello hello.c)
target_link_libraries(hello PRIVATE squall::squall)
CM
cmake -S "$tmp/app" -B "$tmp/app/build" -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/app.log" 2>&1 \
  || { cat "$tmp/app.log"; fail "find_package(squall)"; }
cmake --build "$tmp/app/build" >>"$tmp/app.log" 2>&1 || { tail -20 "$tmp/app.log"; fail "cmake build"; }
serve "$tmp/app/build/hello" "CMake build"
echo "all passed"
