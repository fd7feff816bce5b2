#pragma once
// The harnesses' oracle failure: print what broke and abort, so libFuzzer saves the input as
// a crash (a plain assert would vanish in an NDEBUG build).

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(condition, what)                                                     \
  do {                                                                                  \
    if (!(condition)) {                                                                 \
      std::fprintf(stderr, "%s:%d: oracle failed: %s (%s)\n", __FILE__, __LINE__, what, \
                   #condition);                                                         \
      std::abort();                                                                     \
    }                                                                                   \
  } while (false)
