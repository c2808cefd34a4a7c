// OpenSSL's thread-local error queue turned into text.
#pragma once

#include <string>

namespace fmp::proxy::tls {

/// Empties the calling thread's OpenSSL error queue and returns every entry joined with "; "
/// (oldest first, each as OpenSSL's own reason string), or "" when the queue was empty. Draining
/// the whole queue keeps a stale error from being blamed on the next, unrelated operation.
std::string drain_openssl_errors();

}  // namespace fmp::proxy::tls
