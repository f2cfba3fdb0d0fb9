// ipcpp/value.hpp — the values that travel between clients and engines.
//
// A Value is a JSON document (nlohmann::json) plus the numeric arrays it refers to. On the
// wire the document holds each array as a reference {"__buffer__": k, "dtype": "f8",
// "shape": [n]} and the array's bytes travel as raw ZeroMQ frame k after it: a 10^7-element
// std::vector<double> is never turned into JSON text. Arrays share their bytes: copying a
// Value or an Array copies no element data.
//
// dtype names are NumPy's: i1 i2 i4 i8 u1 u2 u4 u8 f4 f8, little-endian, C order.
//
// Thread-safety: a Value is an ordinary value type. Distinct Values may be used from distinct
// threads; the bytes they share are immutable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace ipcpp {

enum class DType : std::uint8_t {
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kUInt8,
  kUInt16,
  kUInt32,
  kUInt64,
  kFloat32,
  kFloat64,
};

// "i1" ... "f8".
std::string_view dtype_name(DType dtype);
// Accepts "f8" and NumPy's "<f8" / "|u1" spellings; nullopt for anything else.
std::optional<DType> dtype_from_name(std::string_view name);
// Bytes per element.
std::size_t dtype_size(DType dtype);

template <class T>
constexpr DType dtype_of() {
  static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>, "numeric element types only");
  if constexpr (std::is_floating_point_v<T>) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "float and double only");
    return sizeof(T) == 4 ? DType::kFloat32 : DType::kFloat64;
  } else if constexpr (std::is_signed_v<T>) {
    return sizeof(T) == 1   ? DType::kInt8
           : sizeof(T) == 2 ? DType::kInt16
           : sizeof(T) == 4 ? DType::kInt32
                            : DType::kInt64;
  } else {
    return sizeof(T) == 1   ? DType::kUInt8
           : sizeof(T) == 2 ? DType::kUInt16
           : sizeof(T) == 4 ? DType::kUInt32
                            : DType::kUInt64;
  }
}

// Immutable bytes with shared ownership: a received frame, a moved-in vector, or a copy.
class Bytes {
 public:
  Bytes() = default;
  // `owner` keeps [data, data + size) alive.
  Bytes(std::shared_ptr<const void> owner, const std::byte* data, std::size_t size)
      : owner_(std::move(owner)), data_(data), size_(size) {}

  static Bytes copy_of(const void* data, std::size_t size);
  // Takes the vector over; its elements are not copied.
  template <class T>
  static Bytes from_vector(std::vector<T> v) {
    auto owner = std::make_shared<std::vector<T>>(std::move(v));
    const auto* data = reinterpret_cast<const std::byte*>(owner->data());
    const std::size_t size = owner->size() * sizeof(T);
    return Bytes(std::move(owner), data, size);
  }

  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::shared_ptr<const void>& owner() const { return owner_; }

 private:
  std::shared_ptr<const void> owner_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// A dense numeric array: dtype, shape and its bytes.
class Array {
 public:
  Array() = default;
  // Throws std::invalid_argument when bytes.size() is not the product of shape times the
  // element size.
  Array(DType dtype, std::vector<std::size_t> shape, Bytes bytes);

  // A 1-D array that takes the vector over (no element is copied).
  template <class T>
  static Array from(std::vector<T> v) {
    const std::size_t n = v.size();
    return Array(dtype_of<T>(), {n}, Bytes::from_vector(std::move(v)));
  }

  DType dtype() const { return dtype_; }
  const std::vector<std::size_t>& shape() const { return shape_; }
  std::size_t size() const;  // number of elements
  const Bytes& bytes() const { return bytes_; }

  // The elements in place. Throws std::invalid_argument when T is not the dtype, or when the
  // bytes are not aligned for T (received frames can be unaligned: use to_vector()).
  template <class T>
  std::span<const T> view() const {
    check<T>();
    if (reinterpret_cast<std::uintptr_t>(bytes_.data()) % alignof(T) != 0) {
      throw std::invalid_argument("array bytes are not aligned for direct access; use to_vector()");
    }
    return {reinterpret_cast<const T*>(bytes_.data()), size()};
  }
  // Element i of the flattened array (i < size()) as a JSON number: a double for f4/f8, an
  // integer otherwise. Reads unaligned bytes safely.
  nlohmann::json element(std::size_t i) const;

