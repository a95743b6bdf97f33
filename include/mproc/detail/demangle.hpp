#pragma once
#include <cctype>
#include <string>
#include <string_view>

namespace mproc::detail {
/// A readable type name from a mangled one ("std::invalid_argument", not "St16invalid_argument").
std::string demangle(const char* mangled);
/// Inside a catch block: the readable type of the exception being handled, and its what() (or a
/// placeholder for exceptions that are not std::exception). Used wherever mproc reports an
/// exception from another process: Process targets and Pool tasks.
std::string current_exception_type();
std::string current_exception_message();

/// `word` after the indefinite article that its sound takes, for messages that put a type or
/// kind name after an article: "an int", "an unsigned int", "an Event", "a long", "a uint64_t",
/// "a std::string". Decided by spelling: a vowel takes "an", except where "u" sounds like
/// "you" (uint, unique, usable, ...) and "one"; acronyms ("an SQL") are not handled.
inline std::string with_article(std::string_view word) {
  const auto starts = [&](std::string_view prefix) {
    if (word.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i) {
      if (std::tolower(static_cast<unsigned char>(word[i])) != prefix[i]) return false;
    }
    return true;
  };
  bool an = false;
  if (!word.empty()) {
    switch (std::tolower(static_cast<unsigned char>(word[0]))) {
      case 'a':
      case 'e':
      case 'i':
      case 'o': an = !starts("one") && !starts("once"); break;
      case 'u':
        an = !(starts("uint") || starts("uni") || starts("usa") || starts("use") || starts("usi") ||
               starts("usu") || starts("uti") || starts("ure") || starts("uri"));
        break;
      default: break;
    }
  }
  std::string s = an ? "an " : "a ";
  s += word;
  return s;
}
}  // namespace mproc::detail
