# SHARDSYNC_SANITIZE=address,undefined instruments every target (CI builds the tests this way).
if(SHARDSYNC_SANITIZE)
  message(STATUS "shardsync: sanitizers ${SHARDSYNC_SANITIZE}")
  add_compile_options(-fsanitize=${SHARDSYNC_SANITIZE} -fno-omit-frame-pointer
                      -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${SHARDSYNC_SANITIZE})
endif()
