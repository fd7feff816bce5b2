#pragma once
// Where a parser reads bytes from: memory, a file, or a gzip stream over either.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "shardsync/result.hpp"

namespace shardsync::sitemap {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads up to `size` bytes into `buffer`; 0 means the end. Errors are values.
  [[nodiscard]] virtual Result<std::size_t> read(char* buffer, std::size_t size) = 0;
};

// Reads from memory that the caller keeps alive for the source's lifetime.
[[nodiscard]] std::unique_ptr<ByteSource> memory_source(std::string_view bytes);

// Reads a file; the error names the path.
[[nodiscard]] Result<std::unique_ptr<ByteSource>> file_source(const std::string& path);

// Inflates a single gzip member from `inner`. Corrupt data, a bad CRC/ISIZE trailer, a
// truncated stream or bytes after the member are errors (errc::decompression_failed /
// truncated). It never produces more than `max_output` bytes: one byte past that is
// errc::limit_exceeded, so a gzip bomb costs bounded time and memory.
[[nodiscard]] std::unique_ptr<ByteSource> gzip_source(std::unique_ptr<ByteSource> inner,
                                                      std::size_t max_output);

}  // namespace shardsync::sitemap
