# squall — the commands users and CI drive.  Everything installs what it needs first.
#   make run        build deps, release build, start the demo on http://127.0.0.1:8888
#   make install    the library, headers, squall.pc and the CMake package (PREFIX, DESTDIR)
#   make deb        Debian packages libsquall0 and libsquall-dev in build/deb/packages/
#   make docs       the API reference from the headers (Doxygen) in build/docs/html/
#   make test       build + test deps, ASan+UBSan build, every test through ctest, fuzz briefly
#   make tsan-test  the threaded tests under ThreadSanitizer
#   make cluster    redis-server + the demo on two instances of 2 processes + nginx in front (:8080)
#   make soak       10 minutes of mixed load on the ASan demo: RSS and fds flat, clean exit
#   make bench      installs wrk, h2load, nginx-light, h2o, nodejs, python3-tornado, gnuplot-nox, release build, the benchmarks in bench/

JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE    ?= cmake
RELEASE  := build/release
DEB      := build/deb
ASAN     := build/asan
TSAN     := build/tsan
FUZZ     := build/fuzz
FUZZ_SECONDS ?= 10
PORT     ?= 8888

# Debian packages the library, the examples and the demo need (`make run`).
DEB_PKGS := build-essential cmake pkg-config libcmocka-dev libssl-dev zlib1g-dev libpcre2-dev \
            libjansson-dev libcurl4-openssl-dev libnghttp2-dev libhiredis-dev libxxhash-dev
# What `make test` needs on top: clang for the fuzz targets, the real peers the tests talk
# to (curl, the openssl CLI for s_client and test certificates, h2load and Python's h2 for
# HTTP/2, Python's websockets and Tornado, nginx, Node.js with npm for ws and playwright-core
# from tests/node, headless Chromium), and what the bench smoke tests run for a second each
# (wrk, strace).  NodeSource's nodejs ships npm itself.
NPM_PKG   := $(if $(shell command -v npm 2>/dev/null),,npm)
TEST_PKGS := python3 procps curl clang libclang-rt-14-dev nginx-light python3-websockets \
             nodejs chromium $(NPM_PKG) wrk strace python3-tornado openssl nghttp2-client \
             python3-h2 redis-server doxygen dpkg-dev python3-jinja2
# What `make bench` needs on top of both (load generator and the peers it is compared with).
BENCH_PKGS := wrk nginx-light h2o nodejs python3-tornado gnuplot-nox valgrind strace

.PHONY: soak cluster all deps test-deps bench-deps node-modules install-pkgs build run test tsan-test fuzz install \
        deb docs \
        fuzz-build fuzz-run bench bench-quick clean format check-aarch64

all: build

deps:
	@$(MAKE) --no-print-directory install-pkgs PKGS="$(DEB_PKGS)"

test-deps:
	@$(MAKE) --no-print-directory install-pkgs PKGS="$(DEB_PKGS) $(TEST_PKGS)"

bench-deps:
	@$(MAKE) --no-print-directory install-pkgs PKGS="$(DEB_PKGS) $(TEST_PKGS) $(BENCH_PKGS)"

# npm's ws and playwright-core, pinned by tests/node/package-lock.json (the browser is
# Debian's chromium: nothing is downloaded besides the npm packages).
node-modules:
	@if [ ! -d tests/node/node_modules ] || [ tests/node/package-lock.json -nt tests/node/node_modules ]; then \
	  cd tests/node && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund && touch node_modules; fi

install-pkgs:
	@missing=""; \
	for p in $(PKGS); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "squall: installing missing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends $$missing; \
	fi

build: deps
	$(CMAKE) -S . -B $(RELEASE) -DCMAKE_BUILD_TYPE=Release -DSQ_BUILD_TESTS=OFF
	$(CMAKE) --build $(RELEASE) -j $(JOBS)

# Install the release build: libsquall.so.0 and libsquall.a, the headers, squall.pc (pkg-config)
# and the CMake package (find_package(squall)) under PREFIX, staged under DESTDIR if set.
PREFIX ?= /usr/local
install: build
	DESTDIR=$(DESTDIR) $(CMAKE) --install $(RELEASE) --prefix $(PREFIX)

# The multi-host shape on one machine: examples/cluster.sh (CLUSTER_PORT, CLUSTER_PROCESSES …).
cluster: build
	@$(MAKE) --no-print-directory install-pkgs PKGS="redis-server nginx-light"
	exec examples/cluster.sh $(RELEASE)

