#include "shardsync/sitemap/hashes.hpp"

#include <catch2/catch.hpp>

#include "shardsync/sitemap/digest.hpp"
#include "test_paths.hpp"

using namespace shardsync::sitemap;

TEST_CASE("a multi-token hash spanning lines is read token by token", "[sitemap][hash]") {
  const auto list = HashList::from_attribute(
      "md5:1e0d5cb8ef6ba40c99b14c0237be735e \n\t   "
      "sha-256:854f61290e2e197a11bc91063afce22e43f8ccc655237050ace766adc68dc784");
  CHECK(list.text() ==
        "md5:1e0d5cb8ef6ba40c99b14c0237be735e "
        "sha-256:854f61290e2e197a11bc91063afce22e43f8ccc655237050ace766adc68dc784");
  CHECK(list.get(HashAlgorithm::md5) == "1e0d5cb8ef6ba40c99b14c0237be735e");
  CHECK(list.get(HashAlgorithm::sha256).size() == 64);
  CHECK(list.get(HashAlgorithm::sha1).empty());
}

TEST_CASE("setting a digest replaces it in place or appends it", "[sitemap][hash]") {
  HashList list = HashList::from_attribute("sha-256:aa md5:bb");
  list.set(HashAlgorithm::sha256, "cc");
  list.set(HashAlgorithm::sha1, "dd");
  CHECK(list.text() == "sha-256:cc md5:bb sha-1:dd");
}

TEST_CASE("hex digests must be lower case and of the algorithm's length", "[sitemap][hash]") {
  CHECK(is_valid_hex_digest(HashAlgorithm::md5, "1584abdf8ebdc9802ac0c6a7402c03b6"));
  CHECK_FALSE(is_valid_hex_digest(HashAlgorithm::md5, "1584ABDF8EBDC9802AC0C6A7402C03B6"));
  CHECK_FALSE(
      is_valid_hex_digest(HashAlgorithm::sha256, "f4OxZX_x_FO5LcGBSKHWXfwtSx-j1ncoSt3SABJtkGk"));
  CHECK_FALSE(is_valid_hex_digest(HashAlgorithm::sha1, "abc"));
}

TEST_CASE("digests match the known test vectors", "[sitemap][hash]") {
  Hasher hasher({HashAlgorithm::md5, HashAlgorithm::sha1, HashAlgorithm::sha256});
  hasher.update("a");
  hasher.update("bc");
  const HashList list = hasher.finish();
  CHECK(list.get(HashAlgorithm::md5) == "900150983cd24fb0d6963f7d28e17f72");
  CHECK(list.get(HashAlgorithm::sha1) == "a9993e364706816aba3e25717850c26c9cd0d89d");
  CHECK(list.get(HashAlgorithm::sha256) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("files are hashed in one streaming pass", "[sitemap][hash]") {
  shardsync::test::TempDir dir;
  std::string big(3 * 1024 * 1024 + 7, 'x');
  shardsync::test::write_file(dir / "f.bin", big);
  auto from_file = hash_file((dir / "f.bin").string(), {HashAlgorithm::sha256, HashAlgorithm::md5});
  REQUIRE(from_file);
  Hasher hasher({HashAlgorithm::sha256, HashAlgorithm::md5});
  hasher.update(big);
  CHECK(*from_file == hasher.finish());
  CHECK(from_file->text().starts_with("sha-256:"));

  auto missing = hash_file((dir / "nope").string());
  REQUIRE_FALSE(missing);
  CHECK(missing.error().detail.find("nope") != std::string::npos);
}
