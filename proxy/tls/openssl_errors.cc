#include "proxy/tls/openssl_errors.h"

#include <openssl/err.h>

#include <array>

namespace fmp::proxy::tls {

std::string drain_openssl_errors() {
  std::string out;
  const char* data = nullptr;
  int flags = 0;
  while (unsigned long code = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) {
    std::array<char, 256> buf{};
    ERR_error_string_n(code, buf.data(), buf.size());
    if (!out.empty()) out += "; ";
    // Prefer the bare reason ("no start line") over the full "error:0480006C:PEM routines::..."
    // form when OpenSSL knows it; the code form stays as a fallback for unknown reasons.
    const char* reason = ERR_reason_error_string(code);
    out += reason != nullptr ? reason : buf.data();
    if ((flags & ERR_TXT_STRING) != 0 && data != nullptr && *data != '\0') {
      out += " (";
      out += data;
      out += ")";
    }
  }
  return out;
}

}  // namespace fmp::proxy::tls
