#pragma once
// How a named object is to be attached: the public factories (Lock::open_or_create("x"), ...)
// build one of these and hand it to the object's private constructor.
#include <sys/types.h>

#include <string_view>

#include "mproc/named_options.hpp"

namespace mproc::detail {

enum class OpenHow { create, open, open_or_create };

struct NamedSpec {
  std::string_view name;
  OpenHow how;
  NamedOptions options;  // used when creating
};

/// create/open/open_or_create for a primitive whose named form needs nothing but the name (and
/// NamedOptions when creating). Derived has a private constructor from NamedSpec and befriends this.
template <class Derived>
class NamedFactories {
 public:
  static Derived create(std::string_view name, NamedOptions options = {}) {
    return Derived(NamedSpec{name, OpenHow::create, options});
  }
  static Derived open(std::string_view name) { return Derived(NamedSpec{name, OpenHow::open, {}}); }
  static Derived open_or_create(std::string_view name, NamedOptions options = {}) {
    return Derived(NamedSpec{name, OpenHow::open_or_create, options});
  }
};

}  // namespace mproc::detail
