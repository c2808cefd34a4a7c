#include "proxy/http/head_storage.h"

#include <utility>

namespace fmp::proxy::http {
namespace {

template <typename T>
T take_from(std::vector<T>& spares) {
  if (spares.empty()) return T{};
  T out = std::move(spares.back());
  spares.pop_back();
  return out;
}

template <typename T>
void give_to(std::vector<T>& spares, T&& item, std::size_t max_capacity) {
  if (!HeadStorage::holds_storage(item) || item.capacity() > max_capacity) return;
  if (spares.size() >= HeadStorage::kMaxSpares) return;
  item.clear();
  if (spares.capacity() == 0) spares.reserve(HeadStorage::kMaxSpares);
  spares.push_back(std::move(item));
}

}  // namespace

std::string HeadStorage::take_bytes() {
  return take_from(bytes_);
}

void HeadStorage::give(std::string&& s) {
  std::string item = std::move(s);
  give_to(bytes_, std::move(item), kMaxBufferBytes);
}

std::vector<Header> HeadStorage::take_headers() {
  return take_from(headers_);
}

void HeadStorage::give(std::vector<Header>&& v) {
  std::vector<Header> item = std::move(v);
  give_to(headers_, std::move(item), MessageParser::kRetainedHeaders);
}

}  // namespace fmp::proxy::http
