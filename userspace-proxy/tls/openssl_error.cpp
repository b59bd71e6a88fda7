#include "userspace-proxy/tls/openssl_error.h"

#include <openssl/err.h>

namespace sluice::tls {

std::string openssl_error_text() {
  std::string text;
  char buf[256];
  unsigned long code;
  while ((code = ERR_get_error()) != 0) {
    ERR_error_string_n(code, buf, sizeof(buf));
    if (!text.empty()) text += "; ";
    text += buf;
  }
  return text;
}

void clear_openssl_errors() { ERR_clear_error(); }

}  // namespace sluice::tls
