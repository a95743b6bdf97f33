// wait_streams: see wait.hpp.
#include "redis/wait.hpp"

#include <algorithm>
#include <vector>

namespace mproc::redis::detail {

bool wait_streams(Connection& c, std::span<const std::string_view> keys, std::span<const std::string> ids,
                  mproc::detail::Deadline deadline, std::chrono::milliseconds cap) {
  using std::chrono::milliseconds;
  const auto now = mproc::detail::Clock::now();
  if (deadline.when() <= now) return false;
  milliseconds slice = std::min(cap, c.options().wait_slice);
  if (!deadline.is_forever()) slice = std::min(slice, std::chrono::ceil<milliseconds>(deadline.when() - now));
  slice = std::max(slice, milliseconds{1});  // BLOCK 0 would mean forever
  char block[24];
  std::vector<std::string_view> args = {"XREAD",  "COUNT", "1", "BLOCK", decimal(slice.count(), block),
                                        "STREAMS"};
  args.insert(args.end(), keys.begin(), keys.end());
  for (const std::string& id : ids) args.emplace_back(id);
  const Reply r = c.run(args, Retry::safe, "wait", slice);
  check(r, "wait", c.object("redis object"));
  return true;
}

}  // namespace mproc::redis::detail
