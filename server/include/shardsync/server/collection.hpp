#pragma once
// A collection: one directory published as one ResourceSync resource set, and the names in
// it that are reserved for the documents describing it.

#include <string>
#include <string_view>

namespace shardsync::server {

struct Collection {
  std::string name;       // URL segment: /<name>/capabilitylist.xml, /<name>/a/b.bin
  std::string directory;  // absolute path of the directory published
};

// Document URLs live beside the resources, so these relative paths are never published as
// resources (a file there is refused with a log line): the Capability List itself and
// everything under the ".resourcesync/" directory, where the other documents are served.
inline constexpr std::string_view kCapabilityListName = "capabilitylist.xml";
inline constexpr std::string_view kDocumentsDirectory = ".resourcesync";

[[nodiscard]] inline bool is_reserved_path(std::string_view relative_path) {
  return relative_path == kCapabilityListName || relative_path == kDocumentsDirectory ||
         (relative_path.size() > kDocumentsDirectory.size() &&
          relative_path.starts_with(kDocumentsDirectory) &&
          relative_path[kDocumentsDirectory.size()] == '/');
}

// Uploads in progress (PUT) are written beside their target under this name prefix and
// renamed into place when complete: scanners and watchers pass over such names in silence.
inline constexpr std::string_view kUploadPrefix = ".shardsync-upload-";

[[nodiscard]] inline bool is_upload_temp(std::string_view relative_path) {
  const auto slash = relative_path.rfind('/');
  const std::string_view name =
      slash == std::string_view::npos ? relative_path : relative_path.substr(slash + 1);
  return name.starts_with(kUploadPrefix);
}

// A collection name usable as one URL path segment: [A-Za-z0-9._-]+, not "." or "..", not
// ".well-known".
[[nodiscard]] bool is_valid_collection_name(std::string_view name);

}  // namespace shardsync::server
