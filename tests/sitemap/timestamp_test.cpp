#include "shardsync/sitemap/timestamp.hpp"

#include <catch2/catch.hpp>

using shardsync::sitemap::format_w3c_datetime;
using shardsync::sitemap::parse_w3c_datetime;
using shardsync::sitemap::Precision;
using shardsync::sitemap::Timestamp;

TEST_CASE("every W3C datetime form parses to the right instant", "[sitemap][datetime]") {
  const auto [text, expected] = GENERATE(table<const char*, const char*>({
      {"2013", "2013-01-01T00:00:00Z"},
      {"2013-07", "2013-07-01T00:00:00Z"},
      {"2013-07-16", "2013-07-16T00:00:00Z"},
      {"2013-07-16T19:20Z", "2013-07-16T19:20:00Z"},
      {"2013-07-16T19:20+01:00", "2013-07-16T18:20:00Z"},
      {"2013-07-16T19:20:30Z", "2013-07-16T19:20:30Z"},
      {"2013-07-16T19:20:30-05:30", "2013-07-17T00:50:30Z"},
      {"2013-07-16T19:20:30.45+01:00", "2013-07-16T18:20:30.45Z"},
      {"2021-03-23T16:16:52.771331Z", "2021-03-23T16:16:52.771331Z"},
      {"2021-03-23T16:16:52.123456789Z", "2021-03-23T16:16:52.123456789Z"},
      {"2000-02-29T23:59:59Z", "2000-02-29T23:59:59Z"},
      {"1969-12-31T23:59:59.5Z", "1969-12-31T23:59:59.5Z"},
      {"9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"},
  }));
  CAPTURE(text);
  const auto t = parse_w3c_datetime(text);
  REQUIRE(t);
  CHECK(format_w3c_datetime(*t) == expected);
}

TEST_CASE("fractional digits past nanoseconds are read and dropped", "[sitemap][datetime]") {
  const auto t = parse_w3c_datetime("2013-01-01T00:00:00.1234567891234Z");
  REQUIRE(t);
  CHECK(t->nanos == 123456789u);
  CHECK(t->precision == Precision::fraction);
}

TEST_CASE("malformed datetimes are refused", "[sitemap][datetime]") {
  const char* text =
      GENERATE("", "13", "2013-1-01", "2013-13-01", "2013-02-29", "2013-01-32", "2013-01-01T10:00",
               "2013-01-01T10:00:00", "2013-01-01T24:00Z", "2013-01-01T23:60Z",
               "2013-01-01T23:59:60Z", "2013-01-01T10:00:00.Z", "2013-01-01T10:00:00+0100",
               "2013-01-01T10:00:00+24:00", "2013-01-01 10:00:00Z", " 2013-01-01",
               "2013-01-01T10:00:00Zjunk", "2013-01T10:00Z", "+2013-01-01", "2013-01-01t10:00:00z");
  CAPTURE(text);
  CHECK_FALSE(parse_w3c_datetime(text));
}

TEST_CASE("ordering compares instants, not how they were written", "[sitemap][datetime]") {
  const auto utc = parse_w3c_datetime("2013-01-03T09:00:00Z");
  const auto offset = parse_w3c_datetime("2013-01-03T10:00:00+01:00");
  const auto later = parse_w3c_datetime("2013-01-03T09:00:00.000001Z");
  REQUIRE((utc && offset && later));
  CHECK(*utc == *offset);
  CHECK(*utc < *later);
  CHECK_FALSE(offset->utc_designator);
}

TEST_CASE("formatting keeps nanosecond order between close instants", "[sitemap][datetime]") {
  const Timestamp a = Timestamp::from_unix(1'700'000'000, 1);
  const Timestamp b = Timestamp::from_unix(1'700'000'000, 2);
  const auto ra = parse_w3c_datetime(format_w3c_datetime(a));
  const auto rb = parse_w3c_datetime(format_w3c_datetime(b));
  REQUIRE((ra && rb));
  CHECK(*ra == a);
  CHECK(*ra < *rb);
  CHECK(format_w3c_datetime(a) == "2023-11-14T22:13:20.000000001Z");
}

TEST_CASE("nanoseconds since the epoch split into seconds and nanos, before 1970 too",
          "[sitemap][datetime]") {
  CHECK(Timestamp::from_unix_ns(1'700'000'000'000'000'001) ==
        Timestamp::from_unix(1'700'000'000, 1));
  CHECK(Timestamp::from_unix_ns(1'700'000'000'000'000'000).precision == Precision::second);
  const Timestamp before = Timestamp::from_unix_ns(-1);
  CHECK(before.seconds == -1);
  CHECK(before.nanos == 999'999'999);
  CHECK(format_w3c_datetime(before) == "1969-12-31T23:59:59.999999999Z");
  CHECK(Timestamp::from_unix_ns(-2'000'000'000) == Timestamp::from_unix(-2, 0));
}
