#include "dump_packer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "http_handler.hpp"
#include "shardsync/server/errc.hpp"
#include "shardsync/sitemap/digest.hpp"

namespace shardsync::server::detail {
namespace {

constexpr std::int64_t kNanos = 1'000'000'000;
constexpr std::size_t kChunk = 1 << 20;

tl::unexpected<Error> io_error(const std::string& what, const std::string& path) {
  return fail(errc::io_error, what + " " + path + ": " + std::strerror(errno));
}

Result<void> sync_directory(const std::string& dir) {
  const UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd || ::fsync(fd.get()) != 0) return io_error("cannot fsync directory", dir);
  return {};
}

// Hashes a written file and makes it durable; fills everything but the name.
Result<DumpFile> seal(const std::string& path) {
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return io_error("cannot reopen", path);
  if (::fsync(fd.get()) != 0) return io_error("cannot fsync", path);
  sitemap::Hasher hasher({sitemap::HashAlgorithm::sha256});
  std::string buffer(kChunk, '\0');
  std::uint64_t length = 0;
  while (true) {
    const ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error("cannot read", path);
    if (n == 0) break;
    hasher.update(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
    length += static_cast<std::uint64_t>(n);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return io_error("cannot stat", path);
  DumpFile file;
  file.length = length;
  file.sha256 = std::string(hasher.finish().get(sitemap::HashAlgorithm::sha256));
  file.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * kNanos + st.st_mtim.tv_nsec;
  return file;
}

// Renames the sealed temporary into place and makes the rename durable.
Result<DumpFile> publish(const std::string& directory, const std::string& name,
                         const std::string& temp) {
  auto sealed = seal(temp);
  if (!sealed) {
    ::unlink(temp.c_str());
    return sealed;
  }
  const std::string path = directory + "/" + name;
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    auto e = io_error("cannot rename into place", path);
    ::unlink(temp.c_str());
    return e;
  }
  if (auto r = sync_directory(directory); !r) return fail(r.error());
  sealed->name = name;
  return sealed;
}

std::string temp_name(const std::string& directory, const std::string& name) {
  return directory + "/.tmp-" + name;
}

// A libzip source that reads one file and checks it against the manifest while libzip
// copies it into the package: libzip reads sources only inside zip_close(), so this is where
// the bytes that end up in the package can be hashed.
class CheckedFile {
 public:
  CheckedFile(const PackItem& item, const PackHook& hook) : item_(item), hook_(hook) {
    zip_error_init(&error_);
  }
  ~CheckedFile() { zip_error_fini(&error_); }
  CheckedFile(const CheckedFile&) = delete;
  CheckedFile& operator=(const CheckedFile&) = delete;

  const std::string& failure() const { return failure_; }
  bool cancelled() const { return cancelled_; }

  static zip_int64_t callback(void* self, void* data, zip_uint64_t len, zip_source_cmd_t cmd) {
    return static_cast<CheckedFile*>(self)->handle(data, len, cmd);
  }

 private:
  zip_int64_t refuse(std::string why) {
    failure_ = item_.expected.path + ": " + std::move(why);
    zip_error_set(&error_, ZIP_ER_READ, EIO);
    return -1;
  }

  zip_int64_t handle(void* data, zip_uint64_t len, zip_source_cmd_t cmd) {
    switch (cmd) {
      case ZIP_SOURCE_OPEN: {
        if (hook_ && !hook_(item_)) {
          cancelled_ = true;
          return refuse("cancelled");
        }
        OpenedFile opened = open_resource(item_.root, item_.expected.path, item_.expected);
        if (opened.status != OpenStatus::ok) {
          return refuse(opened.status == OpenStatus::error ? std::strerror(opened.error)
                                                           : "changed or gone since the snapshot");
        }
        fd_ = std::move(opened.fd);
        hasher_ = sitemap::Hasher({sitemap::HashAlgorithm::sha256});
        read_ = 0;
        done_ = false;
        return 0;
      }
      case ZIP_SOURCE_READ: {
        if (done_) return 0;
        const std::size_t want = static_cast<std::size_t>(len);
        ssize_t n;
        do {
          n = ::read(fd_.get(), data, want);
        } while (n < 0 && errno == EINTR);
        if (n < 0) return refuse(std::strerror(errno));
        read_ += static_cast<std::uint64_t>(n);
        if (read_ > item_.expected.length) return refuse("grew since the snapshot");
        if (n == 0) {
          // End of file: only now is the whole content known.
          if (read_ != item_.expected.length) return refuse("shrank since the snapshot");
          const std::string digest(hasher_.finish().get(sitemap::HashAlgorithm::sha256));
          if (digest != item_.expected.sha256) return refuse("content changed since the snapshot");
          done_ = true;
          return 0;
        }
        hasher_.update(
            std::string_view(static_cast<const char*>(data), static_cast<std::size_t>(n)));
        return n;
      }
      case ZIP_SOURCE_CLOSE:
        fd_.reset();
        return 0;
      case ZIP_SOURCE_STAT: {
        auto* st = static_cast<zip_stat_t*>(data);
        zip_stat_init(st);
        st->size = item_.expected.length;
        st->mtime = static_cast<time_t>(item_.expected.mtime_ns / kNanos);
        st->valid |= ZIP_STAT_SIZE | ZIP_STAT_MTIME;
        return sizeof(zip_stat_t);
      }
      case ZIP_SOURCE_ERROR:
        return zip_error_to_data(&error_, data, len);
      case ZIP_SOURCE_FREE:
        return 0;  // owned by write_package
      case ZIP_SOURCE_SUPPORTS: {
        zip_int64_t bits = 0;
        for (const zip_source_cmd_t c : {ZIP_SOURCE_OPEN, ZIP_SOURCE_READ, ZIP_SOURCE_CLOSE,
                                         ZIP_SOURCE_STAT, ZIP_SOURCE_ERROR, ZIP_SOURCE_FREE}) {
          bits |= zip_int64_t{1} << c;
        }
        return bits;
      }
      default:
        zip_error_set(&error_, ZIP_ER_OPNOTSUPP, 0);
        return -1;
    }
  }

  const PackItem& item_;
  const PackHook& hook_;
  UniqueFd fd_;
  sitemap::Hasher hasher_{{sitemap::HashAlgorithm::sha256}};
  std::uint64_t read_ = 0;
  bool done_ = false;
  bool cancelled_ = false;
  zip_error_t error_;
  std::string failure_;
};

struct ZipCloser {
  void operator()(zip_t* z) const { zip_discard(z); }
};

// Adds a source as a STORED regular file (mode 0644) named `name`.
Result<void> add_entry(zip_t* zip, const std::string& name, zip_source_t* source, time_t mtime) {
  const zip_int64_t index = zip_file_add(zip, name.c_str(), source, ZIP_FL_ENC_UTF_8);
  if (index < 0) {
    zip_source_free(source);
    return fail(errc::io_error, "cannot add " + name + ": " + zip_strerror(zip));
  }
  const auto i = static_cast<zip_uint64_t>(index);
  if (zip_set_file_compression(zip, i, ZIP_CM_STORE, 0) != 0 ||
      zip_file_set_external_attributes(zip, i, 0, ZIP_OPSYS_UNIX, 0100644u << 16) != 0 ||
      zip_file_set_mtime(zip, i, mtime, 0) != 0) {
    return fail(errc::io_error, "cannot set up " + name + ": " + zip_strerror(zip));
  }
  return {};
}

}  // namespace

std::uint64_t package_overhead(std::string_view entry_name) {
  // Local header (30) + central header (46) + the name twice + ZIP64 extra fields in both
  // (up to 32 each) + a data descriptor (24), rounded up; the end records are in the base.
  return 200 + 2 * entry_name.size();
}

Result<DumpFile> write_package(const std::string& directory, const std::string& name,
                               std::string_view manifest, std::int64_t manifest_mtime_ns,
                               const std::vector<PackItem>& items, const PackHook& hook) {
  const std::string temp = temp_name(directory, name);
  int error = 0;
  std::unique_ptr<zip_t, ZipCloser> zip(zip_open(temp.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error));
  if (!zip) {
    zip_error_t e;
    zip_error_init_with_code(&e, error);
    std::string why = zip_error_strerror(&e);
    zip_error_fini(&e);
    return fail(errc::io_error, "cannot create " + temp + ": " + why);
  }
  zip_source_t* manifest_source = zip_source_buffer(zip.get(), manifest.data(), manifest.size(), 0);
  if (!manifest_source) return fail(errc::io_error, "cannot add the manifest to " + temp);
  if (auto r = add_entry(zip.get(), "manifest.xml", manifest_source,
                         static_cast<time_t>(manifest_mtime_ns / kNanos));
      !r) {
    return fail(r.error());
  }
  std::vector<std::unique_ptr<CheckedFile>> files;
  files.reserve(items.size());
  for (const PackItem& item : items) {
    files.push_back(std::make_unique<CheckedFile>(item, hook));
    zip_source_t* source =
        zip_source_function(zip.get(), &CheckedFile::callback, files.back().get());
    if (!source) return fail(errc::io_error, "cannot add " + item.entry_name + " to " + temp);
    if (auto r = add_entry(zip.get(), item.entry_name, source,
                           static_cast<time_t>(item.expected.mtime_ns / kNanos));
        !r) {
      return fail(r.error());
    }
  }
  // libzip writes everything now, to a temporary of its own renamed to `temp` on success.
  if (zip_close(zip.get()) != 0) {
    std::string why = zip_strerror(zip.get());
    for (const auto& f : files) {
      if (f->cancelled()) {
        ::unlink(temp.c_str());
        return fail(errc::io_error, "package " + name + " cancelled");
      }
      if (!f->failure().empty()) {
        ::unlink(temp.c_str());
        return fail(errc::changed_while_read, "package " + name + " abandoned: " + f->failure());
      }
    }
    ::unlink(temp.c_str());
    return fail(errc::io_error, "cannot write " + temp + ": " + why);
  }
  zip.release();  // zip_close freed it
  return publish(directory, name, temp);
}

Result<DumpFile> write_dump_file(const std::string& directory, const std::string& name,
                                 std::string_view bytes) {
  const std::string temp = temp_name(directory, name);
  {
    const UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) return io_error("cannot create", temp);
    while (!bytes.empty()) {
      const ssize_t n = ::write(fd.get(), bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        auto e = io_error("cannot write", temp);
        ::unlink(temp.c_str());
        return e;
      }
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  return publish(directory, name, temp);
}

}  // namespace shardsync::server::detail
