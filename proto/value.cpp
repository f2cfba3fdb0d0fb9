// ipcpp::Value and friends (include/ipcpp/value.hpp).
#include "ipcpp/value.hpp"

#include <array>
#include <functional>

namespace ipcpp {
namespace {

using Json = nlohmann::json;

constexpr std::array<std::string_view, 10> kDTypeNames = {"i1", "i2", "i4", "i8", "u1",
                                                          "u2", "u4", "u8", "f4", "f8"};
constexpr std::array<std::size_t, 10> kDTypeSizes = {1, 2, 4, 8, 1, 2, 4, 8, 4, 8};
constexpr const char* kBufferKey = "__buffer__";

bool is_reference(const Json& j) {
  return j.is_object() && j.contains(kBufferKey);
}

// Calls f on every array reference inside j, depth first, in document order.
void for_each_reference(Json& j, const std::function<void(Json&)>& f) {
  if (is_reference(j)) {
    f(j);
  } else if (j.is_structured()) {
    for (auto& child : j)
      for_each_reference(child, f);
  }
}

void for_each_reference(const Json& j, const std::function<void(const Json&)>& f) {
  if (is_reference(j)) {
    f(j);
  } else if (j.is_structured()) {
    for (const auto& child : j)
      for_each_reference(child, f);
  }
}

std::size_t reference_index(const Json& ref, std::size_t array_count) {
  const auto& k = ref.at(kBufferKey);
  if (!k.is_number_unsigned() || k.get<std::size_t>() >= array_count) {
    throw std::invalid_argument("array reference " + ref.dump() + " does not name one of the " +
                                std::to_string(array_count) + " buffers");
  }
  return k.get<std::size_t>();
}

// Appends `item`'s arrays to `arrays` and returns its document with references renumbered.
Json absorb(const Value& item, std::vector<Array>& arrays) {
  Json doc = item.json();
  const std::size_t offset = arrays.size();
  for_each_reference(
      doc, [offset](Json& ref) { ref[kBufferKey] = ref[kBufferKey].get<std::size_t>() + offset; });
  arrays.insert(arrays.end(), item.arrays().begin(), item.arrays().end());
  return doc;
}

}  // namespace

std::string_view dtype_name(DType dtype) {
  return kDTypeNames.at(static_cast<std::size_t>(dtype));
}

std::size_t dtype_size(DType dtype) {
  return kDTypeSizes.at(static_cast<std::size_t>(dtype));
}

std::optional<DType> dtype_from_name(std::string_view name) {
  if (name.size() == 3 && (name[0] == '<' || name[0] == '|' || name[0] == '=')) {
    name.remove_prefix(1);
  }
  for (std::size_t i = 0; i < kDTypeNames.size(); ++i) {
    if (kDTypeNames[i] == name) return static_cast<DType>(i);
  }
  return std::nullopt;
}

Bytes Bytes::copy_of(const void* data, std::size_t size) {
  std::vector<std::byte> v(size);
  if (size != 0) std::memcpy(v.data(), data, size);
  return from_vector(std::move(v));
}

Array::Array(DType dtype, std::vector<std::size_t> shape, Bytes bytes)
    : dtype_(dtype), shape_(std::move(shape)), bytes_(std::move(bytes)) {
  if (size() * dtype_size(dtype_) != bytes_.size()) {
    throw std::invalid_argument("array of " + std::to_string(size()) + " " +
                                std::string(dtype_name(dtype_)) + " elements needs " +
                                std::to_string(size() * dtype_size(dtype_)) + " bytes, got " +
                                std::to_string(bytes_.size()));
  }
}

std::size_t Array::size() const {
  std::size_t n = 1;
  for (auto d : shape_)
    n *= d;
  return n;
}

Json array_reference(const Array& array, std::size_t k) {
  return Json{{kBufferKey, k}, {"dtype", dtype_name(array.dtype())}, {"shape", array.shape()}};
}

Value::Value(Json j) : json_(std::move(j)) {
  for_each_reference(std::as_const(json_), [](const Json&) {
    throw std::invalid_argument(
        "a JSON value may not contain an object with a \"__buffer__\" key: that form is "
        "reserved for array references");
  });
}

Value::Value(Array array) : json_(array_reference(array, 0)), arrays_{std::move(array)} {}

Value Value::list(std::vector<Value> items) {
  Value v;
  v.json_ = Json::array();
  for (const auto& item : items)
    v.json_.push_back(absorb(item, v.arrays_));
  return v;
}

Value Value::object(std::vector<std::pair<std::string, Value>> items) {
  Value v;
  v.json_ = Json::object();
  for (const auto& [key, item] : items)
    v.json_[key] = absorb(item, v.arrays_);
  return v;
}

Value Value::from_parts(Json document, std::vector<Array> arrays) {
  for_each_reference(std::as_const(document), [&arrays](const Json& ref) {
    const auto& a = arrays[reference_index(ref, arrays.size())];
    const auto dtype = ref.contains("dtype") && ref["dtype"].is_string()
                           ? dtype_from_name(ref["dtype"].get<std::string>())
                           : std::nullopt;
    if (dtype != a.dtype() || !ref.contains("shape") || ref["shape"] != Json(a.shape())) {
      throw std::invalid_argument("array reference " + ref.dump() + " does not match its buffer (" +
                                  std::string(dtype_name(a.dtype())) + ", " +
                                  std::to_string(a.bytes().size()) + " bytes)");
    }
  });
  Value v;
  v.json_ = std::move(document);
  v.arrays_ = std::move(arrays);
  return v;
}

bool Value::is_array() const {
  return is_reference(json_);
}

const Array& Value::array() const {
  if (!is_array()) throw std::invalid_argument("value is not an array");
  return arrays_.at(reference_index(json_, arrays_.size()));
}

std::size_t Value::size() const {
  return is_array() || !json_.is_structured() ? 0 : json_.size();
}

Value Value::sub(const Json& part) const {
  Value v;
  v.json_ = part;
  for_each_reference(v.json_, [&](Json& ref) {
    const auto k = reference_index(ref, arrays_.size());
    ref[kBufferKey] = v.arrays_.size();
    v.arrays_.push_back(arrays_[k]);
  });
  return v;
}

Value Value::operator[](std::size_t index) const {
  if (!json_.is_array()) throw std::out_of_range("value is not a list");
  return sub(json_.at(index));
}

Value Value::at(const std::string& key) const {
  if (!json_.is_object() || is_array()) throw std::out_of_range("value is not an object");
  return sub(json_.at(key));
}

namespace {

template <class T>
Json array_element(const Array& a, std::size_t i) {
  T v{};
  std::memcpy(&v, a.bytes().data() + i * sizeof(T), sizeof(T));
  if constexpr (std::is_floating_point_v<T>) {
    return Json(static_cast<double>(v));
  } else if constexpr (std::is_signed_v<T>) {
    return Json(static_cast<std::int64_t>(v));
  } else {
    return Json(static_cast<std::uint64_t>(v));
  }
}

Json array_element(const Array& a, std::size_t i) {
  switch (a.dtype()) {
    case DType::kInt8:
      return array_element<std::int8_t>(a, i);
    case DType::kInt16:
      return array_element<std::int16_t>(a, i);
    case DType::kInt32:
      return array_element<std::int32_t>(a, i);
    case DType::kInt64:
      return array_element<std::int64_t>(a, i);
    case DType::kUInt8:
      return array_element<std::uint8_t>(a, i);
    case DType::kUInt16:
      return array_element<std::uint16_t>(a, i);
    case DType::kUInt32:
      return array_element<std::uint32_t>(a, i);
    case DType::kUInt64:
      return array_element<std::uint64_t>(a, i);
    case DType::kFloat32:
      return array_element<float>(a, i);
    case DType::kFloat64:
      break;
  }
  return array_element<double>(a, i);
}

// Elements [*next, ...) of `a` as nested lists following shape[dim...].
Json nested(const Array& a, std::size_t dim, std::size_t& next) {
  Json out = Json::array();
  const std::size_t n = a.shape()[dim];
  for (std::size_t i = 0; i < n; ++i) {
    if (dim + 1 == a.shape().size()) {
      out.push_back(array_element(a, next++));
    } else {
      out.push_back(nested(a, dim + 1, next));
    }
  }
  return out;
}

}  // namespace

nlohmann::json Array::element(std::size_t i) const {
  return array_element(*this, i);
}

nlohmann::json Value::to_plain_json() const {
  Json doc = json_;
  for_each_reference(doc, [&](Json& ref) {
    const Array& a = arrays_.at(reference_index(ref, arrays_.size()));
    std::size_t next = 0;
    ref = a.shape().empty() ? (a.size() == 1 ? array_element(a, 0) : Json()) : nested(a, 0, next);
  });
  return doc;
}

std::string Value::dump() const {
  return to_plain_json().dump();
}

bool operator==(const Value& a, const Value& b) {
  if (a.json_ != b.json_ || a.arrays_.size() != b.arrays_.size()) return false;
  for (std::size_t i = 0; i < a.arrays_.size(); ++i) {
    const auto& x = a.arrays_[i].bytes();
    const auto& y = b.arrays_[i].bytes();
    if (a.arrays_[i].dtype() != b.arrays_[i].dtype() ||
        a.arrays_[i].shape() != b.arrays_[i].shape() || x.size() != y.size() ||
        (x.size() != 0 && std::memcmp(x.data(), y.data(), x.size()) != 0)) {
      return false;
    }
  }
  return true;
}

}  // namespace ipcpp
