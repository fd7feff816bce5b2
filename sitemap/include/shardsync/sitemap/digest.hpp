#pragma once
// Computes the digests a `hash` attribute carries (md5, sha-1, sha-256) with OpenSSL EVP,
// several at once in one pass over the bytes.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "shardsync/result.hpp"
#include "shardsync/sitemap/hashes.hpp"

namespace shardsync::sitemap {

// Incremental hashing of a stream: feed bytes as they arrive (e.g. from the network), then
// take the digests. Not thread-safe; movable.
class Hasher {
 public:
  explicit Hasher(std::vector<HashAlgorithm> algorithms = {HashAlgorithm::sha256});
  ~Hasher();
  Hasher(Hasher&&) noexcept;
  Hasher& operator=(Hasher&&) noexcept;

  void update(std::string_view bytes);
  // The digests as a hash attribute value, in the order the algorithms were given.
  // The hasher is spent afterwards.
  [[nodiscard]] HashList finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Hashes a file's contents; the error names the path.
[[nodiscard]] Result<HashList> hash_file(const std::string& path,
                                         std::vector<HashAlgorithm> algorithms = {
                                             HashAlgorithm::sha256});

// Lower-case hex of raw bytes.
[[nodiscard]] std::string to_hex(std::string_view bytes);

}  // namespace shardsync::sitemap
