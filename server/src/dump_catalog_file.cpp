#include "dump_catalog_file.hpp"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <system_error>

#include "dump_packer.hpp"
#include "shardsync/server/errc.hpp"
#include "shardsync/unique_fd.hpp"

namespace shardsync::server::detail {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json to_json(const DumpFile& f) {
  return {{"name", f.name}, {"length", f.length}, {"sha256", f.sha256}, {"mtime_ns", f.mtime_ns}};
}

DumpFile file_from(const json& j) {
  DumpFile f;
  f.name = j.at("name").get<std::string>();
  f.length = j.at("length").get<std::uint64_t>();
  f.sha256 = j.at("sha256").get<std::string>();
  f.mtime_ns = j.at("mtime_ns").get<std::int64_t>();
  // Names come back as paths under the dump directory: plain names only.
  if (f.name.empty() || f.name.find('/') != std::string::npos || f.name.starts_with(".")) {
    throw std::runtime_error("bad file name '" + f.name + "'");
  }
  return f;
}

json to_json(const DumpPackage& p) {
  return {{"zip", to_json(p.zip)}, {"manifest", to_json(p.manifest)}};
}

DumpPackage package_from(const json& j) {
  return DumpPackage{file_from(j.at("zip")), file_from(j.at("manifest"))};
}

// Whether every file is there as recorded; adds their names to `keep`.
bool present(const std::string& directory, const std::vector<const DumpFile*>& files,
             std::set<std::string>& keep) {
  for (const DumpFile* f : files) {
    std::error_code ec;
    const auto size = fs::file_size(fs::path(directory) / f->name, ec);
    if (ec || size != f->length) return false;
  }
  for (const DumpFile* f : files) keep.insert(f->name);
  return true;
}

}  // namespace

Result<void> save_dumps(const std::string& directory, const SavedDumps& saved) {
  json resource_dumps = json::array();
  for (const ResourceDump& d : saved.dumps.resource_dumps) {
    json packages = json::array();
    for (const DumpPackage& p : d.packages) packages.push_back(to_json(p));
    json entry = {{"at_ns", d.at_ns},
                  {"completed_ns", d.completed_ns},
                  {"stem", d.stem},
                  {"packages", std::move(packages)}};
    if (d.resource_list) entry["resource_list"] = to_json(*d.resource_list);
    resource_dumps.push_back(std::move(entry));
  }
  json change_dumps = json::array();
  for (const ChangeDump& d : saved.dumps.change_dumps) {
    change_dumps.push_back({{"list", d.list},
                            {"from_ns", d.from_ns},
                            {"until_ns", d.until_ns},
                            {"package", to_json(d.package)}});
  }
  const json doc = {{"version", 1},
                    {"resource_dumps", std::move(resource_dumps)},
                    {"change_dumps", std::move(change_dumps)},
                    {"lists_done", saved.lists_done}};
  auto written = write_dump_file(directory, std::string(kCatalogFileName), doc.dump(1));
  if (!written) return fail(written.error());
  return {};
}

Result<SavedDumps> load_dumps(const std::string& directory, std::size_t& dropped) {
  dropped = 0;
  SavedDumps saved;
  saved.dumps.directory = directory;
  const fs::path catalog = fs::path(directory) / kCatalogFileName;
  std::set<std::string> keep{std::string(kCatalogFileName), std::string(kCatalogFileName) + ".bad"};
  std::error_code ec;
  if (fs::exists(catalog, ec)) {
    try {
      std::ifstream in(catalog);
      const json doc = json::parse(in);
      if (doc.at("version").get<int>() != 1) throw std::runtime_error("unknown version");
      for (const json& j : doc.at("resource_dumps")) {
        ResourceDump d;
        d.at_ns = j.at("at_ns").get<std::int64_t>();
        d.completed_ns = j.at("completed_ns").get<std::int64_t>();
        d.stem = j.at("stem").get<std::string>();
        for (const json& p : j.at("packages")) d.packages.push_back(package_from(p));
        if (j.contains("resource_list")) d.resource_list = file_from(j.at("resource_list"));
        std::vector<const DumpFile*> files;
        for (const DumpPackage& p : d.packages) files.insert(files.end(), {&p.zip, &p.manifest});
        if (d.resource_list) files.push_back(&*d.resource_list);
        if (!d.packages.empty() && present(directory, files, keep)) {
          saved.dumps.resource_dumps.push_back(std::move(d));
        } else {
          ++dropped;
        }
      }
      std::set<std::uint64_t> lost;  // lists whose package is gone: packed again if possible
      for (const json& j : doc.at("change_dumps")) {
        ChangeDump d;
        d.list = j.at("list").get<std::uint64_t>();
        d.from_ns = j.at("from_ns").get<std::int64_t>();
        d.until_ns = j.at("until_ns").get<std::int64_t>();
        d.package = package_from(j.at("package"));
        if (present(directory, {&d.package.zip, &d.package.manifest}, keep)) {
          saved.dumps.change_dumps.push_back(std::move(d));
        } else {
          lost.insert(d.list);
          ++dropped;
        }
      }
      saved.lists_done = doc.at("lists_done").get<std::set<std::uint64_t>>();
      for (const std::uint64_t list : lost) saved.lists_done.erase(list);
    } catch (const std::exception& e) {
      return fail(errc::io_error, "cannot read " + catalog.string() + ": " + e.what());
    }
  }
  // Leftovers: temporaries of an interrupted build, files of dumps no longer listed.
  for (const auto& item : fs::directory_iterator(directory, ec)) {
    if (!keep.contains(item.path().filename().string())) fs::remove_all(item.path(), ec);
  }
  if (ec) return fail(errc::io_error, "cannot clean " + directory + ": " + ec.message());
  return saved;
}

}  // namespace shardsync::server::detail
