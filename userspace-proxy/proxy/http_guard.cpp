#include "userspace-proxy/proxy/http_guard.h"

#include "userspace-proxy/engine/deadline.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>

#include "userspace-proxy/proxy/circuit_breaker.h"
#include "userspace-proxy/proxy/clusters.h"

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

const std::string& ConnectionInfo::original_dst_text() const {
  if (original_dst_text_.empty()) original_dst_text_ = original_dst.to_string();
  return original_dst_text_;
}

const std::string& ConnectionInfo::peer_text() const {
  if (peer_text_.empty()) peer_text_ = peer.to_string();
  return peer_text_;
}

void ConnectionInfo::report_response(int status) {
  if (!clusters || !outlier_detection || !upstream_address.valid() || status <= 0) return;
  response_reported = true;
  clusters->report_response(cluster, upstream_address, static_cast<uint32_t>(status));
}

AccessLogEntry ConnectionInfo::base_entry() const {
  AccessLogEntry e;
  e.start_realtime_ns = start_realtime_ns;
  e.downstream_local_address = original_dst_text();
  e.downstream_remote_address = peer_text();
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

void ConnectionInfo::log_entry(const AccessLogEntry& e) {
  if (e.http) {
    logged_in += e.bytes_received;
    logged_out += e.bytes_sent;
  }
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
    // Requests whose response did not end (the connection closed first):
    // the first one's status is known if its head arrived.
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

void ConnectionInfo::complete_request(int status, uint64_t bytes_received, uint64_t bytes_sent, std::string_view flags,
                                      std::string_view details) {
  if (pending_requests.empty()) return;
  Request r = std::move(pending_requests.front());
  pending_requests.erase(pending_requests.begin());
  if (r.entry.http && r.entry.http->response_code == 0) r.entry.http->response_code = static_cast<uint32_t>(status);
  // A request's own flags (DI: a fault delay) stay: Envoy lists them all.
  if (!flags.empty()) r.entry.response_flags = policy::merge_response_flags(r.entry.response_flags, flags);
  // Envoy's details for a response the upstream sent: via_upstream.
  r.entry.response_code_details = details.empty() ? std::string("via_upstream") : std::string(details);
  r.entry.bytes_received = bytes_received;
  r.entry.bytes_sent = bytes_sent;
  r.entry.duration_ms = ms_since(r.entry.start_realtime_ns);
  if (r.entry.upstream_host.empty()) r.entry.upstream_host = upstream_host;
  log_entry(r.entry);
}

uint64_t ms_since(int64_t start_realtime_ns) {
  const int64_t now = realtime_ns();
  return now > start_realtime_ns ? static_cast<uint64_t>(now - start_realtime_ns) / 1'000'000 : 0;
}

AccessLogEntry request_entry(const ConnectionInfo& info, const sniff::HttpRequestHead& head) {
  AccessLogEntry e = info.base_entry();
  e.start_realtime_ns = realtime_ns();
  AccessLogEntry::Http h;
  // The metrics read the authority (and the code, cluster, flags); the rest
  // is for the access log, copied only when there is one.
  h.authority = head.has_host_header ? std::string(head.host_header) : std::string(head.host);
  if (info.log) {
    h.method = std::string(head.method);
    h.path = std::string(head.path);
    h.protocol = head.version == sniff::HttpVersion::kHttp10 ? "HTTP/1.0" : "HTTP/1.1";
    if (auto ua = head.find_header("user-agent")) h.user_agent = std::string(*ua);
    if (auto rid = head.find_header("x-request-id")) h.request_id = std::string(*rid);
  }
  e.http = std::move(h);
  return e;
}

std::string local_reply(int status, int64_t realtime_ns, std::string_view body, std::string_view location,
                        bool keep_alive, bool head_request) {
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
  // 204 and 304 have no body (RFC 9110 §15.3.5, §15.4.5); a HEAD request's
  // answer has its length but not its body (a body would be read as the
  // start of the next response on a kept connection).
  const bool no_body = status == 204 || status == 304;
  if (!no_body) out += "content-length: " + std::to_string(body.size()) + "\r\n";
  if (!body.empty() && !no_body) out += "content-type: text/plain\r\n";
  out += "date: " + std::string(date) + "\r\nserver: sluice\r\n";
  if (!keep_alive) out += "connection: close\r\n";
  out += "\r\n";
  if (!no_body && !head_request) out += body;
  return out;
}

bool local_reply_keeps_connection(const sniff::HttpRequestHead& head) {
  return head.version == sniff::HttpVersion::kHttp11 && head.keep_alive && !head.chunked &&
         head.content_length.value_or(0) == 0 && !head.is_connect && head.upgrade.empty();
}

RouteEditsPtr route_edits(const policy::ForwardPlan& plan) {
  const bool timeout = plan.timeout && plan.timeout->count() > 0;
  if (!plan.rewrites_request() && plan.response_headers.empty() && !timeout) return nullptr;
  auto e = std::make_shared<RouteEdits>();
  if (timeout) e->timeout = *plan.timeout;
  e->path = plan.path_rewrite;
  e->authority = plan.authority_rewrite;
  e->request = plan.request_headers;
  e->response = plan.response_headers;
  return e;
}

namespace {

// "http://user@host:8080/x" -> "host:8080".
std::string_view url_authority(std::string_view target) {
  size_t start = target.find("://");
  if (start == std::string_view::npos) return {};
  std::string_view rest = target.substr(start + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  size_t at = rest.rfind('@');
  return at == std::string_view::npos ? rest : rest.substr(at + 1);
}

}  // namespace

sniff::HeadRewrite request_rewrite(const sniff::HttpRequestHead& head, const RouteEdits& e) {
  sniff::HeadRewrite rw;
  // Envoy sends origin-form upstream: an absolute-form target whose
  // authority or path the route changes becomes its (new) path.
  if (!e.path.empty()) rw.target = e.path;
  else if (head.target_form == sniff::TargetForm::kAbsolute && !e.authority.empty()) rw.target = head.path;
  rw.host = e.authority;
  if (head.target_form == sniff::TargetForm::kAbsolute && !rw.target.empty() && rw.host.empty()) {
    // The URL's authority wins over a Host field (RFC 9112 §3.2.2): the
    // origin-form request must name it, not whatever Host the client sent.
    rw.host = url_authority(head.target);
  }
  if (!e.request.empty()) {
    rw.edit_fields = [&e](std::vector<std::pair<std::string, std::string>>& f) { policy::apply_header_edits(e.request, f); };
  }
  return rw;
}

HttpRequestGuard::HttpRequestGuard(std::shared_ptr<ConnectionInfo> info, std::span<const uint8_t> first, bool pooled,
                                   RouteEditsPtr first_edits, bool moved)
    : info_(std::move(info)), pooled_(pooled), first_edits_(std::move(first_edits)), moved_(moved) {
  // A body to mirror for the request this guard is built for: its bytes,
  // held ones included, are copied as they are forwarded (on_start onwards;
  // never from the pass below, which forwards nothing).
  mirror_first_ = info_->mirror_sinks.take();
  mirror_rerun_ = !mirror_first_.empty();
  response_parser_ = std::make_unique<sniff::HttpResponseParser>();
  advance(first, nullptr);
  if (takes_held_bytes()) {
    // The held bytes come again through on_start, to be rewritten and sent,
    // and the later requests among them decided (and logged) as they come,
    // as any later read's would be: a local answer waits for the responses
    // due before it, a request for another upstream moves there.
    parser_.reset();
    framer_.reset();
    state_ = first_ok_ ? State::kHead : State::kStopped;
    first_head_ = true;
    tunnel_after_body_ = false;
    held_.clear();
    // The first request's circuit-breaker counts wait for its second pass.
    if (!outstanding_.empty()) {
      info_->request_token = std::move(outstanding_.front().request_token);
      if (outstanding_.front().retry_token) info_->retry_token = std::move(outstanding_.front().retry_token);
    }
    outstanding_.clear();
    close_requested_ = false;
    reusable_ = true;
    upstream_requests_ = 0;
    replay_.clear();
    replay_ok_ = replay_done_ = false;
  }
}

// Envoy's drain of an HTTP/1 connection: one idle between requests ends
// now; on a busy one the response to the last request forwarded says
// "connection: close" and the connection ends after it (requests the client
// pipelined behind it are not forwarded: the client sends them again
// elsewhere); a head on its way becomes the last request (note_request).
FilterStatus HttpRequestGuard::on_drain(FilterOutput& /*out*/) {
  if (discard_ || draining_) return FilterStatus::kContinue;
  draining_ = true;
  // A local answer waiting behind responses closes the connection instead.
  drop_deferred_keep();
  // A tunnel is a byte stream now; a stopped guard ends already; one
  // switching leaves the rest to the guard on the next upstream.
  if (state_ == State::kOpaque || state_ == State::kStopped || state_ == State::kSwitching) {
    return FilterStatus::kContinue;
  }
  if (!outstanding_.empty()) {
    outstanding_.back().close_after = true;
    close_requested_ = true;
    return FilterStatus::kContinue;
  }
  // An upload answered before its body ended: the connection ends with it.
  if (state_ == State::kBody) {
    close_requested_ = true;
    return FilterStatus::kContinue;
  }
  return at_boundary() ? FilterStatus::kEndDownstream : FilterStatus::kContinue;
}

FilterStatus HttpRequestGuard::on_connect_failed(FilterOutput& out, bool timed_out) {
  info_->connect_token.reset();  // no longer waiting for a connection
  info_->retry_token.reset();    // nor retrying
  if (discard_) return FilterStatus::kClose;
  if (info_->connect_route_timeout) {
    // The route timeout passed between two connect attempts: Envoy's
    // global timeout answer (the access log's flag UT, on_close).
    info_->first_response_code = 504;
    const std::string reply = local_reply(504, realtime_ns(), "upstream request timeout");
    return out.inject(engine::Direction::kUpstreamToDownstream, bytes_of(reply)) == 0 ? FilterStatus::kClose
                                                                                       : FilterStatus::kReset;
  }
  info_->first_response_code = 503;
  // Envoy's body names a retried request's last failure as such.
  const std::string reply =
      local_reply(503, realtime_ns(),
                  std::string("upstream connect error or disconnect/reset before headers. ") +
                      (info_->retried() ? "retried and the latest reset reason: " : "reset reason: ") +
                      (timed_out ? "connection timeout" : "connection failure"));
  return out.inject(engine::Direction::kUpstreamToDownstream, bytes_of(reply)) == 0 ? FilterStatus::kClose
                                                                                     : FilterStatus::kReset;
}

// Envoy takes a failed upstream TLS handshake for a connection failure:
// retried under connect-failure (and 5xx, gateway-error, reset) like a
// refused connect, on another connection (the request was kept for it).
FilterStatus HttpRequestGuard::on_upstream_setup_failed(FilterOutput& /*out*/) {
  if (discard_ || outstanding_.size() != 1) return FilterStatus::kContinue;
  Outstanding& r = outstanding_.front();
  const policy::RetryPlan* rp = retry_policy(r);
  if (rp == nullptr || !rp->retries_connect()) return FilterStatus::kContinue;
  // The walk's refused connects before this connection were tries too
  // (on_upstream_ready counts them once the upstream is up; it never was).
  if (!upstream_ready_ && r.first) r.attempt += info_->connect_retries;
  if (r.attempt >= rp->attempts || !can_retry()) return FilterStatus::kContinue;
  if (!retry_allowed(r)) {
    info_->connect_retry_overflow = true;  // the failure stands, UO
    return FilterStatus::kContinue;
  }
  reusable_ = false;
  return retry_now(0);
}

HttpRequestGuard::~HttpRequestGuard() {
  if (!mirror_body_.empty() || !mirror_first_.empty()) mirror_end(/*cut=*/true);
}

namespace {
// Ends a mirrored copy's body descriptor (-1 after): closed when the body is
// complete (the copy's own descriptor stays open, so its upstream sees no
// FIN), or cut — shut down, so the copy's request ends short (its upstream
// answers or closes it) instead of waiting for bytes that will not come.
void end_copy(int& fd, bool cut, ProxyCounters* counters) {
  if (fd < 0) return;
  if (cut) {
    shutdown(fd, SHUT_WR);
    if (counters) bump(counters->mirror_cut);
  }
  close(fd);
  fd = -1;
}
}  // namespace

MirrorSinks& MirrorSinks::operator=(MirrorSinks&& o) noexcept {
  if (this != &o) {
    end(/*cut=*/true, nullptr);
    fds_ = std::exchange(o.fds_, {});
  }
  return *this;
}

void MirrorSinks::feed(std::string_view bytes, ProxyCounters* counters) {
  if (bytes.empty()) return;
  for (int& fd : fds_) {
    const ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n != static_cast<ssize_t>(bytes.size())) end_copy(fd, /*cut=*/true, counters);
  }
  fds_.erase(std::remove(fds_.begin(), fds_.end(), -1), fds_.end());
}

void MirrorSinks::end(bool cut, ProxyCounters* counters) {
  for (int& fd : fds_) end_copy(fd, cut, counters);
  fds_.clear();
}

// The body being forwarded now goes to `sinks` too (any left unfinished,
// which cannot happen with a body framed to its end, are cut first).
void HttpRequestGuard::mirror_take(MirrorSinks sinks) {
  mirror_body_.end(/*cut=*/true, info_->counters);
  mirror_body_ = std::move(sinks);
}

void HttpRequestGuard::mirror_end(bool cut) {
  mirror_body_.end(cut, info_->counters);
  mirror_first_.end(cut, info_->counters);
}

ConnectionInfo::~ConnectionInfo() { cut_mirror_sink(); }

// Sinks left for a guard that will not take them (never built: an upstream
// failure; or its request dropped, as by a retry): the copies end short.
void ConnectionInfo::cut_mirror_sink() { mirror_sinks.end(/*cut=*/true, counters); }

FilterStatus HttpRequestGuard::on_start(std::span<const uint8_t> held, FilterOutput& out) {
  return advance(held, &out);
}

namespace {
struct GuardUpstreamState final : public engine::UpstreamState {
  GuardUpstreamState(uint32_t n, int64_t born, int64_t max_age) : requests(n), born_ns(born), max_age_ns(max_age) {}
  int64_t expires_ns() const override {
    return max_age_ns <= 0 || born_ns <= 0 ? INT64_MAX : engine::deadline_after(born_ns, max_age_ns);
  }
  uint32_t requests;
  int64_t born_ns;
  int64_t max_age_ns;
};
}  // namespace

engine::UpstreamStatePtr HttpRequestGuard::release_upstream() {
  if (!pooled_) return nullptr;
  return std::make_unique<GuardUpstreamState>(upstream_requests_, upstream_born_ns_, max_age_ns_);
}

bool HttpRequestGuard::adopt_upstream(engine::UpstreamStatePtr state) {
  if (state != nullptr) {
    auto* s = dynamic_cast<GuardUpstreamState*>(state.get());
    if (s == nullptr) return false;
    // Too old for this plan's maxConnectionDuration: the engine closes it
    // and opens another.
    if (max_age_ns_ > 0 && s->born_ns > 0 && monotonic_ns() - s->born_ns >= max_age_ns_) return false;
    // (born_ns + max_age: GuardUpstreamState::expires_ns saturates.)
    upstream_requests_ = s->requests;
    upstream_born_ns_ = s->born_ns;
  }
  if (upstream_born_ns_ == 0 && max_age_ns_ > 0) upstream_born_ns_ = monotonic_ns();
  upstream_ready_ = true;  // a pooled upstream connection is ready at once
  info_->connect_token.reset();  // so no longer pending
  return true;
}

bool HttpRequestGuard::at_boundary() const {
  // Switching, the held bytes are the next upstream's, not this one's.
  const bool idle = (state_ == State::kHead && held_.empty()) || state_ == State::kSwitching;
  return outstanding_.empty() && idle && response_state_ == ResponseState::kHead;
}

// The upstream is let go at a boundary (kRelease: parked, or closed if it
// cannot be); the client's connection goes on undecided. What the client
// sends from here on (a request already on its way) is held for the
// handler's next decision, not forwarded to the upstream being let go.
FilterStatus HttpRequestGuard::let_upstream_go() {
  info_->next_upstream = ConnectionInfo::NextUpstream::kRelease;
  switch_signalled_ = true;
  state_ = State::kSwitching;
  return FilterStatus::kNewUpstream;
}

int64_t HttpRequestGuard::age_deadline_ns() const {
  if (max_age_ns_ <= 0 || upstream_born_ns_ <= 0) return INT64_MAX;
  return engine::deadline_after(upstream_born_ns_, max_age_ns_);
}

bool HttpRequestGuard::spent() const {
  if (max_requests_ != 0 && upstream_requests_ >= max_requests_) return true;
  const int64_t deadline = age_deadline_ns();
  return deadline != INT64_MAX && monotonic_ns() >= deadline;
}

bool HttpRequestGuard::upstream_reusable() const {
  return pooled_ && reusable_ && !spent() && at_boundary();
}

bool HttpRequestGuard::on_new_upstream(FilterOutput& out) {
  if (!held_.empty()) out.inject(engine::Direction::kDownstreamToUpstream, bytes_of(held_));
  held_.clear();
  return false;
}

const policy::RetryPlan* HttpRequestGuard::retry_policy(const Outstanding& r) const {
  if (r.first) return &info_->first_retry;
  return r.retry ? &*r.retry : nullptr;
}

// Only a lone request, received whole and kept, with nothing of its
// response sent to the client and nothing after it from the client, goes
// again (Envoy also retries only what it buffered and has not answered).
// What was held back of a response head while its request could still be
// retried goes to the client, counted as the response's (false: the output
// failed).
bool HttpRequestGuard::flush_response_prefix(FilterOutput& out) {
  if (response_prefix_.empty()) return true;
  if (out.inject(engine::Direction::kUpstreamToDownstream, bytes_of(response_prefix_)) != 0) return false;
  if (!outstanding_.empty()) outstanding_.front().bytes_out += response_prefix_.size();
  response_prefix_.clear();
  return true;
}

// A deferred local answer no longer keeps the connection: its closing
// version goes, and what the client sent after it (held for the handler) is
// dropped, as it is never answered.
void HttpRequestGuard::drop_deferred_keep() {
  if (!deferred_ || !deferred_->keeps) return;
  deferred_->keeps = false;
  if (state_ == State::kSwitching) {
    held_.clear();
    state_ = State::kStopped;
  }
}

bool HttpRequestGuard::retry_allowed(Outstanding& r) {
  r.retry_token.reset();
  info_->retry_token.reset();
  if (info_->max_retries <= 0 || !info_->breaker) return true;
  info_->retry_token = info_->breaker->start_retry(info_->max_retries);
  if (info_->retry_token) return true;
  // Envoy's upstream_rq_retry_overflow: the response (or reset) stands, UO.
  r.retry_overflow = true;
  bump(info_->counters->retry_overflow);
  return false;
}

bool HttpRequestGuard::can_retry() const {
  return outstanding_.size() == 1 && replay_ok_ && replay_done_ && state_ == State::kHead && held_.empty() &&
         !switch_signalled_ && outstanding_.front().bytes_out == 0;
}

FilterStatus HttpRequestGuard::retry_now(uint32_t status) {
  const Outstanding tried = outstanding_.front();
  info_->retry_deadline_ns = tried.deadline_ns;
  outstanding_.clear();
  retrying_ = false;
  response_parser_->reset();
  response_framer_.reset();
  response_state_ = ResponseState::kHead;
  response_prefix_.clear();
  // Only the retried request goes again: a copy waiting for the body of a
  // request held behind it is cut.
  info_->cut_mirror_sink();
  held_ = std::move(replay_);
  held_.append(behind_retry_);
  behind_retry_.clear();
  replay_.clear();
  replay_ok_ = replay_done_ = false;
  state_ = State::kSwitching;
  switch_signalled_ = true;
  // Its access log entry stays pending: the response of the try that ends
  // it writes it.
  info_->next_upstream = ConnectionInfo::NextUpstream::kRetry;
  info_->retry_status = status;
  info_->first_attempt = tried.attempt + 1;
  return FilterStatus::kNewUpstream;
}

// A later request for another upstream: it and everything after it wait
// for the next upstream; the engine is asked for it once no response from
// this one is due.
FilterStatus HttpRequestGuard::hold_for_switch(std::string_view rest, FilterOutput& out) {
  held_.append(rest);
  out.skip(rest.size());
  state_ = State::kSwitching;
  info_->next_upstream = ConnectionInfo::NextUpstream::kSwitch;
  if (!outstanding_.empty()) return FilterStatus::kContinue;
  switch_signalled_ = true;
  return FilterStatus::kNewUpstream;
}

namespace {

// A mirrored request's guard: nothing goes to its downstream (the
// socketpair that carried the copy); responses are framed and dropped.
class DiscardDownstream final : public FilterOutput {
 public:
  explicit DiscardDownstream(FilterOutput& out) : out_(out) {}
  // Only called in the upstream -> downstream direction (on_response).
  int forward(size_t n) override {
    out_.skip(n);
    return 0;
  }
  void skip(size_t n) override { out_.skip(n); }
  int inject(engine::Direction dir, std::span<const uint8_t> bytes) override {
    return dir == engine::Direction::kUpstreamToDownstream ? 0 : out_.inject(dir, bytes);
  }
  void set_timer(std::chrono::milliseconds after) override { out_.set_timer(after); }

 private:
  FilterOutput& out_;
};

}  // namespace

FilterStatus HttpRequestGuard::on_end_stream(engine::Direction dir, FilterOutput& out) {
  if (!discard_) return end_stream(dir, out);
  DiscardDownstream d(out);
  return end_stream(dir, d);
}

FilterStatus HttpRequestGuard::on_timer(FilterOutput& out) {
  if (!discard_) return timer(out);
  DiscardDownstream d(out);
  return timer(d);
}

FilterStatus HttpRequestGuard::end_stream(engine::Direction dir, FilterOutput& out) {
  if (dir == engine::Direction::kUpstreamToDownstream && retrying_) {
    reusable_ = false;  // closed before the retried response ended
    return retry_now(retry_status_);
  }
  if (dir == engine::Direction::kUpstreamToDownstream && !outstanding_.empty() &&
      outstanding_.front().bytes_out == 0 && response_state_ == ResponseState::kHead) {
    const policy::RetryPlan* rp = retry_policy(outstanding_.front());
    if (rp && rp->retries_reset()) {
      // retryOn reset / 5xx / gateway-error: no response at all is retried.
      if (can_retry() && outstanding_.front().attempt < rp->attempts && retry_allowed(outstanding_.front())) {
        reusable_ = false;
        return retry_now(0);
      }
      outstanding_.front().retry_exhausted = true;
    }
    // The upstream closed before any of the response (a pooled connection
    // it had just timed out, a crash): Envoy's 503 UC rather than a FIN
    // the client cannot tell from an empty reply.
    const Outstanding lost = outstanding_.front();
    outstanding_.clear();
    reusable_ = false;
    state_ = State::kStopped;
    info_->report_response(503);  // outlier detection: a reset counts as a 503, as in Envoy
    const std::string reply =
        local_reply(503, realtime_ns(),
                    "upstream connect error or disconnect/reset before headers. reset reason: connection termination");
    out.inject(engine::Direction::kUpstreamToDownstream, bytes_of(reply));
    info_->complete_request(503, lost.bytes_in, reply.size(), lost.flags_with_retry("UC"),
                            "upstream_reset_before_response_started{connection_termination}");
    response_state_ = ResponseState::kOpaque;
    return FilterStatus::kClose;
  }
  if (!pooled_) return FilterStatus::kContinue;
  // A spent upstream (maxRequestsPerConnection) at a boundary ends as well:
  // not parked, but closed with the client's connection rather than told of
  // its FIN and left to close on its own.
  // spent() read once: an age limit may pass between two reads.
  const bool is_spent = spent();
  const bool idle_here = reusable_ && at_boundary();
  const bool spent_idle = is_spent && idle_here && state_ == State::kHead;
  if (dir == engine::Direction::kDownstreamToUpstream && ((pooled_ && idle_here && !is_spent) || spent_idle)) {
    // The client left between requests: its connection ends, the
    // upstream's need not.
    return FilterStatus::kEndDownstream;
  }
  // A FIN forwarded upstream (the client half-closed with a response
  // pending), or the upstream's own: no further request on it.
  reusable_ = false;
  return FilterStatus::kContinue;
}

// Sends a request head upstream: rebuilt without hop-by-hop fields when
// pooled (HTTP/1.1), else as received. `consumed` bytes of the current chunk
// belong to it (earlier ones are in held_).
FilterStatus HttpRequestGuard::forward_head(const sniff::HttpRequestHead& head, size_t consumed, FilterOutput* out,
                                            const RouteEdits* edits) {
  const bool http11 = head.version == sniff::HttpVersion::kHttp11;
  // Pooled, HTTP/1.0 goes as it is (unless the route edits it); its
  // connection is not one to share.
  if (pooled_ && !http11) reusable_ = false;
  // A head with nothing to drop or change goes as received (no copy).
  const bool rebuild =
      edits != nullptr || (pooled_ && http11 && sniff::has_hop_by_hop_fields(head.headers, /*keep_alive_ok=*/false));
  if (rebuild) {
    held_.clear();
    const std::string rebuilt = edits ? sniff::rebuild_request_head(head, request_rewrite(head, *edits))
                                      : sniff::rebuild_request_head(head);
    if (out && out->inject(engine::Direction::kDownstreamToUpstream, bytes_of(rebuilt)) != 0) {
      return FilterStatus::kReset;
    }
    if (out) out->skip(consumed);
    return FilterStatus::kContinue;
  }
  if (out && !held_.empty() && out->inject(engine::Direction::kDownstreamToUpstream, bytes_of(held_)) != 0) {
    return FilterStatus::kReset;
  }
  held_.clear();
  if (out && out->forward(consumed) != 0) return FilterStatus::kReset;
  return FilterStatus::kContinue;
}

// Remembers a request head forwarded upstream, for the framing of its
// response and its access log line.
void HttpRequestGuard::note_request(const sniff::HttpRequestHead& head, RouteEditsPtr edits, bool first,
                                    std::string_view head_bytes, std::optional<policy::RetryPlan> retry) {
  // Envoy's route timeout and per-try timeout both run from the end of the
  // request (a request without a body: now; with one: its end,
  // request_sent(); a CONNECT/Upgrade tunnel's request never ends).
  const bool tunnel = head.is_connect || !head.upgrade.empty();
  const bool body = head.chunked || head.content_length.value_or(0) > 0;
  const int64_t route_ns = edits && edits->timeout.count() > 0 && !tunnel
                               ? static_cast<int64_t>(edits->timeout.count()) * 1'000'000
                               : 0;
  int64_t deadline = route_ns > 0 && !body ? monotonic_ns() + route_ns : INT64_MAX;
  // A first request that waited in the cluster's queue for a connection
  // slot (maxConnections) ended before it waited: its time ran meanwhile.
  if (first && info_->first_attempt == 1 && deadline != INT64_MAX) deadline -= info_->queued_ns;
  Outstanding r{head.method == "HEAD", head.is_connect, !head.keep_alive, head.head_length, 0,
                std::move(edits), deadline};
  r.route_timeout_ns = route_ns;
  r.first = first;
  r.attempt = first ? info_->first_attempt : 1;
  r.request_token = std::move(info_->request_token);
  // A retry's maxRetries count goes with it from here on a ready upstream;
  // on one still connecting it stays with the connection until the upstream
  // is ready (a connect-failure retry meanwhile replaces it: one per request).
  if (r.attempt > 1 && upstream_ready_) r.retry_token = std::move(info_->retry_token);
  if (!first) r.retry = std::move(retry);
  // A retry keeps the route deadline of its first try (Envoy's route
  // timeout spans the retries).
  if (r.attempt > 1) r.deadline_ns = info_->retry_deadline_ns;
  if (first) info_->connect_deadline_ns = r.deadline_ns;
  // The client's last request (it said so, or the proxy drains): nothing
  // after it is forwarded, as Envoy reads no request after it.
  if (draining_) r.close_after = true;
  if (r.close_after) close_requested_ = true;
  outstanding_.push_back(std::move(r));
  // At max_requests_ this is the upstream connection's last request
  // (spent(): Envoy closes it after its response): it is let go then
  // (response_done: kRelease), or the client's next request, if it comes
  // first, moves to another upstream connection (on_later_head); the
  // client's own connection goes on (so it is not told to close, as for an
  // upstream that says it will).
  ++upstream_requests_;
  // Kept as received while it may have to go again: a lone request (not
  // pipelined behind another) whose route retries responses.
  const policy::RetryPlan* rp = retry_policy(outstanding_.back());
  if (rp && rp->per_try_timeout.count() > 0 && !tunnel) {
    Outstanding& o = outstanding_.back();
    o.try_timeout_ns = static_cast<int64_t>(rp->per_try_timeout.count()) * 1'000'000;
    o.sent = !body;
    start_try(o, monotonic_ns());
  }
  // (Before its upstream is ready a failed TLS handshake may retry it too.)
  replay_ok_ = outstanding_.size() == 1 && rp && (rp->retries_responses() || (rp->retries_connect() && !upstream_ready_)) &&
               outstanding_.back().attempt < rp->attempts &&
               !head.is_connect && head.upgrade.empty() && held_.size() + head_bytes.size() <= kMaxReplayBytes;
  replay_done_ = false;
  replay_.clear();
  if (replay_ok_) {
    replay_.append(held_);
    replay_.append(head_bytes);
  }
}

void HttpRequestGuard::request_sent(FilterOutput* out) {
  if (outstanding_.empty()) return;
  Outstanding& o = outstanding_.back();
  const int64_t now = monotonic_ns();
  bool started = false;
  if (o.route_timeout_ns > 0 && o.deadline_ns == INT64_MAX) {
    o.deadline_ns = now + o.route_timeout_ns;
    if (o.first) info_->connect_deadline_ns = o.deadline_ns;
    started = true;
  }
  o.sent = true;
  started = start_try(o, now) || started;
  if (started && out && outstanding_.size() == 1) arm_timer(*out);
}

// A try's clock starts once its request is sent whole and its upstream
// connection is ready (Envoy's per-try timer: at the later of the request's
// end and "pool ready"); once.
bool HttpRequestGuard::start_try(Outstanding& o, int64_t now) const {
  if (o.try_timeout_ns == 0 || !o.sent || !upstream_ready_ || o.try_deadline_ns != INT64_MAX) return false;
  o.try_deadline_ns = now + o.try_timeout_ns;
  return true;
}

// Envoy starts a try's timer when its request has ended and the upstream
// connection is ready ("pool ready"), whichever is later: the clocks of the
// requests sent whole before this connection was up (connected, TLS
// handshake done) start now, so a slow connect does not eat a try's budget
// (nor fires it mid-handshake). The route timeout runs from the request's
// end regardless.
void HttpRequestGuard::on_upstream_ready(FilterOutput& out) {
  // Ready for requests (connected, TLS done): no longer pending (Envoy's
  // http1MaxPendingRequests).
  info_->connect_token.reset();
  // The maxRetries count of the request this connection was made for (a
  // response retry's, or a connect-failure retry's that replaced it) goes
  // with that request to its end.
  if (info_->retry_token && !outstanding_.empty()) outstanding_.front().retry_token = std::move(info_->retry_token);
  if (upstream_ready_) return;
  upstream_ready_ = true;
  // Its connect-failure retries were tries of the request this connection
  // was made for: a response retry has only the rest (Envoy counts both).
  if (!outstanding_.empty() && outstanding_.front().first) {
    Outstanding& o = outstanding_.front();
    o.attempt += info_->connect_retries;
    // Not kept for a replay with no try left (as note_request would have
    // decided with this count), nor, the connection being up, for a policy
    // that retries no response.
    const policy::RetryPlan* rp = retry_policy(o);
    if (replay_ok_ && (!rp || o.attempt >= rp->attempts || !rp->retries_responses())) {
      replay_ok_ = false;
      replay_.clear();
    }
  }
  const int64_t now = monotonic_ns();
  if (upstream_born_ns_ == 0) upstream_born_ns_ = now;
  bool started = false;
  for (Outstanding& o : outstanding_) started = start_try(o, now) || started;
  if (started) arm_timer(out);
}

// The engine's timer follows the oldest outstanding request's deadline
// (responses come in order).
void HttpRequestGuard::arm_timer(FilterOutput& out) {
  // Nothing under way: the upstream's maxConnectionDuration, if any, is
  // the deadline (an idle client's upstream is let go then).
  const int64_t deadline = !outstanding_.empty() ? outstanding_.front().next_deadline() : age_deadline_ns();
  if (deadline == INT64_MAX) {
    if (timer_armed_) out.set_timer(std::chrono::milliseconds(0));
    timer_armed_ = false;
    return;
  }
  const int64_t left = deadline - monotonic_ns();
  out.set_timer(std::chrono::milliseconds(std::max<int64_t>(1, (left + 999'999) / 1'000'000)));
  timer_armed_ = true;
}

// Envoy's route timeout: the response did not end in time. Before any of it
// reached the client: 504 "upstream request timeout" (flag UT) and the
// connection closes (the upstream one is not reused); after: reset. A try's
// own deadline (perTryTimeout) that passes first is retried when the
// policy retries resets and nothing of the response reached the client;
// otherwise it ends the request the same way.
FilterStatus HttpRequestGuard::timer(FilterOutput& out) {
  timer_armed_ = false;
  if (outstanding_.empty()) {
    // The upstream reached its maxConnectionDuration while the client is
    // idle between requests: let go now (closed, being too old to park),
    // as Envoy closes a drained connection with nothing under way; the
    // client's connection goes on undecided.
    if (age_deadline_ns() == INT64_MAX) return FilterStatus::kContinue;
    if (!spent()) {
      arm_timer(out);
      return FilterStatus::kContinue;
    }
    if (!discard_ && reusable_ && !close_requested_ && state_ == State::kHead && at_boundary() && !deferred_) {
      return let_upstream_go();
    }
    return FilterStatus::kContinue;
  }
  const int64_t now = monotonic_ns();
  if (outstanding_.front().next_deadline() > now) {
    arm_timer(out);
    return FilterStatus::kContinue;
  }
  if (outstanding_.front().deadline_ns > now) {
    Outstanding& r = outstanding_.front();
    // The try ran out, not the route: once the response has reached the
    // client Envoy ignores a per-try timeout (it can no longer retry), and
    // the route timeout alone governs.
    // Nor once its response is being dropped for a retry already decided
    // (Envoy resets that try then: its timer is gone).
    if (r.bytes_out > 0 || response_state_ == ResponseState::kBody || response_state_ == ResponseState::kOpaque ||
        retrying_) {
      r.try_deadline_ns = INT64_MAX;
      arm_timer(out);
      return FilterStatus::kContinue;
    }
    const policy::RetryPlan* rp = retry_policy(r);
    if (rp && rp->retries_reset()) {
      if (r.attempt < rp->attempts && (retrying_ || (can_retry() && retry_allowed(r)))) {
        reusable_ = false;  // its response is still due on that connection
        return retry_now(504);
      }
      r.retry_exhausted = true;
    }
  }
  const Outstanding late = outstanding_.front();
  outstanding_.clear();
  reusable_ = false;
  state_ = State::kStopped;
  // A retry that was under way is off (the client is answered now).
  retrying_ = false;
  info_->retry_token.reset();
  // No longer waiting for a connection (http1MaxPendingRequests): given
  // back now, not when the client's connection closes after the reply.
  if (!upstream_ready_) info_->connect_token.reset();
  behind_retry_.clear();
  // Outlier detection: a timed-out request counts as a 504, as in Envoy
  // (unless its response had begun: that status was counted). A retriable
  // response being dropped for a retry counts as itself (the retry that
  // would have reported it does not happen). Not one still connecting (or
  // in its TLS handshake): no host had it yet, as in Envoy, whose upstream
  // request has no host before "pool ready".
  if (response_state_ == ResponseState::kHead && upstream_ready_) info_->report_response(504);
  if (response_state_ == ResponseState::kDiscard) info_->report_response(retry_status_);
  const std::string flags = late.flags_with_retry("UT");
  // Nothing of a dropped response reached the client: it still gets the 504.
  const bool started = response_state_ != ResponseState::kHead && response_state_ != ResponseState::kDiscard;
  if (late.bytes_out > 0 || started) {
    info_->complete_request(response_status_, late.bytes_in, late.bytes_out, flags, "upstream_response_timeout");
    return FilterStatus::kReset;
  }
  const std::string reply = local_reply(504, realtime_ns(), "upstream request timeout");
  out.inject(engine::Direction::kUpstreamToDownstream, bytes_of(reply));
  info_->complete_request(504, late.bytes_in, reply.size(), flags, "upstream_response_timeout");
  response_state_ = ResponseState::kOpaque;
  return FilterStatus::kClose;
}

// A response is complete: its request's access log line is written (Envoy
// logs each request when its response ends), and a pooled connection whose
// client asked to close ends here.
FilterStatus HttpRequestGuard::response_done(FilterOutput& out) {
  const Outstanding done = outstanding_.front();
  outstanding_.pop_front();
  // URX: Envoy's "upstream retry limit exceeded" on the response it had to
  // pass on.
  info_->complete_request(response_status_, done.bytes_in, done.bytes_out, done.flags_with_retry(""));
  if (timer_armed_ || (!outstanding_.empty() && outstanding_.front().next_deadline() != INT64_MAX)) arm_timer(out);
  response_parser_->reset();
  response_framer_.reset();
  response_state_ = ResponseState::kHead;
  if (deferred_ && outstanding_.empty()) {
    // A later request answered locally behind pipelined ones: its answer
    // now, in order; then the connection goes on undecided (the upstream
    // let go, parked when it can be) or ends. Kept only if no response
    // before it told the client the connection closes (it would take what
    // follows as unanswered and send it again).
    if (!reusable_) drop_deferred_keep();
    const DeferredAnswer d = std::move(*deferred_);
    deferred_.reset();
    const std::string reply = local_reply(d.status, realtime_ns(), d.body, d.location, d.keeps, d.head);
    if (d.logged && !info_->pending_requests.empty()) info_->pending_requests.back().entry.bytes_sent = reply.size();
    info_->flush_requests();  // its line: the last pending one
    out.inject(engine::Direction::kUpstreamToDownstream, bytes_of(reply));
    if (d.keeps) {
      info_->next_upstream = ConnectionInfo::NextUpstream::kRelease;
      switch_signalled_ = true;
      return FilterStatus::kNewUpstream;
    }
    reusable_ = false;
    return FilterStatus::kClose;
  }
  if (state_ == State::kSwitching && outstanding_.empty() && !switch_signalled_) {
    // A request for another upstream waited for this response.
    switch_signalled_ = true;
    return FilterStatus::kNewUpstream;
  }
  // A mirrored copy is one request: done once its (dropped) response is,
  // the upstream parked for reuse.
  if (discard_ && outstanding_.empty() && state_ == State::kHead) {
    return reusable_ ? FilterStatus::kEndDownstream : FilterStatus::kClose;
  }
  // The upstream carried its last request (maxRequestsPerConnection) and
  // nothing is under way: it is let go now, as Envoy closes it after this
  // response, rather than held until the client's next request; the
  // client's connection goes on undecided. So too under maxConnections: a
  // connection slot is held by a request under way, not by a keep-alive
  // client between requests (Envoy's pool takes the connection back at each
  // response end); its next request is admitted like any other.
  if (!done.close_after && !discard_ && state_ == State::kHead && at_boundary() &&
      (info_->cluster_lease || spent())) {
    return let_upstream_go();
  }
  // Unpooled, the upstream ends a connection the client asked to close;
  // a drain's close is the proxy's own.
  if (!done.close_after || (!pooled_ && !draining_)) {
    // Kept for the client's next request (unless the client said this was
    // its last): its maxConnectionDuration runs.
    if (!done.close_after && outstanding_.empty() && age_deadline_ns() != INT64_MAX) arm_timer(out);
    return FilterStatus::kContinue;
  }
  if (state_ == State::kBody) {
    // The response came before the request's body ended (an early 401 or
    // 413 to an upload): ending the client's connection now would reset
    // it over the unread body, and the client might lose the response.
    // Keep relaying; the client, told "connection: close", closes when done.
    reusable_ = false;
    return FilterStatus::kContinue;
  }
  return reusable_ ? FilterStatus::kEndDownstream : FilterStatus::kClose;
}

// After the response to the client's last request (or the last one due
// before another upstream): bytes that follow were never asked for.
static FilterStatus after_last(FilterStatus st, std::string_view rest, FilterOutput& out, bool* reusable) {
  if (st == FilterStatus::kContinue || rest.empty()) return st;
  out.skip(rest.size());
  *reusable = false;
  return st == FilterStatus::kNewUpstream ? st : FilterStatus::kClose;
}

// Frames each response so the guard knows where it ends (its log line, and
// whether a pooled upstream can be reused); pooled, its head is rebuilt for
// the downstream hop, else relayed as received.
FilterStatus HttpRequestGuard::on_response(std::span<const uint8_t> chunk, FilterOutput& out) {
  std::string_view rest(reinterpret_cast<const char*>(chunk.data()), chunk.size());
  while (!rest.empty()) {
    switch (response_state_) {
      case ResponseState::kOpaque:
        return out.forward(rest.size()) == 0 ? FilterStatus::kContinue : FilterStatus::kReset;
      case ResponseState::kDiscard: {
        // The response being retried: read to its end (the upstream may then
        // be reused), never shown to the client.
        const sniff::BodyFeedResult r = response_framer_->feed(rest);
        if (r.status == sniff::BodyStatus::kInvalid) {
          reusable_ = false;
          out.skip(rest.size());
          return retry_now(retry_status_);
        }
        out.skip(r.consumed);
        rest.remove_prefix(r.consumed);
        if (r.status == sniff::BodyStatus::kDone) {
          if (!rest.empty()) {
            reusable_ = false;
            out.skip(rest.size());
          }
          return retry_now(retry_status_);
        }
        if (r.consumed == 0) return FilterStatus::kContinue;
        continue;
      }
      case ResponseState::kBody: {
        const sniff::BodyFeedResult r = response_framer_->feed(rest);
        if (r.status == sniff::BodyStatus::kInvalid) {
          // Broken framing from the upstream: relay what comes, share nothing.
          bump(info_->counters->protocol_errors);
          reusable_ = false;
          response_state_ = ResponseState::kOpaque;
          continue;
        }
        if (r.consumed > 0 && out.forward(r.consumed) != 0) return FilterStatus::kReset;
        outstanding_.front().bytes_out += r.consumed;
        rest.remove_prefix(r.consumed);
        if (r.status != sniff::BodyStatus::kDone) {
          if (r.consumed == 0) return FilterStatus::kContinue;
          continue;
        }
        const FilterStatus st = response_done(out);
        if (st != FilterStatus::kContinue) return after_last(st, rest, out, &reusable_);
        continue;
      }
      case ResponseState::kHead: {
        if (outstanding_.empty()) {
          // Bytes no request asked for: relay them, share nothing.
          reusable_ = false;
          response_state_ = ResponseState::kOpaque;
          continue;
        }
        const sniff::HttpResponseParser::FeedResult r = response_parser_->feed(rest);
        const bool edited = outstanding_.front().edits && !outstanding_.front().edits->response.empty();
        if (r.status == sniff::HttpParseStatus::kNeedMore) {
          // Pooled or edited, the head may be rebuilt: the parser keeps the
          // partial head meanwhile. A response that may be retried is held
          // back until its status is known.
          if (pooled_ || edited) {
            out.skip(r.consumed);
          } else if (can_retry()) {
            response_prefix_.append(rest.substr(0, r.consumed));
            out.skip(r.consumed);
          } else {
            // Relayed as it comes: the client has part of a response now
            // (after what was held while a retry was possible).
            if (!flush_response_prefix(out)) return FilterStatus::kReset;
            if (out.forward(r.consumed) != 0) return FilterStatus::kReset;
            outstanding_.front().bytes_out += r.consumed;
          }
          rest.remove_prefix(r.consumed);
          if (r.consumed == 0) return FilterStatus::kContinue;
          continue;
        }
        if (r.status != sniff::HttpParseStatus::kDone) {
          bump(info_->counters->protocol_errors);
          reusable_ = false;
          if (!pooled_) {
            // Relayed as it comes (what was held back while a retry was
            // possible first): what the client gets is what the upstream sent.
            if (!flush_response_prefix(out)) return FilterStatus::kReset;
            response_state_ = ResponseState::kOpaque;
            continue;
          }
          // Envoy's answer to a malformed upstream response: 502.
          out.skip(rest.size());
          if (!response_seen_) {
            response_seen_ = true;
            info_->first_response_code = 502;
            const std::string reply = local_reply(502, realtime_ns(), "upstream sent an invalid HTTP response");
            out.inject(engine::Direction::kUpstreamToDownstream, bytes_of(reply));
          }
          return FilterStatus::kClose;
        }
        const sniff::HttpResponseHead& h = response_parser_->head();
        Outstanding& req = outstanding_.front();
        if (h.status >= 200 || h.status == 101) {
          // A retry is no longer under way once its response head is in
          // (retry_allowed gives it back too, before a new decision).
          req.retry_token.reset();
          const policy::RetryPlan* rp = retry_policy(req);
          if (rp && h.status != 101 && rp->retries_status(static_cast<uint32_t>(h.status))) {
            if (can_retry() && req.attempt < rp->attempts && retry_allowed(req)) {
              // Route retries (Istio's default: 503, twice): this response
              // is dropped and the request goes to another endpoint.
              out.skip(r.consumed);
              rest.remove_prefix(r.consumed);
              response_prefix_.clear();
              retrying_ = true;
              retry_status_ = static_cast<uint32_t>(h.status);
              response_framer_.emplace(h, req.head, req.connect);
              const sniff::ResponseBodyKind kind = response_framer_->kind();
              if (!response_framer_->reusable_after() || kind == sniff::ResponseBodyKind::kTunnel ||
                  kind == sniff::ResponseBodyKind::kUntilClose) {
                reusable_ = false;
                out.skip(rest.size());
                return retry_now(retry_status_);
              }
              response_state_ = ResponseState::kDiscard;
              if (response_framer_->status() == sniff::BodyStatus::kDone) {
                if (!rest.empty()) {
                  reusable_ = false;
                  out.skip(rest.size());
                }
                return retry_now(retry_status_);
              }
              continue;
            }
            req.retry_exhausted = true;
          }
        }
        if (!response_seen_) {
          response_seen_ = true;
          info_->first_response_code = h.status;
        }
        response_status_ = h.status;
        const bool interim = h.status < 200 && h.status != 101;
        if (!interim) info_->report_response(h.status);
        if (!interim) {
          response_framer_.emplace(h, req.head, req.connect);
          if (!response_framer_->reusable_after()) reusable_ = false;
        }
        // The client hears "connection: close" when its connection ends
        // after this response: it asked, or the upstream's will close (a
        // body delimited by the close included; not for a tunnel).
        const bool ends = !interim && response_framer_->kind() != sniff::ResponseBodyKind::kTunnel &&
                          (req.close_after || !reusable_);
        // Pooled, a head goes as received when it has nothing hop-by-hop
        // but "Connection: keep-alive" and the client's connection stays.
        const bool whole = r.consumed == h.head_length;  // nothing of it skipped before
        // Draining, an unpooled response closes too: its head is rebuilt to
        // say so when none of it has reached the client yet.
        const bool drain_close = draining_ && ends && response_prefix_.size() + r.consumed == h.head_length;
        const bool rebuild = edited || drain_close ||
                             (pooled_ && (!whole || ends || h.status == 101 ||
                                          sniff::has_hop_by_hop_fields(h.headers, /*keep_alive_ok=*/true)));
        if (rebuild) {
          sniff::HeadRewrite rw;
          if (edited) {
            const RouteEdits* e = req.edits.get();
            rw.edit_fields = [e](std::vector<std::pair<std::string, std::string>>& f) {
              policy::apply_header_edits(e->response, f);
            };
          }
          const std::string rebuilt = sniff::rebuild_response_head(h, ends, rw);
          out.skip(r.consumed);
          if (out.inject(engine::Direction::kUpstreamToDownstream, bytes_of(rebuilt)) != 0) return FilterStatus::kReset;
          req.bytes_out += rebuilt.size();
        } else {
          // Held back while a retry was possible: it goes now, as received.
          if (!flush_response_prefix(out)) return FilterStatus::kReset;
          if (out.forward(r.consumed) != 0) return FilterStatus::kReset;
          req.bytes_out += r.consumed;  // the earlier part was counted as it went
        }
        response_prefix_.clear();
        rest.remove_prefix(r.consumed);
        if (interim) {
          response_parser_->reset();  // the final response follows
          continue;
        }
        const sniff::ResponseBodyKind kind = response_framer_->kind();
        if (kind == sniff::ResponseBodyKind::kTunnel || kind == sniff::ResponseBodyKind::kUntilClose) {
          response_state_ = ResponseState::kOpaque;
          continue;
        }
        response_state_ = ResponseState::kBody;
        if (response_framer_->status() == sniff::BodyStatus::kDone) {
          const FilterStatus st = response_done(out);
          if (st != FilterStatus::kContinue) return after_last(st, rest, out, &reusable_);
        }
        continue;
      }
    }
  }
  return FilterStatus::kContinue;
}

FilterStatus HttpRequestGuard::on_data(engine::Direction dir, std::span<const uint8_t> chunk, FilterOutput& out) {
  if (dir == engine::Direction::kUpstreamToDownstream) {
    if (!discard_) return on_response(chunk, out);
    DiscardDownstream d(out);
    return on_response(chunk, d);
  }
  return advance(chunk, &out);
}

FilterStatus HttpRequestGuard::on_later_head(const sniff::HttpRequestHead& head, FilterOutput& out) {
  bump(info_->counters->http_requests);
  ++info_->requests;
  AccessLogEntry e = request_entry(*info_, head);
  e.upstream_host = info_->upstream_host;
  LaterRequest verdict;
  if (info_->check_later) verdict = info_->check_later(head, e);
  else verdict.kind = LaterRequest::Kind::kClose;
  // The upstream carried its last request (maxRequestsPerConnection): the
  // same upstream, but a new connection to it.
  if (verdict.kind == LaterRequest::Kind::kForward && spent()) verdict.kind = LaterRequest::Kind::kSwitch;
  if (verdict.kind == LaterRequest::Kind::kForward) {
    // Logged when its response ends (ConnectionInfo::complete_request).
    info_->pending_requests.push_back({std::move(e), false});
    later_edits_ = std::move(verdict.edits);
    return FilterStatus::kContinue;
  }
  if (verdict.kind == LaterRequest::Kind::kSwitch) {
    // Logged when its response (from the next upstream) ends.
    e.upstream_host.clear();
    info_->pending_requests.push_back({std::move(e), false});
    return FilterStatus::kNewUpstream;
  }
  if (verdict.kind == LaterRequest::Kind::kLocalReply) {
    // Answered here. The connection goes on after a complete request's
    // local reply (Envoy keeps it) and the next request is decided afresh;
    // else it ends after the answer.
    const bool keep = !close_requested_ && !draining_ && local_reply_keeps_connection(head);
    e.upstream_host.clear();
    e.bytes_received = head.head_length;
    if (!outstanding_.empty()) {
      // Responses to earlier (pipelined) requests are still due: the answer
      // follows them (response_done, where it is made: whether it keeps the
      // connection is known then). Kept, what the client sends after it
      // waits (the caller holds it) and the upstream is let go after the
      // answer (kRelease): the handler decides it afresh; else the
      // connection ends (the caller stops reading requests but keeps
      // relaying the responses). Its line waits behind theirs (written at
      // the close if they never end).
      deferred_ = DeferredAnswer{static_cast<int>(verdict.status), std::move(verdict.body),
                                 std::move(verdict.location), head.method == "HEAD", keep, /*logged=*/true};
      info_->pending_requests.push_back({std::move(e), false});
      return FilterStatus::kClose;
    }
    std::string reply = local_reply(static_cast<int>(verdict.status), realtime_ns(), verdict.body, verdict.location,
                                    keep, head.method == "HEAD");
    e.bytes_sent = reply.size();
    info_->flush_requests();
    info_->log_entry(e);
    if (out.inject(engine::Direction::kUpstreamToDownstream, bytes_of(reply)) != 0) return FilterStatus::kReset;
    if (!keep) return FilterStatus::kClose;
    answered_ = true;
    return FilterStatus::kContinue;
  }
  // Blackholed (kClose): the connection ends here, the requests before this
  // one logged first.
  info_->flush_requests();
  e.upstream_host.clear();
  info_->log_entry(e);
  return FilterStatus::kClose;
}

// Keeps `rest` in `into` (up to kMaxHeldBytes; more resets the connection).
FilterStatus HttpRequestGuard::hold_back(std::string& into, std::string_view rest, FilterOutput& out) {
  if (into.size() + rest.size() > kMaxHeldBytes) {
    bump(info_->counters->protocol_errors);
    return FilterStatus::kReset;
  }
  into.append(rest);
  out.skip(rest.size());
  return FilterStatus::kContinue;
}

// Walks `chunk` through the framing. With `out` null (the handler's first
// bytes) nothing is output, the walk stops at a later request's head (it is
// decided in on_start: rerun_) and a malformed body sets first_ok_ = false.
// Retrying or switching (never in that first walk) the bytes are held.

FilterStatus HttpRequestGuard::advance(std::span<const uint8_t> chunk, FilterOutput* out) {
  std::string_view rest(reinterpret_cast<const char*>(chunk.data()), chunk.size());
  auto forward = [&](size_t n) { return out ? out->forward(n) : 0; };
  // The request is about to go again: what the client sends meanwhile
  // waits, unread, to follow it (deciding a request now would let it
  // overtake the retried one).
  if (retrying_ && !rest.empty()) return hold_back(behind_retry_, rest, *out);
  while (!rest.empty()) {
    switch (state_) {
      case State::kStopped:
        if (out) out->skip(rest.size());
        return deferred_ ? FilterStatus::kContinue : FilterStatus::kClose;
      case State::kSwitching:
        if (deferred_ && deferred_->keeps && held_.size() + rest.size() > kMaxHeldBytes) {
          // Too much behind a kept answer to hold: the connection ends after
          // it instead (what follows is not read on).
          drop_deferred_keep();
          if (out) out->skip(rest.size());
          return FilterStatus::kContinue;
        }
        // Everything after a request for the next upstream waits for it.
        return hold_back(held_, rest, *out);
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
        if (!mirror_body_.empty()) mirror_body_.feed(rest.substr(0, r.consumed), info_->counters);
        if (!outstanding_.empty()) outstanding_.back().bytes_in += r.consumed;
        if (replay_ok_) {
          if (replay_.size() + r.consumed > kMaxReplayBytes) {
            replay_ok_ = false;  // too long to keep: not retried
            replay_.clear();
          } else {
            replay_.append(rest.substr(0, r.consumed));
          }
        }
        rest.remove_prefix(r.consumed);
        if (r.status == sniff::BodyStatus::kDone) {
          if (!mirror_body_.empty()) mirror_end(/*cut=*/false);
          request_sent(out);
          if (out && draining_ && close_requested_ && outstanding_.empty()) {
            // Draining, an upload whose response came (and went) before its
            // body ended: the connection ends now rather than wait idle for
            // the deadline (kClose: the body's tail, still queued, reaches
            // the upstream first).
            if (!rest.empty()) out->skip(rest.size());
            return FilterStatus::kClose;
          }
          replay_done_ = true;
          framer_.reset();
          state_ = tunnel_after_body_ ? State::kOpaque : State::kHead;
          parser_.reset();
          first_head_ = false;
          // A mirrored copy answered before its body was all sent (an
          // early 401 or 413 to a streamed upload): done now.
          if (out && discard_ && outstanding_.empty() && state_ == State::kHead) {
            if (!rest.empty()) out->skip(rest.size());
            return reusable_ ? FilterStatus::kEndDownstream : FilterStatus::kClose;
          }
        } else if (r.consumed == 0) {
          return FilterStatus::kContinue;
        }
        break;
      }
      case State::kHead: {
        if (out == nullptr && !first_head_) {
          // The handler's bytes go on with a later request (or its start):
          // it is decided in on_start with output at hand, so all of them
          // go through on_start rather than upstream as they were read.
          rerun_ = true;
          return FilterStatus::kContinue;
        }
        if (close_requested_) {
          // The client said its last request was the last: nothing after it
          // is forwarded.
          if (out) out->skip(rest.size());
          return FilterStatus::kContinue;
        }
        sniff::HttpRequestParser::FeedResult r = parser_.feed(rest);
        if (r.status == sniff::HttpParseStatus::kNeedMore) {
          // Hold the partial head until it is complete and decided.
          if (!first_head_ || takes_held_bytes()) held_.append(rest.substr(0, r.consumed));
          else if (forward(r.consumed) != 0) return FilterStatus::kReset;
          rest.remove_prefix(r.consumed);
          if (r.consumed == 0) return FilterStatus::kContinue;
          break;
        }
        if (r.status != sniff::HttpParseStatus::kDone) {
          // Not HTTP or malformed after a valid first request: stop here.
          bump(info_->counters->protocol_errors);
          if (out == nullptr) {
            // The first head (the handler parsed it already: not expected).
            first_ok_ = false;
            return FilterStatus::kClose;
          }
          state_ = State::kStopped;
          const int status = parser_.error().status ? parser_.error().status : 400;
          out->skip(rest.size());
          if (!outstanding_.empty()) {
            // Responses to earlier requests are due: the 400 follows them.
            deferred_ = DeferredAnswer{status, {}, {}, false, /*keeps=*/false, /*logged=*/false};
            return FilterStatus::kContinue;
          }
          std::string reply = local_reply(status, realtime_ns());
          out->inject(engine::Direction::kUpstreamToDownstream, bytes_of(reply));
          return FilterStatus::kClose;
        }
        const sniff::HttpRequestHead& head = parser_.head();
        if (first_head_) {
          // The request the connection was decided on: already logged.
          note_request(head, first_edits_, /*first=*/true, rest.substr(0, r.consumed));
          if (out && !mirror_first_.empty()) mirror_take(mirror_first_.take());
          if (out && outstanding_.size() == 1 && outstanding_.front().next_deadline() != INT64_MAX) arm_timer(*out);
          if (takes_held_bytes()) {
            if (forward_head(head, r.consumed, out, first_edits_.get()) != FilterStatus::kContinue) {
              return FilterStatus::kReset;
            }
          } else if (forward(r.consumed) != 0) {
            return FilterStatus::kReset;
          }
        } else {
          FilterStatus st = on_later_head(head, *out);
          if (std::exchange(answered_, false)) {
            // Answered locally, the connection kept: on to the next request
            // (nothing of this one, its head's earlier part included, goes).
            held_.clear();
            out->skip(r.consumed);
            rest.remove_prefix(r.consumed);
            parser_.reset();
            break;
          }
          // Forwarded here: its body goes to its copy too. (Moving to another
          // upstream, the sink waits for the guard built there.)
          if (st == FilterStatus::kContinue && !info_->mirror_sinks.empty()) {
            mirror_take(info_->mirror_sinks.take());
          }
          if (st == FilterStatus::kNewUpstream) {
            // For another upstream (its log entry is pending already).
            return hold_for_switch(rest, *out);
          }
          if (st != FilterStatus::kContinue) {
            if (deferred_ && deferred_->keeps) {
              // Answered after the responses due before it, the connection
              // kept: what follows waits for the handler's next decision
              // (nothing of this request goes).
              out->skip(r.consumed);
              rest.remove_prefix(r.consumed);
              held_.clear();
              held_.append(rest);
              out->skip(rest.size());
              state_ = State::kSwitching;
              return FilterStatus::kContinue;
            }
            state_ = State::kStopped;
            out->skip(rest.size());
            // An answer waiting for earlier responses: they are relayed first.
            return deferred_ ? FilterStatus::kContinue : st;
          }
          RouteEditsPtr edits = std::move(later_edits_);
          later_edits_.reset();
          // Its retry policy: from its plan (later_plan, just decided).
          std::optional<policy::RetryPlan> retry;
          if (info_->later_plan) retry = info_->later_plan->forward.retry;
          note_request(head, edits, /*first=*/false, rest.substr(0, r.consumed), std::move(retry));
          if (outstanding_.size() == 1 && outstanding_.front().next_deadline() != INT64_MAX) arm_timer(*out);
          if (pooled_ || edits) {
            if (forward_head(head, r.consumed, out, edits.get()) != FilterStatus::kContinue) return FilterStatus::kReset;
          } else {
            held_.append(rest.substr(0, r.consumed));
            if (out->inject(engine::Direction::kDownstreamToUpstream, bytes_of(held_)) != 0) return FilterStatus::kReset;
            out->skip(r.consumed);
            held_.clear();
          }
        }
        rest.remove_prefix(r.consumed);
        tunnel_after_body_ = head.is_connect || !head.upgrade.empty();
        framer_.emplace(head);
        state_ = State::kBody;
        if (framer_->status() == sniff::BodyStatus::kDone) {
          replay_done_ = true;
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
