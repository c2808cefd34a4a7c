// Streaming scan of a Bundle body with nlohmann's SAX interface: validates the whole text, refuses
// duplicate keys and deep nesting, and copies out only the fields the classification reads.
#include "policy/fhir_bundle_scan.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace fmp::policy {
namespace {

using nlohmann::json;

/// Which open container the parser is in, for the containers whose members are read.
enum class Container : std::uint8_t {
  kOther,     ///< only validated
  kRoot,      ///< the Bundle object
  kEntries,   ///< the Bundle.entry array
  kEntry,     ///< an object element of Bundle.entry (that is kept)
  kRequest,   ///< entry.request
  kResource,  ///< entry.resource
};

/// What the next value is, decided by the container it is in and the key before it.
enum class Slot : std::uint8_t {
  kIgnored,
  kRoot,                  ///< the top-level value
  kBundleResourceType,    ///< Bundle.resourceType
  kBundleType,            ///< Bundle.type
  kBundleEntry,           ///< Bundle.entry
  kEntryElement,          ///< an element of Bundle.entry
  kEntryRequest,          ///< entry.request
  kEntryResource,         ///< entry.resource
  kRequestMethod,         ///< entry.request.method
  kRequestUrl,            ///< entry.request.url
  kResourceResourceType,  ///< entry.resource.resourceType
};

/// Where one object's keys live in the key arena.
struct KeyRef {
  std::size_t offset;
  std::size_t size;
};

/// Objects with at most this many keys are checked for duplicates pair by pair.
constexpr std::size_t kPairwiseKeys = 16;

/// One open object or array.
struct Frame {
  Container container;
  Slot next = Slot::kIgnored;  ///< objects: what the value after the last key is
  std::size_t first_key = 0;   ///< objects: index of the first key in keys_
  std::size_t arena_size = 0;  ///< objects: size of the key arena when the object opened
};

/// The SAX handler. Keys of every open object are kept (bytes in one arena, one KeyRef per key) and
/// checked for duplicates when the object closes, then dropped: memory is bounded by the keys of
/// the objects on the current path, not by the document. Values are never stored except the slots.
class BundleScanner final : public json::json_sax_t {
 public:
  BundleScanner(std::size_t max_entries, BundleScan& out) : max_entries_(max_entries), out_(out) {
    frames_.reserve(kMaxBundleJsonDepth);
  }

  bool null() override { return scalar(); }
  bool boolean(bool) override { return scalar(); }
  bool number_integer(number_integer_t) override { return scalar(); }
  bool number_unsigned(number_unsigned_t) override { return scalar(); }
  bool number_float(number_float_t, const string_t&) override { return scalar(); }

  bool string(string_t& value) override {
    const Slot slot = take_slot();
    switch (slot) {
      case Slot::kBundleResourceType:
        out_.resource_type = value;
        break;
      case Slot::kBundleType:
        out_.type = value;
        break;
      case Slot::kRequestMethod:
        current_entry().method = value;
        break;
      case Slot::kRequestUrl:
        current_entry().url = value;
        break;
      case Slot::kResourceResourceType:
        current_entry().resource_type = value;
        break;
      default:
        not_a_container(slot);
        break;
    }
    return true;
  }

  /// Only binary formats (CBOR, ...) produce these: never JSON text. Refused, to fail closed.
  bool binary(binary_t&) override { return fail("not valid JSON"); }

  bool start_object(std::size_t) override {
    if (frames_.size() >= kMaxBundleJsonDepth) return fail("JSON nested too deeply");
    Container container = Container::kOther;
    switch (take_slot()) {
      case Slot::kRoot:
        out_.root_is_object = true;
        container = Container::kRoot;
        break;
      case Slot::kBundleEntry:
        out_.entry = JsonShape::kObject;
        break;
      case Slot::kEntryElement:
        if (add_entry()) {
          current_entry().is_object = true;
          container = Container::kEntry;
        }
        break;
      case Slot::kEntryRequest:
        current_entry().request = JsonShape::kObject;
        container = Container::kRequest;
        break;
      case Slot::kEntryResource:
        current_entry().resource = JsonShape::kObject;
        container = Container::kResource;
        break;
      default:
        break;
    }
    frames_.push_back(Frame{container, Slot::kIgnored, keys_.size(), arena_.size()});
    return true;
  }

  bool key(string_t& name) override {
    Frame& frame = frames_.back();
    keys_.push_back(KeyRef{arena_.size(), name.size()});
    arena_.append(name);
    frame.next = slot_for(frame.container, name);
    return true;
  }

  bool end_object() override {
    const Frame& frame = frames_.back();
    if (const auto dup = duplicate_key(frame.first_key)) {
      return fail("duplicate key \"" + *dup + "\"");
    }
    keys_.resize(frame.first_key);
    arena_.resize(frame.arena_size);
    frames_.pop_back();
    return true;
  }

  bool start_array(std::size_t) override {
    if (frames_.size() >= kMaxBundleJsonDepth) return fail("JSON nested too deeply");
    Container container = Container::kOther;
    switch (take_slot()) {
      case Slot::kBundleEntry:
        out_.entry = JsonShape::kArray;
        container = Container::kEntries;
        break;
      case Slot::kEntryElement:
        add_entry();
        break;
      case Slot::kEntryRequest:
        current_entry().request = JsonShape::kArray;
        break;
      case Slot::kEntryResource:
        current_entry().resource = JsonShape::kArray;
        break;
      default:
        break;
    }
    frames_.push_back(Frame{container, Slot::kIgnored, keys_.size(), arena_.size()});
    return true;
  }

