#include "shardsync/sitemap/byte_source.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "shardsync/sitemap/errc.hpp"

namespace shardsync::sitemap {
namespace {

class MemorySource final : public ByteSource {
 public:
  explicit MemorySource(std::string_view bytes) : rest_(bytes) {}
  Result<std::size_t> read(char* buffer, std::size_t size) override {
    const std::size_t n = std::min(size, rest_.size());
    std::memcpy(buffer, rest_.data(), n);
    rest_.remove_prefix(n);
    return n;
  }

 private:
  std::string_view rest_;
};

class FileSource final : public ByteSource {
 public:
  FileSource(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~FileSource() override { ::close(fd_); }
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;

  Result<std::size_t> read(char* buffer, std::size_t size) override {
    for (;;) {
      const ssize_t n = ::read(fd_, buffer, size);
      if (n >= 0) return static_cast<std::size_t>(n);
      if (errno == EINTR) continue;
      return fail(errc::io_error, "reading " + path_ + ": " + std::strerror(errno));
    }
  }

 private:
  int fd_;
  std::string path_;
};

class GzipSource final : public ByteSource {
 public:
  GzipSource(std::unique_ptr<ByteSource> inner, std::size_t max_output)
      : inner_(std::move(inner)), input_(kInputSize), max_output_(max_output) {
    // 16 + MAX_WBITS: gzip wrapper only, so zlib checks the CRC-32 and ISIZE trailer.
    ok_ = inflateInit2(&stream_, 16 + MAX_WBITS) == Z_OK;
  }
  ~GzipSource() override { inflateEnd(&stream_); }
  GzipSource(const GzipSource&) = delete;
  GzipSource& operator=(const GzipSource&) = delete;

  Result<std::size_t> read(char* buffer, std::size_t size) override {
    if (!ok_) return fail(errc::decompression_failed, "gzip: cannot initialise zlib");
    if (finished_) return std::size_t{0};
    // One byte past the cap is enough to tell "exactly at the cap" from "over it".
    const std::size_t room = max_output_ + 1 - produced_;
    stream_.next_out = reinterpret_cast<Bytef*>(buffer);
    stream_.avail_out = static_cast<uInt>(std::min({size, room, std::size_t{1} << 30}));
    const uInt wanted = stream_.avail_out;
    while (stream_.avail_out == wanted) {
      if (stream_.avail_in == 0 && !inner_eof_) {
        auto n = inner_->read(input_.data(), input_.size());
        if (!n) return fail(n.error());
        if (*n == 0) inner_eof_ = true;
        stream_.next_in = reinterpret_cast<Bytef*>(input_.data());
        stream_.avail_in = static_cast<uInt>(*n);
      }
      const int rc = inflate(&stream_, Z_NO_FLUSH);
      if (rc == Z_STREAM_END) {
        if (auto trailing = reject_trailing_data(); !trailing) return fail(trailing.error());
        finished_ = true;
        break;
      }
      if (rc == Z_BUF_ERROR && inner_eof_ && stream_.avail_in == 0) {
        return fail(errc::truncated, "gzip stream ends before its trailer");
      }
      if (rc != Z_OK && rc != Z_BUF_ERROR) {
        return fail(errc::decompression_failed,
                    std::string("gzip: ") + (stream_.msg ? stream_.msg : "corrupt data"));
      }
    }
    const std::size_t n = wanted - stream_.avail_out;
    produced_ += n;
    if (produced_ > max_output_) {
      return fail(errc::limit_exceeded,
                  "gzip: decompressed size exceeds " + std::to_string(max_output_) + " bytes");
    }
    return n;
  }

 private:
  static constexpr std::size_t kInputSize = 256 * 1024;

  // A second member or garbage after the first is refused: one layer, one member.
  Result<void> reject_trailing_data() {
    if (stream_.avail_in > 0) {
      return fail(errc::decompression_failed, "gzip: data after the end of the gzip stream");
    }
    while (!inner_eof_) {
      auto n = inner_->read(input_.data(), input_.size());
      if (!n) return fail(n.error());
      if (*n == 0) break;
      return fail(errc::decompression_failed, "gzip: data after the end of the gzip stream");
    }
    return {};
  }

  std::unique_ptr<ByteSource> inner_;
  std::vector<char> input_;
  z_stream stream_{};
  std::size_t max_output_;
  std::size_t produced_ = 0;
  bool ok_ = false;
  bool inner_eof_ = false;
  bool finished_ = false;
};

}  // namespace

std::unique_ptr<ByteSource> memory_source(std::string_view bytes) {
  return std::make_unique<MemorySource>(bytes);
}

Result<std::unique_ptr<ByteSource>> file_source(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(errc::io_error, "cannot open " + path + ": " + std::strerror(errno));
  return std::unique_ptr<ByteSource>(std::make_unique<FileSource>(fd, path));
}

std::unique_ptr<ByteSource> gzip_source(std::unique_ptr<ByteSource> inner, std::size_t max_output) {
  return std::make_unique<GzipSource>(std::move(inner), max_output);
}

}  // namespace shardsync::sitemap
