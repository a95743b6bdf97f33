#pragma once
// The named form of Value/Array data: a segment whose payload is `bytes` of T, initialised by
// `init` when this call creates it. Defined in src/shm/named.cpp.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "mproc/detail/mapping.hpp"
#include "mproc/detail/named_spec.hpp"

namespace mproc::detail {

/// Returns the payload's address; `payload` receives its size in bytes (from the segment's
/// header when opened). Throws mproc::Error like every named attach (see shared_memory.hpp).
/// `type_name` names T in the segment, and in the error when it is opened as another type.
std::byte* attach_typed(const NamedSpec& spec, bool array, std::size_t bytes, std::uint64_t type_hash,
                        void (*init)(void* data, const void* ctx), const void* ctx, Mapping& mapping,
                        std::size_t& payload, bool* created = nullptr, std::string_view type_name = {});
/// Removes the named object `name` if no process has it open, whatever its lifetime: how an
/// object made of two segments takes back the first one it created when the second fails.
void discard_named_if_unused(std::string_view name) noexcept;
void unlink_named_public(std::string_view name, const char* kind);

}  // namespace mproc::detail
