#include "atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "shardsync/sitemap/errc.hpp"

namespace shardsync::sitemap::detail {
namespace {

tl::unexpected<Error> io_error(const std::string& what, const std::string& path) {
  return fail(errc::io_error, what + " " + path + ": " + std::strerror(errno));
}

std::string parent_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

Result<void> sync_parent_directory(const std::string& path) {
  const std::string dir = parent_of(path);
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return io_error("cannot open directory", dir);
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return io_error("cannot fsync directory", dir);
  return {};
}

Result<AtomicFile> AtomicFile::create(std::string path) {
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  std::string temp = dir + "." + name + ".tmp.XXXXXX";
  const int fd = ::mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) return io_error("cannot create a temporary file for", path);
  return AtomicFile(fd, std::move(path), std::move(temp));
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : fd_(other.fd_),
      path_(std::move(other.path_)),
      temp_path_(std::move(other.temp_path_)),
      size_(other.size_) {
  other.fd_ = -1;
  other.temp_path_.clear();
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
}

Result<void> AtomicFile::write(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("cannot write", temp_path_);
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
    size_ += static_cast<std::uint64_t>(n);
  }
  return {};
}

Result<void> AtomicFile::patch(std::uint64_t offset, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::pwrite(fd_, bytes.data(), bytes.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("cannot write", temp_path_);
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
    offset += static_cast<std::uint64_t>(n);
  }
  return {};
}

Result<void> AtomicFile::commit(bool sync_directory) { return commit_as(path_, sync_directory); }

Result<void> AtomicFile::seal() {
  if (fd_ < 0) return {};
  if (::fchmod(fd_, 0644) != 0) return io_error("cannot chmod", temp_path_);
  if (::fsync(fd_) != 0) return io_error("cannot fsync", temp_path_);
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) return io_error("cannot close", temp_path_);
  return {};
}

Result<void> AtomicFile::commit_as(const std::string& path, bool sync_directory) {
  if (auto r = seal(); !r) return r;
  if (::rename(temp_path_.c_str(), path.c_str()) != 0) return io_error("cannot rename to", path);
  temp_path_.clear();
  if (!sync_directory) return {};
  return sync_parent_directory(path);
}

}  // namespace shardsync::sitemap::detail