# Debian packages from a release build of the library configured for /usr (the multiarch
# libdir): build/deb/packages/libsquall0_<version>-1_<arch>.deb (libsquall.so.0*) and
# libsquall-dev_….deb (headers, libsquall.so, libsquall.a, squall.pc, the CMake package).
# CPack's DEB generator (cmake/packaging.cmake); dpkg-shlibdeps (dpkg-dev) computes
# libsquall0's Depends.  Install them with apt-get install ./build/deb/packages/*.deb.
deb: deps
	@$(MAKE) --no-print-directory install-pkgs PKGS="dpkg-dev"
	$(CMAKE) -S . -B $(DEB) -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
	  -DSQ_BUILD_TESTS=OFF -DSQ_BUILD_EXAMPLES=OFF -DSQ_BUILD_BENCH=OFF
	$(CMAKE) --build $(DEB) -j $(JOBS)
	rm -f $(DEB)/packages/*.deb
	cd $(DEB) && cpack -G DEB
	@ls -l $(DEB)/packages/*.deb

# The API reference from the header comments (docs/Doxyfile): build/docs/html/index.html.
# Doxygen warns about anything public left undocumented; the docs/doc_comments test keeps
# it at zero warnings.
docs:
	@$(MAKE) --no-print-directory install-pkgs PKGS="doxygen"
	mkdir -p build/docs
	doxygen docs/Doxyfile
	@echo "squall: API reference in build/docs/html/index.html"

run: build
	@echo "squall: starting the demo on http://127.0.0.1:$(PORT) (Ctrl-C stops it)"
	exec $(RELEASE)/examples/demo $(PORT)

test: test-deps
	$(CMAKE) -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DSQ_SANITIZE=address,undefined
	$(CMAKE) --build $(ASAN) -j $(JOBS)
	@$(MAKE) --no-print-directory node-modules
	cd $(ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS)
	$(MAKE) --no-print-directory fuzz-run FUZZ_SECONDS=$(FUZZ_SECONDS)

# libFuzzer targets (clang), each run briefly by `make test` and longer by `make fuzz`.
fuzz-build: test-deps
	CC=clang $(CMAKE) -S . -B $(FUZZ) -DCMAKE_BUILD_TYPE=Debug -DSQ_SANITIZE=address,undefined \
	  -DSQ_FUZZ=ON -DSQ_BUILD_TESTS=OFF -DSQ_BUILD_EXAMPLES=OFF -DSQ_BUILD_BENCH=OFF \
	  -DSQ_FUZZ_SECONDS=$(FUZZ_SECONDS)
	$(CMAKE) --build $(FUZZ) -j $(JOBS)

fuzz-run: fuzz-build
	cd $(FUZZ) && ctest --output-on-failure -L fuzz -j $(JOBS)

fuzz:
	$(MAKE) --no-print-directory fuzz-run FUZZ_SECONDS=300

# SOAK_SECONDS of every kind of client at once against the ASan build of the demo
# (tests/soak/soak.py); `make test` runs a 20-second version.
SOAK_SECONDS ?= 600
soak: test-deps
	$(CMAKE) -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DSQ_SANITIZE=address,undefined
	$(CMAKE) --build $(ASAN) -j $(JOBS)
	SQ_BUILD_DIR=$(ASAN) SQ_SOURCE_DIR=$(CURDIR) /usr/bin/python3 tests/soak/soak.py --seconds $(SOAK_SECONDS)

tsan-test: test-deps
	$(CMAKE) -S . -B $(TSAN) -DCMAKE_BUILD_TYPE=Debug -DSQ_SANITIZE=thread
	$(CMAKE) --build $(TSAN) -j $(JOBS)
	cd $(TSAN) && TSAN_OPTIONS=halt_on_error=1 ctest --output-on-failure -L threads -j $(JOBS)

bench: bench-deps build node-modules
	bench/run.sh $(RELEASE)

# The same, each part briefly (under 3 minutes in all): a check that everything runs.
bench-quick: bench-deps build node-modules
	bench/run.sh $(RELEASE) --quick

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

# The aarch64 context switch, cross-compiled and run under qemu-user (not part of `make test`:
# it needs a cross toolchain).
check-aarch64:
	@for p in gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user; do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; if [ -n "$$missing" ]; then apt-get update && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y --no-install-recommends $$missing; fi
	mkdir -p build/aarch64
	aarch64-linux-gnu-gcc -O2 -static -Iinclude -Isrc src/loop/*.c src/coro/coro.c \
	  src/coro/switch-aarch64.S src/future/*.c src/util/*.c tests/arch/switch_check.c \
	  -o build/aarch64/switch_check -lpthread
	qemu-aarch64 build/aarch64/switch_check
