// IPCPP_JSON_STRUCT(Type, field...): to_json / from_json for a plain struct whose members are
// named as on the wire. from_json keeps the member's default for a missing or null field
// (unless the member is itself json or optional) and throws FieldError naming the field path
// ("after.dependencies") when a present field has the wrong type.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>

#include <nlohmann/json.hpp>

namespace ipcpp::proto {

// A field of the wrong type; what() is "field 'a.b': <reason>".
class FieldError : public std::runtime_error {
 public:
  FieldError(std::string path, std::string reason)
      : std::runtime_error("field '" + path + "': " + reason),
        path_(std::move(path)),
        reason_(std::move(reason)) {}
  const std::string& path() const { return path_; }
  const std::string& reason() const { return reason_; }

 private:
  std::string path_;
  std::string reason_;
};

// nlohmann's what() without its "[json.exception.type_error.302] " prefix.
std::string json_error_reason(const nlohmann::json::exception& e);

namespace detail {

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};

// Throws FieldError when j is not an object.
void require_object(const nlohmann::json& j, const char* type_name);

template <class T>
void read_field(const nlohmann::json& j, const char* key, T& out) {
  const auto it = j.find(key);
  if (it == j.end()) return;
  if (it->is_null() && !std::is_same_v<T, nlohmann::json> && !is_optional<T>::value) return;
  try {
    it->get_to(out);
  } catch (const FieldError& e) {
    throw FieldError(std::string(key) + "." + e.path(), e.reason());
  } catch (const nlohmann::json::exception& e) {
    throw FieldError(key, json_error_reason(e));
  }
}

}  // namespace detail
}  // namespace ipcpp::proto

#define IPCPP_JSON_TO_FIELD(field) ipcpp_json[#field] = ipcpp_value.field;
#define IPCPP_JSON_FROM_FIELD(field) \
  ::ipcpp::proto::detail::read_field(ipcpp_json, #field, ipcpp_value.field);

#define IPCPP_JSON_STRUCT(Type, ...)                                              \
  inline void to_json(::nlohmann::json& ipcpp_json, const Type& ipcpp_value) {    \
    ipcpp_json = ::nlohmann::json::object();                                      \
    NLOHMANN_JSON_EXPAND(NLOHMANN_JSON_PASTE(IPCPP_JSON_TO_FIELD, __VA_ARGS__))   \
  }                                                                               \
  inline void from_json(const ::nlohmann::json& ipcpp_json, Type& ipcpp_value) {  \
    ::ipcpp::proto::detail::require_object(ipcpp_json, #Type);                    \
    NLOHMANN_JSON_EXPAND(NLOHMANN_JSON_PASTE(IPCPP_JSON_FROM_FIELD, __VA_ARGS__)) \
  }
