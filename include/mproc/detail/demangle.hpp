#pragma once
#include <string>

namespace mproc::detail {
/// A readable type name from a mangled one ("std::invalid_argument", not "St16invalid_argument").
std::string demangle(const char* mangled);
/// Inside a catch block: the readable type of the exception being handled, and its what() (or a
/// placeholder for exceptions that are not std::exception). Used wherever mproc reports an
/// exception from another process: Process targets and Pool tasks.
std::string current_exception_type();
std::string current_exception_message();
}  // namespace mproc::detail
