// Whole-file reads for the certificate, key, CA and CRL files named in proxy.yaml.
#pragma once

#include <optional>
#include <string>

namespace fmp::proxy::tls {

/// The bytes of `path`, or nullopt with `error` set to the system's reason ("No such file or
/// directory"). Reading into memory first lets a parser retry another encoding (PEM, then DER) and
/// keeps "cannot read" apart from "cannot parse" in diagnostics.
std::optional<std::string> read_file_bytes(const std::string& path, std::string& error);

}  // namespace fmp::proxy::tls
