#pragma once
// How a named object is to be attached: the public factories (Lock::open_or_create("x"), ...)
// build one of these and hand it to the object's private constructor.
#include <sys/types.h>

#include <string_view>

namespace mproc::detail {

enum class OpenHow { create, open, open_or_create };

struct NamedSpec {
  std::string_view name;
  OpenHow how;
  mode_t mode;
};

}  // namespace mproc::detail
