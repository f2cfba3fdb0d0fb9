// Cutting sequences into pieces and putting pieces together, as scatter, gather and map do.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include "ipcpp/value.hpp"

namespace ipcpp::detail {

// The number of items of a sequence: a JSON list's elements, an array's first dimension.
// Throws std::invalid_argument ("<what> is not a sequence ...") for anything else.
std::size_t sequence_length(const Value& seq, const char* what);

// Items [begin, end) of a sequence: an array is cut along its first dimension without copying
// its bytes; a list gives a list (its arrays kept as arrays).
Value slice(const Value& seq, std::size_t begin, std::size_t end);

// ipyparallel's block distribution of n items over q pieces: contiguous, in order, the first
// n % q pieces one item longer. Returns [begin, end) per piece (q > 0).
std::vector<std::pair<std::size_t, std::size_t>> partition(std::size_t n, std::size_t q);

// The pieces end to end: arrays of one dtype and row shape become one array (one copy),
// anything else one list of all the items. A null piece counts as empty.
Value concatenate(const std::vector<Value>& pieces);

}  // namespace ipcpp::detail
