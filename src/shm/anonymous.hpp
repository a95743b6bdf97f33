#pragma once
// Anonymous shared memory (Mapping::shared_anonymous, src/shm/mapping.cpp) and its descriptor.

namespace mproc::detail {

/// From this call on (mproc::init makes it), anonymous memory is a memfd that the mapping keeps,
/// so that an anonymous object can be sent to a spawned or forkserver child. Before it, and in
/// programs that never call init (which cannot start such children), anonymous memory is
/// MAP_ANONYMOUS and spends no descriptor. Either way it is the same shmem pages for fork.
void keep_anonymous_descriptors() noexcept;

}  // namespace mproc::detail
