#include "userspace-proxy/proxy/tunnel_filter.h"

#include <utility>

namespace sluice::proxy {

using engine::Direction;
using engine::FilterOutput;
using engine::FilterStatus;

namespace {
std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
std::string_view text_of(std::span<const uint8_t> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }
}  // namespace

TunnelFilter::TunnelFilter(const std::string& target_host, uint32_t target_port, FailureFn on_failure,
                           OpenFn on_open)
    : authority_(authority(target_host, target_port)), on_failure_(std::move(on_failure)), on_open_(std::move(on_open)) {}

std::string TunnelFilter::authority(const std::string& target_host, uint32_t target_port) {
  const bool v6 = target_host.find(':') != std::string::npos;
  return (v6 ? "[" + target_host + "]" : target_host) + ":" + std::to_string(target_port);
}

FilterStatus TunnelFilter::on_start(std::span<const uint8_t> held, FilterOutput& out) {
  const std::string request = "CONNECT " + authority_ + " HTTP/1.1\r\nHost: " + authority_ + "\r\n\r\n";
  if (out.inject(Direction::kDownstreamToUpstream, bytes_of(request)) != 0) return FilterStatus::kReset;
  held_.assign(text_of(held));
  return FilterStatus::kContinue;
}

FilterStatus TunnelFilter::on_data(Direction dir, std::span<const uint8_t> chunk, FilterOutput& out) {
  switch (state_) {
    case State::kOpen:
      return out.forward(chunk.size()) < 0 ? FilterStatus::kReset : FilterStatus::kContinue;
    case State::kFailed:
      return FilterStatus::kClose;  // nothing goes either way any more
    case State::kAwaiting:
      break;
  }
  if (dir == Direction::kUpstreamToDownstream) return answer(chunk, out);
  if (held_.size() + chunk.size() > kMaxHeld) {
    return fail("tunnel: the client sent more than " + std::to_string(kMaxHeld) +
                    " bytes before the proxy answered CONNECT",
                /*proxy_failed=*/false);
  }
  held_.append(text_of(chunk));
  return FilterStatus::kContinue;
}

// The proxy's answer to CONNECT, read in pieces: its head ends at the blank
// line; what follows it is the tunnel's first bytes.
FilterStatus TunnelFilter::answer(std::span<const uint8_t> chunk, FilterOutput& out) {
  const size_t before = answer_.size();
  answer_.append(text_of(chunk));
  const size_t from = before >= 3 ? before - 3 : 0;
  const size_t blank = answer_.find("\r\n\r\n", from);
  if (blank == std::string::npos) {
    if (answer_.size() > kMaxAnswerHead) {
      return fail("tunnel: the proxy's answer to CONNECT has no end of head within " +
                  std::to_string(kMaxAnswerHead) + " bytes");
    }
    return FilterStatus::kContinue;
  }
  const size_t head_end = blank + 4;
  const std::string status_line = answer_.substr(0, answer_.find("\r\n"));
  // "HTTP/1.x NNN reason"
  const bool http1 = status_line.size() >= 12 && status_line.compare(0, 7, "HTTP/1.") == 0 && status_line[8] == ' ';
  const char c0 = http1 ? status_line[9] : '\0';
  const bool digits = http1 && status_line[10] >= '0' && status_line[10] <= '9' && status_line[11] >= '0' &&
                      status_line[11] <= '9' && (status_line.size() == 12 || status_line[12] == ' ');
  if (!digits || c0 != '2') {
    // No quotes: the reason goes into a quoted access log field.
    return fail("tunnel: the proxy answered CONNECT " + authority_ + " with " + status_line.substr(0, 128));
  }
  state_ = State::kOpen;
  if (on_open_) on_open_();
  // The head's bytes in this chunk are dropped; any after it are the
  // tunnel's, for the client.
  const size_t head_in_chunk = head_end - before;
  out.skip(head_in_chunk);
  if (chunk.size() > head_in_chunk && out.forward(chunk.size() - head_in_chunk) < 0) return FilterStatus::kReset;
  answer_.clear();
  answer_.shrink_to_fit();
  if (!held_.empty()) {
    if (out.inject(Direction::kDownstreamToUpstream, bytes_of(held_)) != 0) return FilterStatus::kReset;
    held_.clear();
    held_.shrink_to_fit();
  }
  return FilterStatus::kContinue;
}

FilterStatus TunnelFilter::on_end_stream(Direction dir, FilterOutput& /*out*/) {
  if (state_ != State::kAwaiting || dir == Direction::kDownstreamToUpstream) return FilterStatus::kContinue;
  return fail("tunnel: the proxy closed the connection before answering CONNECT " + authority_);
}

FilterStatus TunnelFilter::fail(std::string reason, bool proxy_failed) {
  state_ = State::kFailed;
  held_.clear();
  if (on_failure_) on_failure_(reason, proxy_failed);
  return FilterStatus::kClose;
}

}  // namespace sluice::proxy
