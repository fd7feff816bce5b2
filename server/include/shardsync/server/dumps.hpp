#pragma once
// Resource Dumps and Change Dumps (ResourceSync §11, §13): ZIP packages of a collection's
// files with a manifest, built in the background and published in the Site once complete.
//
// URL layout, beside the other documents of collection C (see site.hpp):
//   B C/.resourcesync/resourcedump.xml             the newest Resource Dump
//   B C/.resourcesync/changedump.xml               one package per closed Change List
//   B C/.resourcesync/dump/<at>-00001.zip          a package ...
//   B C/.resourcesync/dump/<at>-00001-manifest.xml ... and a copy of its manifest.xml
//   B C/.resourcesync/dump/<at>-resourcedump.xml   each retained Resource Dump (archived)
//   B C/.resourcesync/dump/<at>-resourcelist.xml   the Resource List at the same `at`
//   B C/.resourcesync/dump/changes-00003.zip       Change List 3 as a Change Dump package
//   B C/.resourcesync/{resourcelist,resourcedump,changelist}-archive.xml   the archives
// where <at> is the dump's `at` in compact form (20261124T231836.5Z). The files live in
// <state_dir>/dumps/<C>/ under the URL's last segment.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace shardsync::server {

struct DumpOptions {
  bool enabled = false;                     // build dumps and publish them and the archives
  std::uint64_t package_size = 1ull << 30;  // bytes per package (one bigger file goes alone)
  std::uint64_t package_entries = 50'000;   // files per package: a manifest is a Sitemap
  std::chrono::milliseconds delay{10'000};  // quiet period after the last change
  std::size_t keep = 1;                     // Resource Dumps retained (the archive lists them)
};

// A file written under the collection's dump directory, as served.
struct DumpFile {
  std::string name;  // file name, the last URL segment
  std::uint64_t length = 0;
  std::string sha256;  // lower-case hex
  std::int64_t mtime_ns = 0;
};

struct DumpPackage {
  DumpFile zip;
  DumpFile manifest;  // byte-identical to the package's manifest.xml
};

struct ResourceDump {
  std::int64_t at_ns = 0;         // the log position the snapshot was taken at
  std::int64_t completed_ns = 0;  // when the last package was complete
  std::string stem;               // "<at>": names of its files start with it
  std::vector<DumpPackage> packages;
  std::optional<DumpFile> resource_list;  // the Resource List at `at` (absent past 50,000)
};

struct ChangeDump {
  std::uint64_t list = 0;  // Change List number (changelist-00003.xml: 3)
  std::int64_t from_ns = 0;
  std::int64_t until_ns = 0;
  DumpPackage package;
};

// What one collection has published; immutable once shared.
struct CollectionDumps {
  std::string directory;                     // <state_dir>/dumps/<C>
  std::vector<ResourceDump> resource_dumps;  // oldest first; the last is the current one
  std::vector<ChangeDump> change_dumps;      // by list number
};

// Keyed by collection name.
using DumpCatalog = std::map<std::string, std::shared_ptr<const CollectionDumps>>;

}  // namespace shardsync::server
