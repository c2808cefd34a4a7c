// Fuzz helper: splits an input into pieces, as TCP would, deterministically from the input itself.
//
// The piece sizes come from a hash of the whole input, so a run is reproducible from its input
// file alone and every mutation also tries a different split; the parser sees heads and chunk
// lines cut at every possible place over a campaign.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fmp::fuzz {

/// A deterministic stream of pseudo-random numbers seeded by the bytes of an input.
class SplitPlan {
 public:
  SplitPlan(const std::uint8_t* data, std::size_t size) {
    std::uint64_t h = 1469598103934665603ULL;  // FNV-1a
    for (std::size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 1099511628211ULL;
    state_ = h;
  }

  /// The next number (splitmix64).
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  /// The size of the next piece: mostly small (1..16 bytes) so boundaries fall everywhere,
  /// sometimes large, never 0.
  std::size_t piece() {
    const std::uint64_t r = next();
    if ((r & 3) == 0) return 1 + static_cast<std::size_t>((r >> 8) % 4096);
    return 1 + static_cast<std::size_t>((r >> 8) % 16);
  }

 private:
  std::uint64_t state_ = 0;
};

}  // namespace fmp::fuzz
