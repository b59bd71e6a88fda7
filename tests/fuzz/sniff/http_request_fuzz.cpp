// libFuzzer target for the HTTP/1.x request-head parser and the body framers,
// driven the way the proxy drives them: head, then body, then the next
// pipelined head, until the input ends or a verdict ends the connection.
//
// Oracle: the transcript of every verdict, head field and consumed count
// must be identical whether the input arrives whole, in two pieces cut at a
// data-dependent offset, or in many pieces of data-dependent sizes. Each head
// must also end, in the input, with the blank line it claims to end with.
// The protocol detector and a bare chunked framer get the same treatment.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/sniff/http_fuzz_util.h"
#include "userspace-proxy/sniff/body_framer.h"
#include "userspace-proxy/sniff/http_request_head.h"
#include "userspace-proxy/sniff/protocol_detector.h"

namespace {

using namespace sluice::sniff;

using fuzz::check;
using fuzz::compare_feeds;

void append_head(std::string& out, const HttpRequestHead& h) {
  out += "head|";
  out.append(h.method).append("|").append(h.target).append("|").append(h.scheme).append("|").append(h.path);
  out += '|' + std::to_string(static_cast<int>(h.version)) + '|' + std::to_string(static_cast<int>(h.target_form));
  out.append("|").append(h.host).append("|").append(h.host_header).append("|").append(h.upgrade);
  out += '|' + std::to_string(h.port.value_or(0)) + '|' + std::to_string(h.port.has_value());
  out += '|' + (h.content_length ? std::to_string(*h.content_length) : std::string("-"));
  out += h.chunked ? "|chunked" : "|";
  out += h.keep_alive ? "|ka" : "|";
  out += h.expect_continue ? "|100" : "|";
  out += h.is_connect ? "|connect|" : "||";
  out += std::to_string(h.head_length);
  for (const HeaderField& f : h.headers) out.append("|").append(f.name).append(":").append(f.value);
  out += '\n';
}

// One client connection through the parsers.
class Connection : public fuzz::HeadBodyConnection<Connection, HttpRequestParser, RequestBodyFramer> {
 public:
  Connection(std::string_view input, HttpLimits limits) : HeadBodyConnection(input, limits) {}

 private:
  friend HeadBodyConnection;

  void on_verdict(HttpParseStatus status) {
    transcript_ += std::string(to_string(status)) + '|' + std::to_string(parser_.error().status) + '|' +
                   std::string(parser_.error().reason) + '\n';
    check(!parser_.error().reason.empty(), "verdict without a reason");
    check(status == HttpParseStatus::kNotHttp ? parser_.error().status == 0 : parser_.error().status >= 400,
          "bad suggested status");
  }

  bool on_head(const HttpRequestHead& h) {
    check(input_.substr(head_start_, h.head_length).ends_with("\r\n\r\n"), "head does not end in CRLFCRLF");
    for (char c : h.host) check(!(c >= 'A' && c <= 'Z'), "host not lower-cased");
    append_head(transcript_, h);
    if (h.is_connect || !h.upgrade.empty()) return false;  // a tunnel may follow: stop here
    body_.emplace(h);
    return true;
  }

  bool after_body() const { return true; }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  for (const HttpLimits limits : {HttpLimits{}, HttpLimits{256, 96, 6, 1000}}) {
    compare_feeds(
        input,
        [&](const std::vector<std::string_view>& chunks) {
          Connection c(input, limits);
          for (std::string_view chunk : chunks) c.feed(chunk);
          return c.finish();
        },
        "connection transcript depends on how the input is split");
  }

  compare_feeds(
      input,
      [](const std::vector<std::string_view>& chunks) {
        ChunkedFramer f(ChunkedLimits{64, 256, 4});
        std::size_t consumed = 0;
        for (std::string_view chunk : chunks) consumed += f.feed(chunk).consumed;
        return std::string(to_string(f.status())) + '|' + std::string(f.error()) + '|' +
               std::to_string(consumed) + '|' + std::to_string(f.content_bytes());
      },
      "chunked framing depends on how the input is split");

  compare_feeds(
      input,
      [](const std::vector<std::string_view>& chunks) {
        ProtocolDetector d;
        for (std::string_view chunk : chunks) d.feed(chunk);
        return std::string(to_string(d.result().protocol)) + '|' + std::string(d.result().reason);
      },
      "protocol detection depends on how the input is split");
  return 0;
}
