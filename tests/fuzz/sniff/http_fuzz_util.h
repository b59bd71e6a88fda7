// What the HTTP sniffer fuzz targets share: the oracle's abort; running the
// same input fed whole, in two pieces cut at a data-dependent offset, and in
// many pieces of data-dependent sizes, to check that the result does not
// depend on how the input was split; and driving one connection's bytes
// through a head parser and the body framers its heads call for.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "userspace-proxy/sniff/body_framer.h"
#include "userspace-proxy/sniff/http_request_head.h"

namespace sluice::sniff::fuzz {

inline void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "oracle violated: %s\n", what);
    std::abort();
  }
}

// Piece sizes for the "many pieces" run, from a small PRNG seeded by the input.
struct Pieces {
  uint32_t state;
  std::size_t next() {
    state = state * 1103515245u + 12345u;
    return 1 + (state >> 16) % 61;
  }
};

inline uint32_t seed_of(std::string_view input) {
  uint32_t h = 2166136261u;
  for (char c : input) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  return h;
}

inline void check_same(const std::string& whole, const std::string& split, const char* how, const char* what) {
  if (whole != split) {
    std::fprintf(stderr, "--- fed whole:\n%s\n--- fed %s:\n%s\n", whole.c_str(), how, split.c_str());
    check(false, what);
  }
}

// run(const std::vector<std::string_view>& chunks) feeds the chunks in order
// and returns a transcript; it must be the same for the three splits, else
// the oracle fails with `what`.
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

// One connection's bytes through a head parser (Parser) and body framers
// (Framer), the way the proxy drives them: head, then body, then the next
// head, until the input ends or a verdict ends the connection. The
// transcript records every body's end and the final position; Derived adds
// its verdicts and heads, and checks its own oracles, in three hooks:
//   void on_verdict(HttpParseStatus status): the head parse ended in kNotHttp
//       or kInvalid (parser_.error() says why);
//   bool on_head(const Head& h): a head was parsed, ending at position_ (it
//       began at head_start_); emplace body_ and return true, or return
//       false to stop there;
//   bool after_body(): the body ended in kDone; true to parse another head.
template <typename Derived, typename Parser, typename Framer>
class HeadBodyConnection {
 public:
  void feed(std::string_view chunk) {
    Derived& self = static_cast<Derived&>(*this);
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
          self.on_verdict(r.status);
          position_ = head_start_;
          done_ = true;
          return;
        }
        chunk.remove_prefix(r.consumed);
        position_ += r.consumed;
        check(parser_.head().head_length == position_ - head_start_, "head_length disagrees with consumed bytes");
        if (!self.on_head(parser_.head())) {
          done_ = true;
          return;
        }
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
      if (r.status == BodyStatus::kInvalid || !self.after_body()) {
        done_ = true;
        return;
      }
      body_.reset();
      parser_.reset();
      head_start_ = position_;
    }
  }

  std::string finish() const {
    std::string out = transcript_;
    out += "end|" + std::to_string(position_) + '|';
    if (!done_) {
      out += body_ ? "in-body|" + std::to_string(body_->content_bytes()) : std::string(to_string(parser_.status()));
    }
    return out;
  }

 protected:
  HeadBodyConnection(std::string_view input, HttpLimits limits) : input_(input), parser_(limits) {}

  std::string_view input_;
  Parser parser_;
  std::optional<Framer> body_;
  std::size_t position_ = 0;
  std::size_t head_start_ = 0;
  bool done_ = false;
  std::string transcript_;
};

}  // namespace sluice::sniff::fuzz
