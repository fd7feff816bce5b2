#include "build_command.hpp"

#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "commands.hpp"
#include "shardsync/sitemap/digest.hpp"
#include "shardsync/sitemap/split_writer.hpp"
#include "shardsync/sitemap/url.hpp"
#include "shardsync/sitemap/writer.hpp"

namespace shardsync::app {
namespace {

namespace fs = std::filesystem;
using namespace shardsync::sitemap;

struct BuildOptions {
  std::string directory;
  std::string base_url;       // URL the files of `directory` are served under
  std::string out = ".";      // where the documents go
  std::string documents_url;  // URL `out` is served under (default: base_url)
  std::string name = "resourcelist";
  std::string describedby;  // URL of a human-readable description of the source and set
  std::uint64_t max_entries = 50'000;
};

std::string media_type(const fs::path& path) {
  static const std::vector<std::pair<std::string, std::string>> kTypes{
      {".xml", "application/xml"},   {".json", "application/json"},
      {".txt", "text/plain"},        {".csv", "text/csv"},
      {".html", "text/html"},        {".gz", "application/gzip"},
      {".zst", "application/zstd"},  {".zip", "application/zip"},
      {".tar", "application/x-tar"}, {".parquet", "application/vnd.apache.parquet"}};
  const std::string ext = path.extension().string();
  for (const auto& [suffix, type] : kTypes) {
    if (ext == suffix) return type;
  }
  return "application/octet-stream";
}

Timestamp now() {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  return Timestamp::from_unix_ns(ns);
}

std::string with_slash(std::string url) {
  if (!url.empty() && url.back() != '/') url += '/';
  return url;
}

int run_build(BuildOptions o) {
  o.base_url = with_slash(o.base_url);
  o.documents_url = with_slash(o.documents_url.empty() ? o.base_url : o.documents_url);
  std::error_code ec;
  fs::create_directories(o.out, ec);
  if (ec) {
    std::fprintf(stderr, "shardsync: cannot create %s: %s\n", o.out.c_str(), ec.message().c_str());
    return kExitFailure;
  }
  const fs::path root = fs::path(o.directory);
  const fs::path out_abs = fs::weakly_canonical(o.out, ec);

  // Regular files only; symlinks are never followed or published.
  std::vector<fs::path> files;
  for (fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec),
       end;
       it != end; it.increment(ec)) {
    if (ec) break;
    if (it->is_symlink()) {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_directory() && fs::weakly_canonical(it->path(), ec) == out_abs) {
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file()) files.push_back(it->path());
  }
  if (ec) {
    std::fprintf(stderr, "shardsync: cannot scan %s: %s\n", o.directory.c_str(),
                 ec.message().c_str());
    return kExitFailure;
  }
  std::sort(files.begin(), files.end());

  const std::string capability_list_url = o.documents_url + "capabilitylist.xml";
  const std::string description_url = o.documents_url + "description.xml";
  const std::string list_url = o.documents_url + o.name + ".xml";

  SplitWriter writer(SplitWriterOptions{o.out, o.name, o.documents_url, o.max_entries, 52'428'800});
  DocumentHeader header =
      make_snapshot_header(Capability::resourcelist, now(), capability_list_url);
  if (auto r = writer.begin(header); !r) {
    std::fprintf(stderr, "shardsync: %s\n", r.error().describe().c_str());
    return kExitFailure;
  }
  for (const fs::path& file : files) {
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) continue;  // vanished since the scan
    auto hash = hash_file(file.string(), {HashAlgorithm::md5, HashAlgorithm::sha256});
    if (!hash) {
      std::fprintf(stderr, "shardsync: %s\n", hash.error().describe().c_str());
      return kExitFailure;
    }
    Entry entry;
    entry.loc = o.base_url + encode_path(fs::relative(file, root).generic_string());
    entry.lastmod =
        Timestamp::from_unix(st.st_mtim.tv_sec, static_cast<std::uint32_t>(st.st_mtim.tv_nsec));
    entry.md.emplace();
    entry.md->hash = std::move(*hash);
    entry.md->length = static_cast<std::uint64_t>(st.st_size);
    entry.md->type = media_type(file);
    if (auto r = writer.add(entry); !r) {
      std::fprintf(stderr, "shardsync: %s\n", r.error().describe().c_str());
      return kExitFailure;
    }
  }
  auto result = writer.finish();
  if (!result) {
    std::fprintf(stderr, "shardsync: %s\n", result.error().describe().c_str());
    return kExitFailure;
  }

  Document capability_list{make_capability_list(description_url), {}};
  Entry list_entry;
  list_entry.loc = list_url;
  list_entry.md.emplace();
  list_entry.md->capability = capability_name(Capability::resourcelist);
  capability_list.entries.push_back(list_entry);

  std::vector<Link> set_entry_links;
  if (!o.describedby.empty())
    capability_list.header.links.push_back(make_link("describedby", o.describedby));

  Document description{make_source_description(), {}};
  if (!o.describedby.empty()) {
    description.header.links.push_back(make_link("describedby", o.describedby));
    set_entry_links = {make_link("describedby", o.describedby)};
  }
  Entry set_entry;
  set_entry.loc = capability_list_url;
  set_entry.md.emplace();
  set_entry.md->capability = capability_name(Capability::capabilitylist);
  set_entry.links = set_entry_links;
  description.entries.push_back(set_entry);

  for (const auto& [document, name] : {std::pair{&capability_list, "capabilitylist.xml"},
                                       std::pair{&description, "description.xml"}}) {
    if (auto r = write_document_file(*document, o.out + "/" + name); !r) {
      std::fprintf(stderr, "shardsync: %s\n", r.error().describe().c_str());
      return kExitFailure;
    }
  }
  std::printf(
      "%s: %llu resources%s; capabilitylist.xml, description.xml in %s\n",
      result->document_path.c_str(), static_cast<unsigned long long>(result->entries),
      result->indexed ? (" in " + std::to_string(result->parts.size()) + " parts").c_str() : "",
      o.out.c_str());
  return kExitOk;
}

}  // namespace

void add_build_command(CLI::App& sitemap, int& exit_code) {
  auto o = std::make_shared<BuildOptions>();
  CLI::App* build = sitemap.add_subcommand(
      "build", "Publish a directory as static ResourceSync documents (sha-256 and md5 hashes)");
  build->add_option("directory", o->directory, "directory tree to publish")
      ->required()
      ->check(CLI::ExistingDirectory);
  build->add_option("--base-url", o->base_url, "URL the directory's files are served under")
      ->required();
  build->add_option("--out", o->out, "where to write the documents")->capture_default_str();
  build->add_option("--documents-url", o->documents_url,
                    "URL the --out directory is served under (default: --base-url)");
  build->add_option("--name", o->name, "resource list file name, without .xml")
      ->capture_default_str();
  build->add_option("--describedby", o->describedby,
                    "URL describing the source and this set (rel=\"describedby\" links)");
  build->add_option("--max-entries", o->max_entries, "entries per document before splitting")
      ->check(CLI::Range(1, 50'000))
      ->capture_default_str();
  build->footer(
      "Example: shardsync sitemap build ./shards --base-url https://example.org/shards/ "
      "--out ./site");
  build->callback([o, &exit_code] { exit_code = run_build(*o); });
}

}  // namespace shardsync::app
