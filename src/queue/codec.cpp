#include <cxxabi.h>

#include <cerrno>

#include <cstdlib>
#include <exception>
#include <typeinfo>
#include <string>

#include "mproc/detail/codec.hpp"
#include "mproc/queue.hpp"

namespace mproc::detail {

std::string demangle(const char* mangled) {
  int status = 0;
  char* readable = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string s = status == 0 && readable != nullptr ? readable : mangled;
  std::free(readable);
  return s;
}

std::string current_exception_type() {
  const std::type_info* t = abi::__cxa_current_exception_type();
  return t != nullptr ? demangle(t->name()) : "unknown exception";
}

std::string current_exception_message() {
  try {
    throw;
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "(not a std::exception)";
  }
}

}  // namespace mproc::detail

#include "mproc/error.hpp"

namespace mproc::detail {

void throw_wrong_type(const char* what, const std::string& expected) {
  throw Error(EBADMSG, "cannot receive " + with_article(expected) + " from " + what,
              "(the next message was sent as another type; it was left in place)");
}

void throw_undecodable(const std::string& type, std::size_t size, const char* why) {
  throw Error(EBADMSG,
              "cannot decode " + with_article(type) + " from a message of " + std::to_string(size) + " bytes",
              std::string("(it is not a valid encoding of one: ") + why + "; it was left in place)");
}

}  // namespace mproc::detail
