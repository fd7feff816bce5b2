// Which libcurl failures are worth another attempt: the connection or the transfer broke
// (reset, timeout, short body, a resolver or TLS handshake hiccup), as opposed to a request that
// will fail the same way again (bad URL, refused protocol, a write error on our side).
#pragma once

#include <curl/curl.h>

namespace shardsync::client {

inline bool is_transient(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
      return true;
    default:
      return false;
  }
}

}  // namespace shardsync::client
