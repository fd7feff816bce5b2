# One INTERFACE target carries the project's warning flags; every target links it PRIVATE.
add_library(shardsync_warnings INTERFACE)
target_compile_options(shardsync_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wold-style-cast
  -Wnon-virtual-dtor -Woverloaded-virtual -Wimplicit-fallthrough)
if(SHARDSYNC_WERROR)
  target_compile_options(shardsync_warnings INTERFACE -Werror)
endif()
add_library(shardsync::warnings ALIAS shardsync_warnings)
