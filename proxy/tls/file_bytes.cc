#include "proxy/tls/file_bytes.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace fmp::proxy::tls {

namespace {
struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
/// Certificate material is small; anything larger is a mistake (a wrong path), not a bundle.
constexpr std::size_t kMaxBytes = 64U * 1024U * 1024U;
}  // namespace

std::optional<std::string> read_file_bytes(const std::string& path, std::string& error) {
  errno = 0;
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) {
    error = std::strerror(errno);
    return std::nullopt;
  }
  std::string out;
  char buf[16384];
  for (;;) {
    std::size_t n = std::fread(buf, 1, sizeof buf, f.get());
    out.append(buf, n);
    if (out.size() > kMaxBytes) {
      error = "file too large";
      return std::nullopt;
    }
    if (n < sizeof buf) break;
  }
  if (std::ferror(f.get()) != 0) {
    error = std::strerror(errno != 0 ? errno : EIO);
    return std::nullopt;
  }
  return out;
}

}  // namespace fmp::proxy::tls
