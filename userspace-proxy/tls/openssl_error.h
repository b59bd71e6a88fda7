// Turns the calling thread's OpenSSL error queue into text for logs and
// error messages.
#pragma once

#include <string>

namespace sluice::tls {

// Drains the thread's OpenSSL error queue, oldest first, into one line:
// "error:0A000086:SSL routines::certificate verify failed; ...". Empty when
// the queue is empty. Always leaves the queue empty.
std::string openssl_error_text();

// Empties the queue, so a later openssl_error_text() reports only errors of
// the operation that follows (OpenSSL leaves stale entries behind on paths
// that recover, and the queue is per thread, shared by all connections of a
// worker).
void clear_openssl_errors();

}  // namespace sluice::tls