  bool end_array() override {
    frames_.pop_back();
    return true;
  }

  bool parse_error(std::size_t position, const std::string&, const json::exception&) override {
    return fail("not valid JSON (at byte " + std::to_string(position) + ")");
  }

  /// Empty while (and when) the text is accepted.
  std::string& error() { return error_; }

 private:
  /// What the value after key `name` in `container` is.
  static Slot slot_for(Container container, std::string_view name) {
    switch (container) {
      case Container::kRoot:
        if (name == "resourceType") return Slot::kBundleResourceType;
        if (name == "type") return Slot::kBundleType;
        if (name == "entry") return Slot::kBundleEntry;
        return Slot::kIgnored;
      case Container::kEntry:
        if (name == "request") return Slot::kEntryRequest;
        if (name == "resource") return Slot::kEntryResource;
        return Slot::kIgnored;
      case Container::kRequest:
        if (name == "method") return Slot::kRequestMethod;
        if (name == "url") return Slot::kRequestUrl;
        return Slot::kIgnored;
      case Container::kResource:
        return name == "resourceType" ? Slot::kResourceResourceType : Slot::kIgnored;
      case Container::kOther:
      case Container::kEntries:
        return Slot::kIgnored;
    }
    return Slot::kIgnored;
  }

  /// The slot of the value being opened or read; consumes the key's slot in an object.
  Slot take_slot() {
    if (frames_.empty()) return Slot::kRoot;
    Frame& frame = frames_.back();
    if (frame.container == Container::kEntries) return Slot::kEntryElement;
    return std::exchange(frame.next, Slot::kIgnored);
  }

  bool scalar() {
    not_a_container(take_slot());  // a non-string where a string is read counts as absent
    return true;
  }

  /// A scalar stands where an array or object belongs: the shape is recorded as wrong.
  void not_a_container(Slot slot) {
    switch (slot) {
      case Slot::kBundleEntry:
        out_.entry = JsonShape::kOther;
        break;
      case Slot::kEntryElement:
        add_entry();
        break;
      case Slot::kEntryRequest:
        current_entry().request = JsonShape::kOther;
        break;
      case Slot::kEntryResource:
        current_entry().resource = JsonShape::kOther;
        break;
      default:
        break;
    }
  }

  /// Counts a new element of Bundle.entry; true when it is kept (then it is current_entry()).
  bool add_entry() {
    if (out_.entry_count++ >= max_entries_) return false;
    out_.entries.emplace_back();
    return true;
  }

  /// The entry whose fields are being read. Only called below a kEntry frame, which exists only for
  /// a kept entry: the last one.
  BundleEntryScan& current_entry() { return out_.entries.back(); }

  /// The smallest key (in byte order) that occurs twice among the keys from index `first` on, or
  /// nullopt. FHIR objects hold a handful of keys: those are first compared pair by pair (lengths
  /// first, so most pairs cost no memcmp) and only sorted when a duplicate exists; bigger objects
  /// are sorted, which keeps a hostile object with many keys at n log n.
  std::optional<std::string> duplicate_key(std::size_t first) {
    const std::size_t n = keys_.size() - first;
    if (n < 2) return std::nullopt;
    if (n <= kPairwiseKeys && !has_equal_pair(first)) return std::nullopt;
    const auto begin = keys_.begin() + static_cast<std::ptrdiff_t>(first);
    std::sort(begin, keys_.end(),
              [this](const KeyRef& a, const KeyRef& b) { return view(a) < view(b); });
    const auto dup =
        std::adjacent_find(begin, keys_.end(),
                           [this](const KeyRef& a, const KeyRef& b) { return view(a) == view(b); });
    if (dup == keys_.end()) return std::nullopt;
    return std::string(view(*dup));
  }

  bool has_equal_pair(std::size_t first) const {
    for (std::size_t i = first + 1; i < keys_.size(); ++i) {
      for (std::size_t j = first; j < i; ++j) {
        if (keys_[i].size == keys_[j].size && view(keys_[i]) == view(keys_[j])) return true;
      }
    }
    return false;
  }

  std::string_view view(const KeyRef& k) const {
    return std::string_view(arena_).substr(k.offset, k.size);
  }

  bool fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
    return false;
  }

  std::size_t max_entries_;
  BundleScan& out_;
  std::vector<Frame> frames_;
  std::vector<KeyRef> keys_;
  std::string arena_;
  std::string error_;
};

}  // namespace

std::string scan_bundle(std::string_view body, std::size_t max_entries, BundleScan& out) {
  out = BundleScan{};
  BundleScanner scanner(max_entries, out);
  try {
    const bool ok = json::sax_parse(body.data(), body.data() + body.size(), &scanner);
    if (ok && scanner.error().empty()) return {};
  } catch (const std::exception&) {
    // The SAX parser reports errors through parse_error; anything thrown (std::bad_alloc on a
    // huge input) still only means the body can't be inspected.
  }
  return scanner.error().empty() ? std::string("not valid JSON") : std::move(scanner.error());
}

}  // namespace fmp::policy
