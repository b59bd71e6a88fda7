// libFuzzer target for the HTTP/1.x response-head parser and the response
// body framer, driven the way a pooled upstream connection drives them: head
// (and more heads after 1xx interim responses), then body, then the next
// response, until the input ends, a verdict ends the connection or the body
// runs until close. Each input is replayed as the answer to a GET, a HEAD and
// a CONNECT.
//
// Oracles:
//  - the transcript of every verdict, head field and consumed count is the
//    same whether the input arrives whole, in two pieces cut at a
//    data-dependent offset, or in many pieces of data-dependent sizes;
//  - a parsed head ends, in the input, with the line end it claims;
//  - rebuild_response_head() of a parsed head parses back to the same
//    status, framing and end-to-end fields; the same for
//    rebuild_request_head() when the input parses as a request head.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/fuzz/sniff/http_fuzz_util.h"
#include "userspace-proxy/sniff/ascii.h"
#include "userspace-proxy/sniff/body_framer.h"
#include "userspace-proxy/sniff/http_request_head.h"
#include "userspace-proxy/sniff/http_response_head.h"

namespace {

using namespace sluice::sniff;

using fuzz::check;
using fuzz::compare_feeds;

using Fields = std::vector<std::pair<std::string, std::string>>;

void append_head(std::string& out, const HttpResponseHead& h) {
  out += "head|" + std::to_string(static_cast<int>(h.version)) + '|' + std::to_string(h.status) + '|';
  out.append(h.reason);
  out += '|' + (h.content_length ? std::to_string(*h.content_length) : std::string("-"));
  out += h.chunked ? "|chunked" : "|";
  out += h.has_transfer_encoding ? "|te" : "|";
  out += h.keep_alive ? "|ka|" : "||";
  out += std::to_string(h.head_length);
  for (const HeaderField& f : h.headers) {
    out.append("|").append(f.name).append(":").append(f.value);
    if (h.is_hop_by_hop(f)) out += "(hop)";
  }
  out += '\n';
}

// rebuild_response_head(h) must parse back to h minus its hop-by-hop fields.
void check_response_rebuild(const HttpResponseHead& h, bool add_close) {
  const std::string rebuilt = rebuild_response_head(h, add_close);
  HttpLimits roomy;
  roomy.max_head_bytes = 2 * h.head_length + 64;
  roomy.max_headers = h.headers.size() + 1;
  HttpResponseParser p(roomy);
  const auto r = p.feed(rebuilt);
  check(r.status == HttpParseStatus::kDone, "rebuilt response head does not parse");
  check(r.consumed == rebuilt.size(), "rebuilt response head has trailing bytes");
  const HttpResponseHead& g = p.head();
  check(g.version == h.version && g.status == h.status && g.reason == h.reason, "rebuilt status-line differs");
  check(g.content_length == h.content_length && g.chunked == h.chunked &&
            g.has_transfer_encoding == h.has_transfer_encoding,
        "rebuilt response framing differs");
  const bool switching = h.status == 101;
  const bool http11 = h.version == HttpVersion::kHttp11;
  check(g.keep_alive == (switching ? http11 : (!add_close && http11)), "rebuilt keep-alive unexpected");
  Fields expected, got;
  for (const HeaderField& f : h.headers) {
    const bool upgrade_kept = switching && ascii::iequals(f.name, "upgrade");
    if (!h.is_hop_by_hop(f) || upgrade_kept) expected.emplace_back(f.name, f.value);
  }
  if (switching) expected.emplace_back("connection", "upgrade");
  else if (add_close) expected.emplace_back("connection", "close");
  for (const HeaderField& f : g.headers) got.emplace_back(f.name, f.value);
  check(expected == got, "rebuilt response fields differ");
}

// One upstream connection through the parsers.
class Connection : public fuzz::HeadBodyConnection<Connection, HttpResponseParser, ResponseBodyFramer> {
 public:
  Connection(std::string_view input, HttpLimits limits, bool request_was_head, bool request_was_connect)
      : HeadBodyConnection(input, limits), request_was_head_(request_was_head),
        request_was_connect_(request_was_connect) {}

