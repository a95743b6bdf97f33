# Shared by scripts/demo, scripts/test and scripts/lint: install what the build needs (Debian
# packages), then configure and build one CMake preset. Sourced, not run.
set -euo pipefail

MPROC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Every package the build and the test suite need, and why:
#   g++ cmake ninja-build  the compiler and build system
#   libcereal-dev          cereal, which encodes structured queue and pipe messages
#   libcli11-dev           CLI11, which parses the mproc command-line tool's arguments
#   libgtest-dev           GoogleTest, the test framework
#   nlohmann-json3-dev     reading and writing JSON in the tickets example
#   clang libclang-rt-14-dev  clang and its libFuzzer runtime, for the fuzz targets (fuzz/)
#   clang-format-14 clang-tidy-14  scripts/lint: formatting and static checks, pinned to the
#                          version the tree is formatted with (their output changes between versions)
#   python3-dev python3-pybind11  the `import mproc` Python module (python/), built with the library
#   libhiredis-dev         hiredis, the C client under the Redis backend (mproc::redis)
#   redis-server           the server the Redis tests and the Redis demo start for themselves
MPROC_PACKAGES=(g++ cmake ninja-build libcereal-dev libcli11-dev libgtest-dev nlohmann-json3-dev
                clang libclang-rt-14-dev clang-format-14 clang-tidy-14
                python3-dev python3-pybind11 libhiredis-dev redis-server)
# The subset that scripts/demo needs (the library, the mproc tool and the examples).
MPROC_DEMO_PACKAGES=(g++ cmake ninja-build libcereal-dev libcli11-dev nlohmann-json3-dev
                     python3-dev python3-pybind11 libhiredis-dev redis-server)

# Prints those of the given Debian packages that are not installed.
mproc_missing_packages() {
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
  done
}

# Installs the given Debian packages (as root, or through sudo).
mproc_apt_install() {
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@"
}

# mproc_install_packages [PKG...]: install those missing of the given packages (default: all of
# MPROC_PACKAGES).
mproc_install_packages() {
  local missing
  [ $# -gt 0 ] || set -- "${MPROC_PACKAGES[@]}"
  mapfile -t missing < <(mproc_missing_packages "$@")
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "mproc: installing Debian packages: ${missing[*]}"
  mproc_apt_install "${missing[@]}"
}

# mproc_build PRESET: configure and build that preset (release, asan, tsan: everything, tests and
# benchmarks included; demo: the library, the tool and the examples only).
mproc_build() {
  local preset=$1
  cd "$MPROC_ROOT"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
}

# mproc_install_optional_packages PKG...: install Debian packages that only add something (a
# contender in the benchmarks, a plot) when they are missing. Unlike mproc_install_packages, a
# failure is a warning, not an error: the caller goes on without them.
mproc_install_optional_packages() {
  local missing
  mapfile -t missing < <(mproc_missing_packages "$@")
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "mproc: installing optional Debian packages: ${missing[*]}"
  mproc_apt_install "${missing[@]}" || echo "mproc: could not install ${missing[*]}; going on without them" >&2
}
