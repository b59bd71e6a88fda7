// What the HTTP head parser tests share: feeding a head in pieces. Parser is
// HttpRequestParser or HttpResponseParser; summarize(parser) is a test's copy
// of what a parse reported, comparable with ==, with status and head_length.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "userspace-proxy/sniff/http_request_head.h"

namespace sluice::sniff::head_test {

// The same verdict and the same fields whether the head arrives whole, in two
// pieces cut anywhere, or byte by byte; for a complete head, the feeds'
// consumed counts add up to its length.
template <typename Parser, typename Summarize>
void expect_same_however_split(const std::string& bytes, Summarize summarize) {
  Parser first;
  first.feed(bytes);
  const auto whole = summarize(first);
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    Parser p;
    const auto a = p.feed(std::string_view(bytes).substr(0, cut));
    const auto b = p.feed(std::string_view(bytes).substr(cut));
    ASSERT_EQ(summarize(p), whole) << "cut at " << cut;
    if (whole.status == HttpParseStatus::kDone) {
      EXPECT_EQ(a.consumed + b.consumed, whole.head_length);
    }
  }
  Parser p;
  std::size_t consumed = 0;
  for (char c : bytes) consumed += p.feed(std::string_view(&c, 1)).consumed;
  EXPECT_EQ(summarize(p), whole);
  if (whole.status == HttpParseStatus::kDone) {
    EXPECT_EQ(consumed, whole.head_length);
  }
}

// Feeds bytes to p `step` bytes at a time until p reaches a verdict or the
// bytes run out; returns how many bytes it offered.
template <typename Parser>
std::size_t feed_in_steps(Parser& p, std::string_view bytes, std::size_t step) {
  std::size_t fed = 0;
  while (p.status() == HttpParseStatus::kNeedMore && fed < bytes.size()) {
    p.feed(bytes.substr(fed, step));
    fed += step;
  }
  return fed;
}

// Feeds a complete head to p (after reset()) in two pieces, cut after `cut`
// bytes, with `after` (the next bytes on the connection) behind the second:
// each feed's consumed counts only that feed's bytes of the head.
template <typename Parser>
void expect_consumed_per_feed(Parser& p, const std::string& head, std::size_t cut, std::string_view after) {
  p.reset();
  auto r = p.feed(std::string_view(head).substr(0, cut));
  EXPECT_EQ(r.status, HttpParseStatus::kNeedMore);
  EXPECT_EQ(r.consumed, cut);
  r = p.feed(head.substr(cut) + std::string(after));
  EXPECT_EQ(r.status, HttpParseStatus::kDone);
  EXPECT_EQ(r.consumed, head.size() - cut);
  EXPECT_EQ(p.head().head_length, head.size());
}

}  // namespace sluice::sniff::head_test
