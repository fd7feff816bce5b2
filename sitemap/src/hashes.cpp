#include "shardsync/sitemap/hashes.hpp"

#include <algorithm>

namespace shardsync::sitemap {

std::string_view algorithm_name(HashAlgorithm algorithm) {
  switch (algorithm) {
    case HashAlgorithm::md5:
      return "md5";
    case HashAlgorithm::sha1:
      return "sha-1";
    case HashAlgorithm::sha256:
      return "sha-256";
  }
  return "";
}

std::optional<HashAlgorithm> algorithm_from_name(std::string_view name) {
  if (name == "md5") return HashAlgorithm::md5;
  if (name == "sha-1") return HashAlgorithm::sha1;
  if (name == "sha-256") return HashAlgorithm::sha256;
  return std::nullopt;
}

std::size_t hex_digest_length(HashAlgorithm algorithm) {
  switch (algorithm) {
    case HashAlgorithm::md5:
      return 32;
    case HashAlgorithm::sha1:
      return 40;
    case HashAlgorithm::sha256:
      return 64;
  }
  return 0;
}

HashList HashList::from_attribute(std::string_view text) {
  HashList list;
  // Usually the value is already tokens separated by single spaces: take it as it is.
  // (pugixml has already turned literal tabs and newlines in attribute values into spaces.)
  const auto absent = [&](char c) { return text.find(c) == std::string_view::npos; };
  const bool normal = !text.empty() && text.front() != ' ' && text.back() != ' ' && absent('\n') &&
                      absent('\t') && absent('\r') && text.find("  ") == std::string_view::npos;
  if (normal) {
    list.text_.assign(text);
    return list;
  }
  std::size_t pos = 0;
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (pos < text.size()) {
    while (pos < text.size() && is_space(text[pos])) ++pos;
    const std::size_t start = pos;
    while (pos < text.size() && !is_space(text[pos])) ++pos;
    if (pos > start) {
      if (!list.text_.empty()) list.text_ += ' ';
      list.text_.append(text.substr(start, pos - start));
    }
  }
  return list;
}

std::string_view HashList::get(std::string_view name) const {
  std::string_view found;
  bool done = false;
  for_each([&](std::string_view alg, std::string_view digest) {
    if (!done && alg == name) {
      found = digest;
      done = true;
    }
  });
  return found;
}

std::string_view HashList::get(HashAlgorithm algorithm) const {
  return get(algorithm_name(algorithm));
}

void HashList::set(HashAlgorithm algorithm, std::string_view hex_digest) {
  const std::string_view name = algorithm_name(algorithm);
  const std::string_view current = get(name);
  if (current.data() != nullptr && !current.empty()) {
    const auto offset = static_cast<std::size_t>(current.data() - text_.data());
    text_.replace(offset, current.size(), hex_digest);
    return;
  }
  if (!text_.empty()) text_ += ' ';
  text_.append(name);
  text_ += ':';
  text_.append(hex_digest);
}

bool is_valid_hex_digest(HashAlgorithm algorithm, std::string_view digest) {
  return digest.size() == hex_digest_length(algorithm) &&
         std::all_of(digest.begin(), digest.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

}  // namespace shardsync::sitemap
