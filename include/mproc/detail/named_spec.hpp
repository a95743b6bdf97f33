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

/// create/open/open_or_create for a primitive whose named form needs nothing but the name (and
/// a mode when creating). Derived has a private constructor from NamedSpec and befriends this.
template <class Derived>
class NamedFactories {
 public:
  static Derived create(std::string_view name, mode_t mode = 0600) {
    return Derived(NamedSpec{name, OpenHow::create, mode});
  }
  static Derived open(std::string_view name) { return Derived(NamedSpec{name, OpenHow::open, 0}); }
  static Derived open_or_create(std::string_view name, mode_t mode = 0600) {
    return Derived(NamedSpec{name, OpenHow::open_or_create, mode});
  }
};

}  // namespace mproc::detail
