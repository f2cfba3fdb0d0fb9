// The client's exceptions (include/ipcpp/client.hpp).
#include "ipcpp/client.hpp"

namespace ipcpp {
namespace {

std::string describe(const std::string& ename, const std::string& evalue, std::int64_t engine_id) {
  std::string s = engine_id >= 0 ? "[engine " + std::to_string(engine_id) + "] " : std::string();
  s += ename;
  if (!evalue.empty()) s += ": " + evalue;
  return s;
}

std::string describe_all(const std::vector<RemoteError>& errors) {
  std::string s =
      std::to_string(errors.size()) + (errors.size() == 1 ? " request" : " requests") + " failed:";
  for (const auto& e : errors) {
    s += "\n  ";
    s += e.what();
  }
  return s;
}

const RemoteError& first_of(const std::vector<RemoteError>& errors) {
  if (errors.empty()) throw std::invalid_argument("CompositeError needs at least one error");
  return errors.front();
}

}  // namespace

RemoteError::RemoteError(std::string ename, std::string evalue, std::vector<std::string> traceback,
                         std::int64_t engine_id, std::string engine_uuid, std::string msg_id)
    : Error(describe(ename, evalue, engine_id)),  // before the members take the strings over
      ename_(std::move(ename)),
      evalue_(std::move(evalue)),
      traceback_(std::move(traceback)),
      engine_id_(engine_id),
      engine_uuid_(std::move(engine_uuid)),
      msg_id_(std::move(msg_id)) {}

RemoteError::RemoteError(const std::string& what, std::string ename, std::string evalue,
                         std::vector<std::string> traceback, std::int64_t engine_id,
                         std::string engine_uuid, std::string msg_id)
    : Error(what),
      ename_(std::move(ename)),
      evalue_(std::move(evalue)),
      traceback_(std::move(traceback)),
      engine_id_(engine_id),
      engine_uuid_(std::move(engine_uuid)),
      msg_id_(std::move(msg_id)) {}

CompositeError::CompositeError(std::vector<RemoteError> errors)
    : RemoteError(describe_all(errors), first_of(errors).ename(), first_of(errors).evalue(),
                  first_of(errors).traceback(), first_of(errors).engine_id(),
                  first_of(errors).engine_uuid(), first_of(errors).msg_id()),
      errors_(std::move(errors)) {}

}  // namespace ipcpp