 private:
  friend HeadBodyConnection;

  void on_verdict(HttpParseStatus status) {
    transcript_ += std::string(to_string(status)) + '|' + std::string(parser_.error()) + '\n';
    check(!parser_.error().empty(), "verdict without a reason");
  }

  bool on_head(const HttpResponseHead& h) {
    check(h.head_length >= 10 && input_[position_ - 1] == '\n', "head does not end in a line end");
    check(h.status >= 100 && h.status <= 599, "status out of range");
    check(!(h.content_length.has_value() && h.has_transfer_encoding), "CL and TE both accepted");
    append_head(transcript_, h);
    check_response_rebuild(h, false);
    check_response_rebuild(h, true);
    body_.emplace(h, request_was_head_, request_was_connect_, ChunkedLimits{64, 256, 4});
    transcript_ += "kind|" + std::string(to_string(body_->kind())) + (body_->reusable_after() ? "|reuse\n" : "|\n");
    check(!body_->reusable_after() || h.keep_alive, "reusable without keep-alive");
    interim_ = h.status < 200 && h.status != 101;
    return true;
  }

  // After an interim response the final one follows; after a final one, only
  // a reusable connection carries another.
  bool after_body() const { return interim_ || body_->reusable_after(); }

  bool request_was_head_;
  bool request_was_connect_;
  bool interim_ = false;
};

// rebuild_request_head(h) must parse back to h minus its hop-by-hop fields.
void check_request_rebuild(std::string_view input) {
  HttpRequestParser first;
  if (first.feed(input).status != HttpParseStatus::kDone) return;
  const HttpRequestHead& h = first.head();
  const std::string rebuilt = rebuild_request_head(h);
  HttpLimits roomy;
  roomy.max_head_bytes = 2 * h.head_length + 64;
  roomy.max_request_line_bytes = roomy.max_head_bytes;
  roomy.max_headers = h.headers.size() + 1;
  HttpRequestParser p(roomy);
  const auto r = p.feed(rebuilt);
  check(r.status == HttpParseStatus::kDone, "rebuilt request head does not parse");
  check(r.consumed == rebuilt.size(), "rebuilt request head has trailing bytes");
  const HttpRequestHead& g = p.head();
  check(g.method == h.method && g.target == h.target && g.version == h.version, "rebuilt request-line differs");
  check(g.host == h.host && g.port == h.port && g.host_header == h.host_header, "rebuilt authority differs");
  check(g.content_length == h.content_length && g.chunked == h.chunked, "rebuilt request framing differs");
  check(g.upgrade == h.upgrade && g.expect_continue == h.expect_continue && g.is_connect == h.is_connect,
        "rebuilt request semantics differ");
  std::size_t kept = 0;
  for (const HeaderField& f : h.headers) {
    if (kept < g.headers.size() && g.headers[kept].name == f.name && g.headers[kept].value == f.value) ++kept;
  }
  const std::size_t added = h.upgrade.empty() ? 0 : 1;
  check(kept + added == g.headers.size(), "rebuilt request has fields the original lacks");
  check(added == 0 || (g.headers.back().name == "connection" && g.headers.back().value == "upgrade"),
        "rebuilt upgrade request lacks connection: upgrade");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  for (const HttpLimits limits : {HttpLimits{}, HttpLimits{256, 96, 6, 1000}}) {
    for (const auto& request : {std::pair{false, false}, {true, false}, {false, true}}) {  // GET, HEAD, CONNECT
      compare_feeds(
          input,
          [&](const std::vector<std::string_view>& chunks) {
            Connection c(input, limits, request.first, request.second);
            for (std::string_view chunk : chunks) c.feed(chunk);
            return c.finish();
          },
          "connection transcript depends on how the input is split");
    }
  }
  check_request_rebuild(input);
  return 0;
}