  // The elements, copied. Throws std::invalid_argument when T is not the dtype.
  template <class T>
  std::vector<T> to_vector() const {
    check<T>();
    std::vector<T> out(size());
    if (!out.empty()) std::memcpy(out.data(), bytes_.data(), bytes_.size());
    return out;
  }

 private:
  template <class T>
  void check() const {
    if (dtype_of<T>() != dtype_) {
      throw std::invalid_argument(std::string("array holds ") + std::string(dtype_name(dtype_)) +
                                  ", not " + std::string(dtype_name(dtype_of<T>())));
    }
  }

  DType dtype_ = DType::kFloat64;
  std::vector<std::size_t> shape_;
  Bytes bytes_;
};

// A JSON document plus the arrays it references.
class Value {
 public:
  Value() = default;  // JSON null
  // Plain JSON. An object of the form {"__buffer__": ...} inside it is rejected with
  // std::invalid_argument (that form is reserved for array references).
  Value(nlohmann::json json);  // NOLINT(google-explicit-constructor)
  Value(Array array);          // NOLINT(google-explicit-constructor)
  template <class T, class = std::enable_if_t<std::is_arithmetic_v<T> && !std::is_same_v<T, bool>>>
  Value(std::vector<T> v) : Value(Array::from(std::move(v))) {}  // NOLINT
  // Scalars and strings, so that a task can `return a - b;` or `return "done";`.
  template <class T, class D = std::decay_t<T>,
            class = std::enable_if_t<std::is_arithmetic_v<D> ||
                                     (std::is_convertible_v<T, std::string_view> &&
                                      !std::is_same_v<D, nlohmann::json>)>>
  Value(T&& scalar)  // NOLINT(google-explicit-constructor)
      : json_(nlohmann::json(std::forward<T>(scalar))) {}

  // A JSON list / object of values, their arrays renumbered in order.
  static Value list(std::vector<Value> items);
  static Value object(std::vector<std::pair<std::string, Value>> items);

  // Builds a value from its wire form: the document with references, and the arrays in
  // reference order. Throws std::invalid_argument when a reference is out of range or
  // malformed.
  static Value from_parts(nlohmann::json document, std::vector<Array> arrays);

  // The document, arrays standing as {"__buffer__": k, "dtype", "shape"} references.
  const nlohmann::json& json() const { return json_; }
  const std::vector<Array>& arrays() const { return arrays_; }

  bool is_array() const;  // the whole value is one array
  // The whole value as an array. Throws std::invalid_argument otherwise.
  const Array& array() const;

  // List and object access: the element with its own arrays. Throw std::out_of_range.
  std::size_t size() const;  // items of a list or object; 0 for anything else
  Value operator[](std::size_t index) const;
  Value at(const std::string& key) const;

  // The value as T: a std::vector of a numeric type from an array (or a JSON list of numbers);
  // anything else through nlohmann::json's get<T>(). Throws std::invalid_argument or
  // nlohmann::json::exception when it does not fit.
  template <class T>
  T as() const {
    if constexpr (is_numeric_vector<T>::value) {
      if (is_array()) return array().to_vector<typename T::value_type>();
    }
    if (!arrays_.empty()) {
      throw std::invalid_argument("value holds arrays; it cannot be read as plain JSON");
    }
    return json_.get<T>();
  }

  // The document with every array written out as (nested) lists of numbers: for printing,
  // and for small arrays only (a 10^7-element array makes a 10^7-element JSON list).
  nlohmann::json to_plain_json() const;
  // to_plain_json().dump(): [6, 4, 2, 0].
  std::string dump() const;

  friend bool operator==(const Value& a, const Value& b);

 private:
  template <class T>
  struct is_numeric_vector : std::false_type {};
  template <class E>
  struct is_numeric_vector<std::vector<E>>
      : std::bool_constant<std::is_arithmetic_v<E> && !std::is_same_v<E, bool>> {};

  Value sub(const nlohmann::json& part) const;

  nlohmann::json json_;
  std::vector<Array> arrays_;
};

// The reference document of one array, numbered k.
nlohmann::json array_reference(const Array& array, std::size_t k);

}  // namespace ipcpp
