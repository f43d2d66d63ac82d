# Debian packages (CPack's DEB generator), built by `make deb`:
#   libsquall0     the shared library: libsquall.so.0.* and its soname link libsquall.so.0
#   libsquall-dev  headers, libsquall.so, libsquall.a, squall.pc and the CMake package
# The install components "runtime" and "dev" of CMakeLists.txt are the two packages.
# Configure with -DCMAKE_INSTALL_PREFIX=/usr, so that GNUInstallDirs gives the multiarch
# libdir (lib/x86_64-linux-gnu) Debian uses; then `cpack` in the build directory writes
# packages/libsquall0_<version>-1_<arch>.deb and packages/libsquall-dev_….deb.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME squall)
set(CPACK_PACKAGE_VENDOR "squall")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "squall maintainers <maintainers@users.noreply.h-seed-592ba0e2.example>")
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/packages)
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime dev)

set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # <name>_<version>-<release>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(SQ_DEB_VERSION "${PROJECT_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}")

# libsquall0
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME libsquall0)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION
    "asynchronous networking library and web framework for C
squall is an asynchronous networking library for C in the spirit of Python's
Tornado: an event loop, stackful coroutines, futures, buffered streams, an
HTTP/1.1 and HTTP/2 server with a web framework, TLS, WebSockets, an HTTP
client and a Redis client.

This package contains the shared library.")
# a shlibs control file (libsquall 0 libsquall0 (>= version)), for packages built against it
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
# Depends: what the library links against, from dpkg-shlibdeps (dpkg-dev) when present,
# else the list of Debian 12's packages for them.
find_program(SQ_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(SQ_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_RUNTIME_PACKAGE_SHLIBDEPS ON)
else()
  set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS
      "libc6 (>= 2.34), libssl3 (>= 3.0.0), zlib1g (>= 1:1.1.4), libpcre2-8-0 (>= 10.32), libjansson4 (>= 2.14), libcurl4 (>= 7.62.0), libnghttp2-14 (>= 1.12.0), libhiredis0.14 (>= 0.14.0)")
endif()

# libsquall-dev: the library of the same version, and the -dev packages squall.pc
# (Requires, Requires.private) and squallConfig.cmake (find_dependency, pkg_check_modules) need.
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libsquall-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "libsquall0 (= ${SQ_DEB_VERSION}), libssl-dev, zlib1g-dev, libpcre2-dev, libjansson-dev, libcurl4-openssl-dev | libcurl-dev, libnghttp2-dev, libhiredis-dev, pkgconf | pkg-config")
set(CPACK_DEBIAN_DEV_DESCRIPTION
    "asynchronous networking library and web framework for C - development files
squall is an asynchronous networking library for C in the spirit of Python's
Tornado: an event loop, stackful coroutines, futures, buffered streams, an
HTTP/1.1 and HTTP/2 server with a web framework, TLS, WebSockets, an HTTP
client and a Redis client.

This package contains the headers, the static library, the pkg-config file
squall.pc and the CMake package (find_package(squall)).")

include(CPack)
