#include "proto/signer.hpp"

#include <array>
#include <stdexcept>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <zmq.hpp>

#include "proto/wire.hpp"

namespace ipcpp::proto {

// An HMAC context keyed once; each signature re-initialises it with the same key.
struct Signer::Impl {
  EVP_MAC* mac = nullptr;
  EVP_MAC_CTX* ctx = nullptr;
  std::string digest;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
  }

  static std::unique_ptr<Impl> make(const std::string& digest, const std::string& key) {
    auto impl = std::make_unique<Impl>();
    impl->digest = digest;
    impl->mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (impl->mac == nullptr) throw std::runtime_error("OpenSSL has no HMAC implementation");
    impl->ctx = EVP_MAC_CTX_new(impl->mac);
    if (impl->ctx == nullptr) throw std::bad_alloc();
    std::array<OSSL_PARAM, 2> params = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, impl->digest.data(), 0),
        OSSL_PARAM_construct_end()};
    // The key is the ASCII text of the connection file's "key", used as is.
    const auto* key_bytes = reinterpret_cast<const unsigned char*>(key.data());
    if (EVP_MAC_init(impl->ctx, key_bytes, key.size(), params.data()) != 1) return nullptr;
    return impl;
  }

  // HMAC of the frames into out; returns its length.
  std::size_t mac_of(const zmq::message_t* const* frames, unsigned char* out, std::size_t cap) {
    // Re-initialise with the key set above (a null key reuses it).
    if (EVP_MAC_init(ctx, nullptr, 0, nullptr) != 1) throw std::runtime_error("EVP_MAC_init");
    for (int i = 0; i < kSignedFrameCount; ++i) {
      const auto* data = static_cast<const unsigned char*>(frames[i]->data());
      if (EVP_MAC_update(ctx, data, frames[i]->size()) != 1) {
        throw std::runtime_error("EVP_MAC_update");
      }
    }
    std::size_t len = 0;
    if (EVP_MAC_final(ctx, out, &len, cap) != 1) throw std::runtime_error("EVP_MAC_final");
    return len;
  }
};

namespace {

constexpr std::size_t kMaxMac = EVP_MAX_MD_SIZE;
constexpr char kHex[] = "0123456789abcdef";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

Result<Signer> Signer::create(std::string_view scheme, std::string key) {
  constexpr std::string_view kPrefix = "hmac-";
  if (scheme.substr(0, kPrefix.size()) != kPrefix || scheme.size() == kPrefix.size()) {
    return Error{Errc::kUnsupported, "signature scheme '" + std::string(scheme) +
                                         "' is not supported (expected hmac-<digest>, "
                                         "e.g. hmac-sha256)"};
  }
  const std::string digest(scheme.substr(kPrefix.size()));
  const EVP_MD* md = EVP_get_digestbyname(digest.c_str());
  if (md == nullptr) {
    return Error{Errc::kUnsupported, "signature scheme '" + std::string(scheme) +
                                         "' names a digest OpenSSL does not know"};
  }
  const auto hex_size = 2 * static_cast<std::size_t>(EVP_MD_get_size(md));
  std::unique_ptr<Impl> impl;
  if (!key.empty()) {
    impl = Impl::make(digest, key);
    if (!impl) {
      return Error{Errc::kUnsupported,
                   "signature scheme '" + std::string(scheme) + "' cannot be used for HMAC"};
    }
  }
  return Signer(std::string(scheme), std::move(key), std::move(impl), hex_size);
}

Signer::Signer(std::string scheme, std::string key, std::unique_ptr<Impl> impl,
               std::size_t hex_size)
    : scheme_(std::move(scheme)),
      key_(std::move(key)),
      impl_(std::move(impl)),
      hex_size_(hex_size) {}

Signer::Signer(const Signer& other)
    : scheme_(other.scheme_),
      key_(other.key_),
      impl_(other.impl_ ? Impl::make(other.impl_->digest, other.key_) : nullptr),
      hex_size_(other.hex_size_) {}

Signer& Signer::operator=(const Signer& other) {
  if (this != &other) *this = Signer(other);
  return *this;
}

Signer::Signer(Signer&&) noexcept = default;
Signer& Signer::operator=(Signer&&) noexcept = default;
Signer::~Signer() {
  OPENSSL_cleanse(key_.data(), key_.size());
}

std::string Signer::sign(const zmq::message_t& header, const zmq::message_t& parent_header,
                         const zmq::message_t& metadata, const zmq::message_t& content) {
  if (!enabled()) return {};
  const zmq::message_t* frames[kSignedFrameCount] = {&header, &parent_header, &metadata, &content};
  std::array<unsigned char, kMaxMac> mac{};
  const std::size_t len = impl_->mac_of(frames, mac.data(), mac.size());
  std::string hex(2 * len, '\0');
  for (std::size_t i = 0; i < len; ++i) {
    hex[2 * i] = kHex[mac[i] >> 4];
    hex[2 * i + 1] = kHex[mac[i] & 0xF];
  }
  return hex;
}

std::string Signer::sign(const WireMessage& m) {
  return sign(m.header, m.parent_header, m.metadata, m.content);
}

Status Signer::verify(const WireMessage& m) {
  if (!enabled()) return {};
  if (m.signature.size() == 0) {
    return Error{Errc::kUnsigned,
                 "unsigned message: the signature frame is empty but a key is set"};
  }
  if (m.signature.size() != hex_size_) {
    return Error{Errc::kMalformedSignature,
                 "malformed signature: " + std::to_string(m.signature.size()) + " bytes where a " +
                     scheme_ + " signature has " + std::to_string(hex_size_) + " hex digits"};
  }
  // Decode the received hex into bytes so that the comparison is over the MAC itself.
  std::array<unsigned char, kMaxMac> received{};
  const auto* sig = static_cast<const char*>(m.signature.data());
  for (std::size_t i = 0; i < hex_size_ / 2; ++i) {
    const int hi = hex_value(sig[2 * i]);
    const int lo = hex_value(sig[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return Error{Errc::kMalformedSignature,
                   "malformed signature: the signature frame is not hexadecimal"};
    }
    received[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  const zmq::message_t* frames[kSignedFrameCount] = {&m.header, &m.parent_header, &m.metadata,
                                                     &m.content};
  std::array<unsigned char, kMaxMac> expected{};
  const std::size_t len = impl_->mac_of(frames, expected.data(), expected.size());
  if (CRYPTO_memcmp(received.data(), expected.data(), len) != 0) {
    return Error{Errc::kBadSignature,
                 "invalid signature: the " + scheme_ +
                     " of the header, parent_header, metadata and content frames does not match "
                     "(the message was altered, or signed with another key)"};
  }
  return {};
}

}  // namespace ipcpp::proto
