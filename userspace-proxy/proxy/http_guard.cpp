#include "userspace-proxy/proxy/http_guard.h"

#include <cstdlib>
#include <ctime>

namespace sluice::proxy {

using engine::FilterOutput;
using engine::FilterStatus;

int64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

int64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

AccessLogEntry ConnectionInfo::base_entry() const {
  AccessLogEntry e;
  e.start_realtime_ns = start_realtime_ns;
  e.downstream_local_address = original_dst.to_string();
  e.downstream_remote_address = peer.to_string();
  e.requested_server_name = sni;
  return e;
}

namespace {

// "outbound|80|cnn|edition.cnn.com" -> "edition.cnn.com"; other names as they are.
std::string_view cluster_host(std::string_view cluster) {
  if (cluster.substr(0, 9) != "outbound|") return {};
  size_t last = cluster.rfind('|');
  return last == std::string_view::npos ? std::string_view() : cluster.substr(last + 1);
}

void fill_labels(const ConnectionInfo& ci, const AccessLogEntry& e, admin::IstioLabels& l) {
  std::string_view host = cluster_host(e.upstream_cluster);
  if (!host.empty()) {
    l.destination_service = host;
    l.destination_service_name = host;
  } else if (!e.upstream_cluster.empty() && e.upstream_cluster != "-") {
    // PassthroughCluster, BlackHoleCluster: Istio's names for unknown destinations.
    l.destination_service_name = e.upstream_cluster;
    if (e.http && !e.http->authority.empty()) l.destination_service = e.http->authority;
  }
  l.response_flags = e.response_flags.empty() ? std::string_view("-") : std::string_view(e.response_flags);
  l.connection_security_policy = ci.security_policy;
}

}  // namespace

void ConnectionInfo::log_entry(const AccessLogEntry& e) const {
  if (log) log->write(e);
  if (!metrics || !metrics_shard) return;
  admin::IstioLabels l;
  fill_labels(*this, e, l);
  if (e.http) {
    std::string code = std::to_string(e.http->response_code);
    l.response_code = code;
    l.request_protocol = "http";
    metrics->record_request(*metrics_shard, l, static_cast<double>(e.duration_ms));
  } else {
    l.response_code = "0";
    l.request_protocol = "tcp";
    metrics->record_tcp_close(*metrics_shard, l, e.bytes_sent, e.bytes_received);
  }
}

void ConnectionInfo::record_tcp_open() const {
  if (!metrics || !metrics_shard) return;
  AccessLogEntry e;
  e.upstream_cluster = cluster;
  admin::IstioLabels l;
  fill_labels(*this, e, l);
  l.response_code = "0";
  l.request_protocol = "tcp";
  metrics->record_tcp_open(*metrics_shard, l);
}

void ConnectionInfo::flush_requests() {
  for (auto& r : pending_requests) {
    // Responses are relayed, not parsed: the first one's status line is the
    // only one known (HttpRequestGuard reads it).
    if (r.first && r.entry.http && r.entry.http->response_code == 0) {
      r.entry.http->response_code = static_cast<uint32_t>(first_response_code);
    }
    if (r.entry.upstream_host.empty() && r.entry.response_code_details.empty()) {
      r.entry.upstream_host = upstream_host;
    }
    log_entry(r.entry);
  }
  pending_requests.clear();
}

AccessLogEntry request_entry(const ConnectionInfo& info, const sniff::HttpRequestHead& head) {
  AccessLogEntry e = info.base_entry();
  e.start_realtime_ns = realtime_ns();
  AccessLogEntry::Http h;
  h.method = std::string(head.method);
  h.path = std::string(head.path);
  h.protocol = head.version == sniff::HttpVersion::kHttp10 ? "HTTP/1.0" : "HTTP/1.1";
  h.authority = head.has_host_header ? std::string(head.host_header) : std::string(head.host);
  if (auto ua = head.find_header("user-agent")) h.user_agent = std::string(*ua);
  if (auto rid = head.find_header("x-request-id")) h.request_id = std::string(*rid);
  e.http = std::move(h);
  return e;
}

std::string local_reply(int status, int64_t realtime_ns, std::string_view body, std::string_view location) {
  const char* reason = "Error";
  switch (status) {
    case 200: reason = "OK"; break;
    case 301: reason = "Moved Permanently"; break;
    case 302: reason = "Found"; break;
    case 303: reason = "See Other"; break;
    case 307: reason = "Temporary Redirect"; break;
    case 308: reason = "Permanent Redirect"; break;
    case 400: reason = "Bad Request"; break;
    case 403: reason = "Forbidden"; break;
    case 404: reason = "Not Found"; break;
    case 408: reason = "Request Timeout"; break;
    case 413: reason = "Payload Too Large"; break;
    case 414: reason = "URI Too Long"; break;
    case 431: reason = "Request Header Fields Too Large"; break;
    case 500: reason = "Internal Server Error"; break;
    case 501: reason = "Not Implemented"; break;
    case 502: reason = "Bad Gateway"; break;
    case 503: reason = "Service Unavailable"; break;
    case 504: reason = "Gateway Timeout"; break;
    case 505: reason = "HTTP Version Not Supported"; break;
    default: break;
  }
  time_t secs = static_cast<time_t>(realtime_ns / 1'000'000'000);
  tm utc{};
  gmtime_r(&secs, &utc);
  char date[64];
  strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &utc);
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\n";
  if (!location.empty()) out += "location: " + std::string(location) + "\r\n";
  out += "content-length: " + std::to_string(body.size()) + "\r\n";
  if (!body.empty()) out += "content-type: text/plain\r\n";
  out += "date: " + std::string(date) + "\r\nserver: sluice\r\nconnection: close\r\n\r\n";
  out += body;
  return out;
}

HttpRequestGuard::HttpRequestGuard(std::shared_ptr<ConnectionInfo> info, std::span<const uint8_t> first)
    : info_(std::move(info)) {
  advance(first, nullptr);
  // A later request cut off at the end of the first read is already on its
  // way upstream (the engine forwards sniffed bytes as read) and cannot be
  // checked: refuse the connection rather than let it through.
  if (state_ == State::kHead && !held_.empty()) first_ok_ = false;
}

FilterStatus HttpRequestGuard::on_data(engine::Direction dir, std::span<const uint8_t> chunk, FilterOutput& out) {
  if (dir == engine::Direction::kUpstreamToDownstream) {
    if (!response_seen_) {
      response_seen_ = true;
      std::string_view s(reinterpret_cast<const char*>(chunk.data()), std::min<size_t>(chunk.size(), 12));
      if (s.size() == 12 && s.substr(0, 7) == "HTTP/1." && s[8] == ' ') {
        info_->first_response_code = std::atoi(std::string(s.substr(9, 3)).c_str());
      }
    }
    return out.forward(chunk.size()) == 0 ? FilterStatus::kContinue : FilterStatus::kReset;
  }
  return advance(chunk, &out);
}

FilterStatus HttpRequestGuard::on_later_head(const sniff::HttpRequestHead& head, FilterOutput* out) {
  bump(info_->counters->http_requests);
  ++info_->requests;
  AccessLogEntry e = request_entry(*info_, head);
  e.upstream_host = info_->upstream_host;
  LaterRequest verdict = info_->check_later ? info_->check_later(head, e) : LaterRequest{LaterRequest::Kind::kClose, {}};
  info_->flush_requests();
  switch (verdict.kind) {
    case LaterRequest::Kind::kForward:
      info_->pending_requests.push_back({std::move(e), false});
      return FilterStatus::kContinue;
    case LaterRequest::Kind::kLocalReply:
      e.upstream_host.clear();
      info_->log_entry(e);
      if (out) out->inject(engine::Direction::kUpstreamToDownstream, bytes_of(verdict.reply));
      return FilterStatus::kClose;
    case LaterRequest::Kind::kClose:
      e.upstream_host.clear();
      info_->log_entry(e);
      return FilterStatus::kClose;
  }
  return FilterStatus::kClose;
}

// Walks `chunk` through the framing. With `out` null (the handler's first
// bytes) nothing is output and a failed check sets first_ok_ = false.
FilterStatus HttpRequestGuard::advance(std::span<const uint8_t> chunk, FilterOutput* out) {
  std::string_view rest(reinterpret_cast<const char*>(chunk.data()), chunk.size());
  auto forward = [&](size_t n) { return out ? out->forward(n) : 0; };
  while (!rest.empty()) {
    switch (state_) {
      case State::kStopped:
        if (out) out->skip(rest.size());
        return FilterStatus::kClose;
      case State::kOpaque:
        if (forward(rest.size()) != 0) return FilterStatus::kReset;
        return FilterStatus::kContinue;
      case State::kBody: {
        sniff::BodyFeedResult r = framer_->feed(rest);
        if (r.status == sniff::BodyStatus::kInvalid) {
          bump(info_->counters->protocol_errors);
          state_ = State::kStopped;
          first_ok_ = false;
          return FilterStatus::kReset;
        }
        if (r.consumed > 0 && forward(r.consumed) != 0) return FilterStatus::kReset;
        rest.remove_prefix(r.consumed);
        if (r.status == sniff::BodyStatus::kDone) {
          framer_.reset();
          state_ = tunnel_after_body_ ? State::kOpaque : State::kHead;
          parser_.reset();
          first_head_ = false;
        } else if (r.consumed == 0) {
          return FilterStatus::kContinue;
        }
        break;
      }
      case State::kHead: {
        sniff::HttpRequestParser::FeedResult r = parser_.feed(rest);
        if (r.status == sniff::HttpParseStatus::kNeedMore) {
          // Hold the partial head until it is complete and decided.
          if (!first_head_) held_.append(rest.substr(0, r.consumed));
          else if (forward(r.consumed) != 0) return FilterStatus::kReset;
          rest.remove_prefix(r.consumed);
          if (r.consumed == 0) return FilterStatus::kContinue;
          break;
        }
        if (r.status != sniff::HttpParseStatus::kDone) {
          // Not HTTP or malformed after a valid first request: stop here.
          bump(info_->counters->protocol_errors);
          state_ = State::kStopped;
          first_ok_ = false;
          if (out) {
            std::string reply = local_reply(parser_.error().status ? parser_.error().status : 400, realtime_ns());
            out->inject(engine::Direction::kUpstreamToDownstream, bytes_of(reply));
            out->skip(rest.size());
          }
          return FilterStatus::kClose;
        }
        const sniff::HttpRequestHead& head = parser_.head();
        if (first_head_) {
          // The request the connection was decided on: already logged.
          if (forward(r.consumed) != 0) return FilterStatus::kReset;
        } else {
          FilterStatus st = on_later_head(head, out);
          if (st != FilterStatus::kContinue) {
            state_ = State::kStopped;
            first_ok_ = false;
            if (out) out->skip(rest.size());
            return st;
          }
          held_.append(rest.substr(0, r.consumed));
          if (out && out->inject(engine::Direction::kDownstreamToUpstream, bytes_of(held_)) != 0) {
            return FilterStatus::kReset;
          }
          if (out) out->skip(r.consumed);
          held_.clear();
        }
        rest.remove_prefix(r.consumed);
        tunnel_after_body_ = head.is_connect || !head.upgrade.empty();
        framer_ = sniff::make_body_framer(head);
        state_ = State::kBody;
        if (framer_->status() == sniff::BodyStatus::kDone) {
          framer_.reset();
          state_ = tunnel_after_body_ ? State::kOpaque : State::kHead;
          parser_.reset();
          first_head_ = false;
        }
        break;
      }
    }
  }
  return FilterStatus::kContinue;
}

}  // namespace sluice::proxy
