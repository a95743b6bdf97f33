#include "mproc/error.hpp"

#include <string>

#include "mproc/detail/std_lockable.hpp"
#include "os/sys.hpp"

namespace mproc {
namespace {

std::string describe(std::string_view operation, std::string_view object) {
  std::string s{operation};
  if (!object.empty()) {
    s += ' ';
    s += object;
  }
  return s;
}

}  // namespace

Error::Error(int errno_value, std::string_view operation, std::string_view object)
    : std::system_error(errno_value, std::generic_category(), describe(operation, object)) {}

namespace detail {

void throw_owner_died(const char* kind) {
  throw OwnerDied(std::string(kind) +
                  ": the previous owner died while holding the lock, so the state it guards may "
                  "be inconsistent; acquire() it, repair the state and call mark_consistent()");
}

}  // namespace detail

namespace sys {

void throw_errno(std::string_view operation, std::string_view object) {
  throw Error(errno, operation, object);
}

}  // namespace sys
}  // namespace mproc
