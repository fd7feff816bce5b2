#pragma once
// Finds a resource set's documents from what the user gave as SOURCE (ResourceSync §6.3, §8,
// §9): a base URL, a Source Description, a Capability List, or a Resource List / Change List
// (or their indexes) directly.
//
// From a base URL: the response's `Link: <…>; rel="resourcesync"` header, then
// `<origin>/.well-known/resourcesync`, then `<base>/.well-known/resourcesync`, then
// `<base>/capabilitylist.xml` (resync's layout). A Source Description with several
// Capability Lists needs `collection` (the name of the Capability List's directory); a base
// URL inside one set's directory picks that set.

#include <string>
#include <vector>

#include "shardsync/client/document_client.hpp"
#include "shardsync/result.hpp"
#include "shardsync/sitemap/model.hpp"

namespace shardsync::client {

struct SetEndpoints {
  std::string capability_list_url;  // empty when SOURCE named a list directly
  std::string name;                 // the set's name (its directory), when known
  std::string base_url;             // directory URL resource paths are relative to ('/'-ended)
  std::string resource_list_url;    // Resource List or its index; empty when not offered
  std::string change_list_url;      // Change List or its index; empty when not offered
  std::string resource_dump_url;    // Resource Dump or its index; empty when not offered
  std::string change_dump_url;      // Change Dump or its index; empty when not offered
  // What identifies the source in DEST's state: the Capability List URL, else the list URL.
  [[nodiscard]] const std::string& identity() const {
    return capability_list_url.empty()
               ? (resource_list_url.empty() ? change_list_url : resource_list_url)
               : capability_list_url;
  }
};

// Errors: errc::discovery_failed (nothing found; the detail lists what was tried),
// errc::ambiguous_source (several sets and no `collection`; the detail lists their names),
// errc::bad_document (a document of the wrong type where one was expected), and whatever
// fetching returned.
[[nodiscard]] Result<SetEndpoints> discover(DocumentClient& client, const std::string& source,
                                            const std::string& collection);

// The directory part of a URL ("http://h/a/b.xml" -> "http://h/a/").
[[nodiscard]] std::string directory_of(const std::string& url);
// "scheme://host:port" with scheme and host lower-cased and the default port dropped; empty
// for anything but an absolute http(s) URL.
[[nodiscard]] std::string origin_of(const std::string& url);
// Resolves a reference against a base URL (absolute, "//host…", "/path" and relative forms;
// old documents carry relative <loc> values). Dot segments are left for the mapper to refuse.
[[nodiscard]] std::string resolve_url(const std::string& base, const std::string& reference);

}  // namespace shardsync::client
