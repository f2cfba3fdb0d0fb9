#include "proto/errors.hpp"

namespace ipcpp::proto {

std::string_view errc_name(Errc code) {
  switch (code) {
    case Errc::kMissingDelimiter:
      return "missing-delimiter";
    case Errc::kTruncated:
      return "truncated";
    case Errc::kUnsigned:
      return "unsigned";
    case Errc::kMalformedSignature:
      return "malformed-signature";
    case Errc::kBadSignature:
      return "bad-signature";
    case Errc::kDuplicateSignature:
      return "duplicate-signature";
    case Errc::kBadJson:
      return "bad-json";
    case Errc::kBadHeader:
      return "bad-header";
    case Errc::kBadContent:
      return "bad-content";
    case Errc::kUnsupported:
      return "unsupported";
    case Errc::kIo:
      return "io";
  }
  return "unknown";
}

}  // namespace ipcpp::proto
