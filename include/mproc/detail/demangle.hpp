#pragma once
#include <string>

namespace mproc::detail {
/// A readable type name from a mangled one ("std::invalid_argument", not "St16invalid_argument").
std::string demangle(const char* mangled);
}  // namespace mproc::detail
