#include "publisher.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <random>

#include "shardsync/server/errc.hpp"
#include "shardsync/server/scanner.hpp"
#include "shardsync/sitemap/digest.hpp"
#include "shardsync/unique_fd.hpp"

namespace shardsync::server::detail {
namespace {

tl::unexpected<Error> io_error(const std::string& what) {
  return fail(errc::io_error, what + ": " + std::strerror(errno));
}

std::int64_t ns_of(const timespec& t) {
  return static_cast<std::int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

const Collection* find(const std::vector<Collection>& collections, const std::string& name) {
  for (const Collection& c : collections) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

// Opens the directory holding `path` beneath the collection, one component at a time with
// O_NOFOLLOW (a symlink anywhere on the way is refused), creating missing directories when
// `create`. Returns an empty UniqueFd when a directory is missing and !create.
Result<UniqueFd> open_parent(const Collection& c, const std::string& path, bool create) {
  UniqueFd dir(::open(c.directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return io_error("cannot open collection " + c.name);
  std::size_t start = 0;
  for (std::size_t slash = path.find('/'); slash != std::string::npos;
       start = slash + 1, slash = path.find('/', start)) {
    const std::string part = path.substr(start, slash - start);
    int fd = ::openat(dir.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
      if (::mkdirat(dir.get(), part.c_str(), 0755) != 0 && errno != EEXIST) {
        return io_error("cannot create directory " + path.substr(0, slash));
      }
      fd = ::openat(dir.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
      if (errno == ENOENT) return UniqueFd();
      if (errno == ELOOP || errno == ENOTDIR) {
        return fail(errc::unsafe_path, path.substr(0, slash) + " is not a directory");
      }
      return io_error("cannot open directory " + path.substr(0, slash));
    }
    dir = UniqueFd(fd);
  }
  return dir;
}

std::string basename_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

class FileUpload final : public Upload {
 public:
  FileUpload(const PublishRequest& request, UniqueFd dir, std::string temp, UniqueFd file,
             const RecordChange& record, const CacheHashes& cache)
      : request_(request),
        dir_(std::move(dir)),
        temp_(std::move(temp)),
        file_(std::move(file)),
        record_(record),
        cache_(cache),
        hasher_({sitemap::HashAlgorithm::sha256, sitemap::HashAlgorithm::md5}) {}

  ~FileUpload() override {
    if (!committed_) ::unlinkat(dir_.get(), temp_.c_str(), 0);
  }

  Result<void> write(std::string_view bytes) override {
    hasher_.update(bytes);
    received_ += bytes.size();
    while (!bytes.empty()) {
      const ssize_t n = ::write(file_.get(), bytes.data(), bytes.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return io_error("cannot write the upload of " + request_.path);
      }
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return {};
  }

  Result<PublishReply> commit() override {
    if (request_.length && *request_.length != received_) {
      return fail(errc::invalid_config, "body has " + std::to_string(received_) +
                                            " bytes, Content-Length said " +
                                            std::to_string(*request_.length));
    }
    if (::fsync(file_.get()) != 0) return io_error("cannot fsync the upload of " + request_.path);
    struct stat st {};
    if (::fstat(file_.get(), &st) != 0) return io_error("cannot stat the upload");
    file_.reset();

    // Digests and key before the rename (which keeps inode and mtime): see CacheHashes.
    const sitemap::HashList hashes = hasher_.finish();
    const FileKey key{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
                      received_, ns_of(st.st_mtim)};
    if (cache_) {
      if (auto r = cache_(key, std::string(hashes.get(sitemap::HashAlgorithm::sha256)),
                          std::string(hashes.get(sitemap::HashAlgorithm::md5)));
          !r) {
        return fail(r.error());
      }
    }

    const std::string name = basename_of(request_.path);
    struct stat old {};
    const bool existed = ::fstatat(dir_.get(), name.c_str(), &old, AT_SYMLINK_NOFOLLOW) == 0;
    if (existed && S_ISDIR(old.st_mode)) {
      return fail(errc::unsafe_path, request_.path + " is a directory");
    }
    if (request_.create_only) {
      // link(2) fails with EEXIST if the name exists, atomically: of two creators racing
      // past the check in put(), exactly one gets the name. The temp name goes afterwards.
      if (::linkat(dir_.get(), temp_.c_str(), dir_.get(), name.c_str(), 0) != 0) {
        if (errno == EEXIST) return fail(errc::already_exists, request_.path + " exists");
        return io_error("cannot link the upload to " + request_.path);
      }
      committed_ = true;
      if (::unlinkat(dir_.get(), temp_.c_str(), 0) != 0) {
        return io_error("cannot remove the upload's temp file for " + request_.path);
      }
    } else {
      if (::renameat(dir_.get(), temp_.c_str(), dir_.get(), name.c_str()) != 0) {
        return io_error("cannot rename the upload to " + request_.path);
      }
      committed_ = true;
    }
    if (::fsync(dir_.get()) != 0) return io_error("cannot fsync the directory of " + request_.path);

    ResourceState state{request_.path,
                        received_,
                        std::string(hashes.get(sitemap::HashAlgorithm::sha256)),
                        std::string(hashes.get(sitemap::HashAlgorithm::md5)),
                        ns_of(st.st_mtim),
                        media_type_of(request_.path)};
    auto change = record_(request_.collection, sitemap::ChangeType::updated, state, key);
    if (!change) return fail(change.error());
    // By what was there before the rename: the watcher may have logged the file already.
    const bool created = !existed || request_.create_only;
    return PublishReply{created ? 201u : 204u, created ? "created\n" : ""};
  }

 private:
  PublishRequest request_;
  UniqueFd dir_;
  std::string temp_;
  UniqueFd file_;
  RecordChange record_;
  CacheHashes cache_;
  sitemap::Hasher hasher_;
  std::uint64_t received_ = 0;
  bool committed_ = false;
};

struct Publisher {
  std::vector<Collection> collections;
  RecordChange record;
  CacheHashes cache;

  Result<std::unique_ptr<Upload>> put(const PublishRequest& request) {
    const Collection* c = find(collections, request.collection);
    if (!c) return fail(errc::invalid_config, "no collection " + request.collection);
    if (is_reserved_path(request.path) || is_upload_temp(request.path)) {
      return fail(errc::unsafe_path, request.path + " is a reserved name");
    }
    auto dir = open_parent(*c, request.path, true);
    if (!dir) return fail(dir.error());
    if (request.create_only) {
      // Refuse early, before the body is read; commit() decides the race atomically.
      struct stat st {};
      if (::fstatat(dir->get(), basename_of(request.path).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        return fail(errc::already_exists, request.path + " exists");
      }
    }
    std::random_device random;
    const std::string temp = std::string(kUploadPrefix) + std::to_string(random()) + "-" +
                             basename_of(request.path).substr(0, 200);
    UniqueFd file(::openat(dir->get(), temp.c_str(),
                           O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (!file) return io_error("cannot create the upload of " + request.path);
    return std::unique_ptr<Upload>(std::make_unique<FileUpload>(request, std::move(*dir), temp,
                                                                std::move(file), record, cache));
  }

  Result<PublishReply> remove(const PublishRequest& request) {
    const Collection* c = find(collections, request.collection);
    if (!c) return fail(errc::invalid_config, "no collection " + request.collection);
    if (is_reserved_path(request.path)) {
      return fail(errc::unsafe_path, request.path + " is a reserved name");
    }
    auto dir = open_parent(*c, request.path, false);
    if (!dir) return fail(dir.error());
    const std::string name = basename_of(request.path);
    struct stat st {};
    if (!*dir || ::fstatat(dir->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return PublishReply{404, "not found\n"};
    }
    if (!S_ISREG(st.st_mode)) {
      return fail(errc::unsafe_path, request.path + " is not a regular file");
    }
    if (::unlinkat(dir->get(), name.c_str(), 0) != 0)
      return io_error("cannot delete " + request.path);
    if (::fsync(dir->get()) != 0) return io_error("cannot fsync the directory of " + request.path);
    ResourceState state;
    state.path = request.path;
    auto change = record(request.collection, sitemap::ChangeType::deleted, state, FileKey{});
    if (!change) return fail(change.error());
    return PublishReply{204, ""};
  }
};

}  // namespace

PublishHooks make_publish_hooks(std::vector<Collection> collections, RecordChange record,
                                CacheHashes cache) {
  auto publisher = std::make_shared<Publisher>(
      Publisher{std::move(collections), std::move(record), std::move(cache)});
  PublishHooks hooks;
  hooks.put = [publisher](const PublishRequest& r) { return publisher->put(r); };
  hooks.remove = [publisher](const PublishRequest& r) { return publisher->remove(r); };
  return hooks;
}

}  // namespace shardsync::server::detail
