#pragma once
// The `hash` attribute of <rs:md> and <rs:ln>: whitespace-separated `algorithm:digest`
// tokens (Atom Link Extensions), e.g. "md5:1e0d… sha-256:854f…". ResourceSync uses md5,
// sha-1 and sha-256 with lower-case hex digests.

#include <optional>
#include <string>
#include <string_view>

namespace shardsync::sitemap {

enum class HashAlgorithm { md5, sha1, sha256 };

// "md5", "sha-1", "sha-256": the token names the attribute uses.
[[nodiscard]] std::string_view algorithm_name(HashAlgorithm algorithm);
[[nodiscard]] std::optional<HashAlgorithm> algorithm_from_name(std::string_view name);
// Hex digits in a digest of this algorithm (32, 40, 64).
[[nodiscard]] std::size_t hex_digest_length(HashAlgorithm algorithm);

// A hash attribute value, kept as its tokens in document order, single-space separated, so a
// document round-trips unchanged. Lookups are by algorithm; unknown algorithms and digests
// that are not valid hex are kept (a validator reports them).
class HashList {
 public:
  HashList() = default;
  // Normalises any run of XML whitespace between tokens to one space.
  static HashList from_attribute(std::string_view text);

  [[nodiscard]] bool empty() const { return text_.empty(); }
  // The attribute text: tokens separated by single spaces.
  [[nodiscard]] const std::string& text() const { return text_; }

  // The digest for `algorithm` (the first token naming it), or empty when absent.
  [[nodiscard]] std::string_view get(HashAlgorithm algorithm) const;
  [[nodiscard]] std::string_view get(std::string_view algorithm_name) const;
  // Adds or replaces the digest for `algorithm` (replacing keeps the token's position).
  void set(HashAlgorithm algorithm, std::string_view hex_digest);

  // Calls fn(algorithm_name, digest) for every token, in order.
  template <typename Fn>
  void for_each(Fn&& fn) const {
    std::string_view rest = text_;
    while (!rest.empty()) {
      const auto end = rest.find(' ');
      const std::string_view token = rest.substr(0, end);
      const auto colon = token.find(':');
      if (colon == std::string_view::npos) {
        fn(std::string_view{}, token);
      } else {
        fn(token.substr(0, colon), token.substr(colon + 1));
      }
      if (end == std::string_view::npos) break;
      rest.remove_prefix(end + 1);
    }
  }

  friend bool operator==(const HashList&, const HashList&) = default;

 private:
  std::string text_;
};

// True when `digest` is a lower-case hex digest of the right length for `algorithm`.
[[nodiscard]] bool is_valid_hex_digest(HashAlgorithm algorithm, std::string_view digest);

}  // namespace shardsync::sitemap
