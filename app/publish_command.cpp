// shardsync publish: uploads files to a `shardsync serve` collection (PUT), or deletes them
// (DELETE), with the server's write token.

#include <curl/curl.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "commands.hpp"
#include "shardsync/sitemap/url.hpp"
#include "token_file.hpp"

namespace shardsync::app {
namespace {

namespace fs = std::filesystem;

struct PublishFlags {
  std::string url;
  std::vector<std::string> files;
  std::string token_file;
  bool remove = false;
};

struct Target {
  std::string url;
  fs::path file;  // empty for DELETE
};

std::size_t discard(char*, std::size_t size, std::size_t count, void*) { return size * count; }

// One request on a reused handle (keep-alive); returns the HTTP status or 0 on a transport
// error (described in `error`).
long send(CURL* curl, const Target& target, const std::string& auth, bool remove,
          std::string& error) {
  curl_easy_reset(curl);
  char buffer[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl, CURLOPT_URL, target.url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 15L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, buffer);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "shardsync/0.1");
  struct curl_slist* headers = nullptr;
  if (!auth.empty()) headers = curl_slist_append(headers, auth.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  std::unique_ptr<FILE, decltype(&std::fclose)> in(nullptr, &std::fclose);
  if (remove) {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "DELETE");
  } else {
    in.reset(std::fopen(target.file.c_str(), "rb"));
    struct stat st {};
    if (!in || ::fstat(fileno(in.get()), &st) != 0) {
      curl_slist_free_all(headers);
      error = "cannot read " + target.file.string();
      return 0;
    }
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_READDATA, in.get());
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(st.st_size));
  }
  const CURLcode rc = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    error = buffer[0] ? buffer : curl_easy_strerror(rc);
    return 0;
  }
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  return status;
}

int run_publish(const PublishFlags& f) {
  std::string auth;
  if (!f.token_file.empty()) {
    auto token = read_token_file(f.token_file);
    if (!token) {
      std::fprintf(stderr, "shardsync publish: %s\n", token.error().detail.c_str());
      return kExitUsage;
    }
    auth = "Authorization: Bearer " + *token;
  }
  const bool into_directory = f.url.ends_with('/');
  std::vector<Target> targets;
  if (f.remove) {
    // Each argument is a path below URL.
    const std::string base = into_directory ? f.url : f.url + "/";
    for (const std::string& path : f.files)
      targets.push_back({base + sitemap::encode_path(path), {}});
  } else {
    for (const std::string& name : f.files) {
      const fs::path path(name);
      std::error_code ec;
      if (fs::is_directory(path, ec)) {
        if (!into_directory) {
          std::fprintf(stderr, "shardsync publish: %s is a directory: give a URL ending in '/'\n",
                       name.c_str());
          return kExitUsage;
        }
        // A directory lands under its own name: URL/dir/a/b.bin.
        const fs::path top = path.lexically_normal().filename().empty()
                                 ? path.lexically_normal().parent_path().filename()
                                 : path.lexically_normal().filename();
        std::vector<fs::path> files;
        for (const auto& entry : fs::recursive_directory_iterator(path, ec)) {
          if (entry.is_regular_file() && !entry.is_symlink()) files.push_back(entry.path());
        }
        std::sort(files.begin(), files.end());
        for (const fs::path& file : files) {
          const std::string rel = (top / fs::relative(file, path)).generic_string();
          targets.push_back({f.url + sitemap::encode_path(rel), file});
        }
      } else if (fs::is_regular_file(path, ec)) {
        targets.push_back(
            {into_directory ? f.url + sitemap::encode_path(path.filename().string()) : f.url,
             path});
      } else {
        std::fprintf(stderr, "shardsync publish: %s is not a file or directory\n", name.c_str());
        return kExitUsage;
      }
    }
    if (!into_directory && targets.size() != 1) {
      std::fprintf(stderr,
                   "shardsync publish: several files need a URL ending in '/' (a directory)\n");
      return kExitUsage;
    }
  }

  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  std::size_t failed = 0;
  for (const Target& target : targets) {
    std::string error;
    const long status = send(curl.get(), target, auth, f.remove, error);
    const bool ok = status >= 200 && status < 300;
    if (!ok) ++failed;
    if (status == 0) {
      std::printf("%s %s failed: %s\n", f.remove ? "DELETE" : "PUT", target.url.c_str(),
                  error.c_str());
    } else {
      std::printf("%s %s %ld%s\n", f.remove ? "DELETE" : "PUT", target.url.c_str(), status,
                  ok ? "" : (status == 401 || status == 403 ? " (check the write token)" : ""));
    }
  }
  std::printf("%zu of %zu %s\n", targets.size() - failed, targets.size(),
              f.remove ? "deleted" : "published");
  if (failed == 0) return kExitOk;
  return failed == targets.size() ? kExitFailure : kExitPartial;
}

}  // namespace

void add_publish_command(CLI::App& app, int& exit_code) {
  auto f = std::make_shared<PublishFlags>();
  CLI::App* publish = app.add_subcommand(
      "publish", "Upload files to a `shardsync serve` collection (or delete them)");
  publish
      ->add_option("url", f->url,
                   "collection URL: a directory URL ending in '/', or one file's URL")
      ->required();
  publish
      ->add_option("files", f->files,
                   "files or directories to upload (with --delete: paths below URL)")
      ->required();
  publish->add_option("--token-file", f->token_file, "file holding the server's write token");
  publish->add_flag("--delete", f->remove, "delete the given paths instead of uploading");
  publish->footer(
      "Examples:\n"
      "  shardsync publish http://host:8080/ckpt/step-200/ model-*.safetensors --token-file tok\n"
      "  shardsync publish http://host:8080/ckpt/ ./step-200 --token-file tok\n"
      "  shardsync publish --delete http://host:8080/ckpt/ step-100/model.bin --token-file tok\n"
      "Exit: 0 all done, 1 none done, 2 usage, 3 some failed (listed).");
  publish->callback([f, &exit_code] { exit_code = run_publish(*f); });
}

}  // namespace shardsync::app
