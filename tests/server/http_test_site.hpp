#pragma once
// A Site snapshot built by hand over real files in a TempDir, for the HTTP tests: collection
// "ckpt" at <temp>/ckpt, documents with given bodies (compressed for real).

#include <sys/stat.h>

#include <filesystem>
#include <memory>
#include <string>

#include "compress.hpp"
#include "shardsync/server/site.hpp"
#include "shardsync/sitemap/digest.hpp"
#include "test_paths.hpp"

namespace shardsync::test {

class TestSite {
 public:
  explicit TestSite(std::string base_url = "http://127.0.0.1:8080/")
      : site_(std::make_shared<server::Site>()) {
    site_->base_url = std::move(base_url);
    std::filesystem::create_directories(dir_ / "ckpt");
    site_->collections.push_back({"ckpt", (dir_ / "ckpt").string()});
  }

  const std::filesystem::path& root() const { return dir_.path(); }
  std::filesystem::path collection_dir() const { return dir_ / "ckpt"; }

  // Writes <collection>/<relative> and publishes it as it is now.
  const server::ServedResource& add_file(const std::string& relative, const std::string& bytes,
                                         const std::string& type = "application/octet-stream") {
    const std::filesystem::path file = collection_dir() / relative;
    std::filesystem::create_directories(file.parent_path());
    write_file(file, bytes);
    return publish(relative, type);
  }

  // Publishes an existing file (or a symlink's target's size and mtime, for escape tests).
  const server::ServedResource& publish(const std::string& relative,
                                        const std::string& type = "application/octet-stream") {
    const std::filesystem::path file = collection_dir() / relative;
    struct stat st {};
    ::stat(file.c_str(), &st);
    server::ServedResource r;
    r.collection = "ckpt";
    r.absolute_path = file.string();
    r.state.path = relative;
    r.state.length = static_cast<std::uint64_t>(st.st_size);
    r.state.mtime_ns =
        static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
    r.state.type = type;
    sitemap::Hasher hasher;
    if (S_ISREG(st.st_mode)) hasher.update(read_file(file));
    r.state.sha256 = std::string(hasher.finish().get(sitemap::HashAlgorithm::sha256));
    r.etag = "\"" + r.state.sha256 + "\"";
    auto [it, inserted] = site_->resources.insert_or_assign("ckpt/" + relative, std::move(r));
    return it->second;
  }

  const server::ServedDocument& add_document(const std::string& key, const std::string& body,
                                             bool immutable = false,
                                             std::int64_t last_modified_s = 1'700'000'000) {
    auto doc = std::make_shared<server::ServedDocument>();
    doc->body = body;
    doc->gzip = server::detail::gzip_compress(body);
    doc->zstd = server::detail::zstd_compress(body);
    sitemap::Hasher hasher;
    hasher.update(body);
    doc->etag = "\"" +
                std::string(hasher.finish().get(sitemap::HashAlgorithm::sha256)).substr(0, 32) +
                "\"";
    doc->last_modified_s = last_modified_s;
    doc->immutable = immutable;
    site_->documents[key] = doc;
    return *doc;
  }

  // The standard documents of collection "ckpt".
  void add_standard_documents() {
    add_document("/.well-known/resourcesync", xml("source description"));
    add_document("/ckpt/capabilitylist.xml", xml("capability list"));
    add_document("/ckpt/.resourcesync/resourcelist.xml", xml("resource list"));
    add_document("/ckpt/.resourcesync/changelist-00001.xml", xml("closed change list"), true);
    add_document("/ckpt/.resourcesync/changelist-00002.xml", xml("open change list"));
  }

  static std::string xml(const std::string& what) {
    std::string body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset><!-- " + what + " -->";
    for (int i = 0; i < 200; ++i)
      body += "<url><loc>http://127.0.0.1/ckpt/f" + std::to_string(i) + "</loc></url>";
    return body + "</urlset>\n";
  }

  std::shared_ptr<const server::Site> snapshot() const {
    return std::make_shared<const server::Site>(*site_);
  }
  server::Site& site() { return *site_; }

 private:
  TempDir dir_;
  std::shared_ptr<server::Site> site_;
};

}  // namespace shardsync::test
