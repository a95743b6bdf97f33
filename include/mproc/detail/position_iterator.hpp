#pragma once
// The iterator of a single-pass range of results (Pool::imap and imap_unordered, and
// redis::Pool::imap_unordered): a position in the range, which yields the result at that
// position. `*it` asks the range for its n-th result (`Range::current(n)`, which may block and
// throw); `it == std::default_sentinel` once n reaches `Range::size()`.
#include <cstddef>
#include <iterator>

namespace mproc::detail {

template <class Range, class R>
class PositionIterator {
 public:
  using iterator_concept = std::input_iterator_tag;
  using value_type = R;
  using difference_type = std::ptrdiff_t;

  PositionIterator() = default;
  R& operator*() const { return range_->current(n_); }
  R* operator->() const { return &range_->current(n_); }
  PositionIterator& operator++() {
    ++n_;
    return *this;
  }
  void operator++(int) { ++n_; }
  friend bool operator==(const PositionIterator& it, std::default_sentinel_t) {
    return it.n_ >= it.range_->size();
  }

 private:
  friend Range;
  explicit PositionIterator(Range* range) : range_(range) {}
  Range* range_ = nullptr;
  std::size_t n_ = 0;
};

}  // namespace mproc::detail
