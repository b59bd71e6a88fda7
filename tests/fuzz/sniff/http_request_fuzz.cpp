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
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "userspace-proxy/sniff/body_framer.h"
#include "userspace-proxy/sniff/http_request_head.h"
#include "userspace-proxy/sniff/protocol_detector.h"

namespace {

using namespace sluice::sniff;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "oracle violated: %s\n", what);
    std::abort();
  }
}

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
class Connection {
 public:
  Connection(std::string_view input, HttpLimits limits) : input_(input), parser_(limits) {}

  void feed(std::string_view chunk) {
    while (!done_) {
      if (!body_) {
        if (chunk.empty()) return;
        const auto r = parser_.feed(chunk);
        check(r.consumed <= chunk.size(), "head consumed more than fed");
        if (r.status == HttpParseStatus::kNeedMore) {
          check(r.consumed == chunk.size(), "head needs more but left bytes unconsumed");
          position_ += r.consumed;
          return;
        }
        if (r.status != HttpParseStatus::kDone) {
          // consumed is then just what this feed buffered: split-dependent by
          // nature, so it stays out of the transcript.
          transcript_ += std::string(to_string(r.status)) + '|' + std::to_string(parser_.error().status) + '|' +
                         std::string(parser_.error().reason) + '\n';
          position_ = request_start_;
          check(!parser_.error().reason.empty(), "verdict without a reason");
          check(r.status == HttpParseStatus::kNotHttp ? parser_.error().status == 0 : parser_.error().status >= 400,
                "bad suggested status");
          done_ = true;
          return;
        }
        chunk.remove_prefix(r.consumed);
        position_ += r.consumed;
        const HttpRequestHead& h = parser_.head();
        check(h.head_length == position_ - request_start_, "head_length disagrees with consumed bytes");
        check(input_.substr(request_start_, h.head_length).ends_with("\r\n\r\n"), "head does not end in CRLFCRLF");
        for (char c : h.host) check(!(c >= 'A' && c <= 'Z'), "host not lower-cased");
        append_head(transcript_, h);
        if (h.is_connect || !h.upgrade.empty()) {  // a tunnel may follow: stop here
          done_ = true;
          return;
        }
        body_.emplace(h);
      }
      const BodyFeedResult r = body_->feed(chunk);
      check(r.consumed <= chunk.size(), "body consumed more than fed");
      chunk.remove_prefix(r.consumed);
      position_ += r.consumed;
      if (r.status == BodyStatus::kNeedMore) {
        check(chunk.empty(), "body needs more but left bytes unconsumed");
        return;
      }
      transcript_ += "body|" + std::string(to_string(r.status)) + '|' + std::string(body_->error()) + '|' +
                     std::to_string(body_->content_bytes()) + '|' + std::to_string(position_) + '\n';
      if (r.status == BodyStatus::kInvalid) {
        done_ = true;
        return;
      }
      body_.reset();
      parser_.reset();
      request_start_ = position_;
    }
  }

  std::string finish() {
    std::string out = transcript_;
    out += "end|" + std::to_string(position_) + '|';
    if (!done_) {
      out += body_ ? "in-body|" + std::to_string(body_->content_bytes()) : std::string(to_string(parser_.status()));
    }
    return out;
  }

 private:
  std::string_view input_;
  HttpRequestParser parser_;
  std::optional<RequestBodyFramer> body_;
  std::size_t position_ = 0;
  std::size_t request_start_ = 0;
  bool done_ = false;
  std::string transcript_;
};

// Piece sizes for the "many pieces" run, from a small PRNG seeded by the input.
struct Pieces {
  uint32_t state;
  std::size_t next() {
    state = state * 1103515245u + 12345u;
    return 1 + (state >> 16) % 61;
  }
};

uint32_t seed_of(std::string_view input) {
  uint32_t h = 2166136261u;
  for (char c : input) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  return h;
}

void check_same(const std::string& whole, const std::string& split, const char* how, const char* what) {
  if (whole != split) {
    std::fprintf(stderr, "--- fed whole:\n%s\n--- fed %s:\n%s\n", whole.c_str(), how, split.c_str());
    check(false, what);
  }
}

template <typename Run>
void compare_feeds(std::string_view input, Run run, const char* what) {
  const std::string whole = run({input});
  const std::size_t cut = input.empty() ? 0 : seed_of(input) % (input.size() + 1);
  check_same(whole, run({input.substr(0, cut), input.substr(cut)}), "in two pieces", what);
  Pieces pieces{seed_of(input) ^ 0x9e3779b9u};
  std::vector<std::string_view> many;
  for (std::string_view rest = input; !rest.empty();) {
    const std::size_t n = std::min(pieces.next(), rest.size());
    many.push_back(rest.substr(0, n));
    rest.remove_prefix(n);
  }
  check_same(whole, run(many), "in many pieces", what);
}

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
