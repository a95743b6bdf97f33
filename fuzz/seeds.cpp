// `<target> --write-seeds DIR`: writes the target's seed corpus into DIR and exits. Linked into
// both builds of every target; in a libFuzzer build it runs from LLVMFuzzerInitialize, before
// libFuzzer reads its own flags.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "fuzz_support.hpp"

namespace mproc_fuzz {

int write_seeds(const char* dir) {
  std::filesystem::create_directories(dir);
  for (const Seed& s : mproc_fuzz_seeds()) {
    const auto path = std::filesystem::path(dir) / s.name;
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(s.bytes.data()), static_cast<std::streamsize>(s.bytes.size()));
    if (!f) {
      std::fprintf(stderr, "cannot write %s\n", path.c_str());
      return 1;
    }
    std::printf("%s (%zu bytes)\n", path.c_str(), s.bytes.size());
  }
  return 0;
}

}  // namespace mproc_fuzz

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  for (int i = 1; i + 1 < *argc; ++i) {
    if (std::strcmp((*argv)[i], "--write-seeds") == 0) std::exit(mproc_fuzz::write_seeds((*argv)[i + 1]));
  }
  return 0;
}
