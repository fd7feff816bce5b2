#pragma once
// Where tests find their data, and scratch directories they clean up after themselves.

#include <filesystem>
#include <string>

namespace shardsync::test {

// tests/data in the source tree.
std::filesystem::path data_dir();
// ../shared/resourcesync-examples beside the repository, or empty when it is absent.
std::filesystem::path spec_examples_dir();
std::string read_file(const std::filesystem::path& path);
void write_file(const std::filesystem::path& path, const std::string& bytes);

// A fresh directory under the system temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace shardsync::test
