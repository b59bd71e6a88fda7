// networking.istio.io VirtualService spec: http, tls and tcp routes.
#include "core/config/base64.h"
#include "core/config/resource_decoders.h"

namespace sluice::config::detail {

namespace {

void decode_string_match_map(const Field& f, std::map<std::string, StringMatch>& out) {
  f.read_map([&](const std::string& name, Field& v) { decode_string_match(v, out[name]); });
}

void decode_http_match(const Field& f, HTTPMatchRequest& m) {
  f.read_object({
      {"name", [&](Field& v) { v.read(m.name); }},
      {"uri", [&](Field& v) { read_optional(v, m.uri, decode_string_match); }},
      {"scheme", [&](Field& v) { read_optional(v, m.scheme, decode_string_match); }},
      {"method", [&](Field& v) { read_optional(v, m.method, decode_string_match); }},
      {"authority", [&](Field& v) { read_optional(v, m.authority, decode_string_match); }},
      {"headers", [&](Field& v) { decode_string_match_map(v, m.headers); }},
      {"withoutHeaders", [&](Field& v) { decode_string_match_map(v, m.without_headers); }},
      {"queryParams", [&](Field& v) { decode_string_match_map(v, m.query_params); }},
      {"ignoreUriCase", [&](Field& v) { v.read(m.ignore_uri_case); }},
      {"port", [&](Field& v) { v.read(m.port); }},
      {"sourceLabels", [&](Field& v) { v.read(m.source_labels); }},
      {"gateways", [&](Field& v) { v.read(m.gateways); }},
      {"sourceNamespace", [&](Field& v) { v.read(m.source_namespace); }},
      // Only names Envoy's stats; no effect on where traffic goes.
      {"statPrefix", ignore_field},
  });
}

void decode_header_operations(const Field& f, HeaderOperations& ops) {
  f.read_object({
      {"set", [&](Field& v) { v.read(ops.set); }},
      {"add", [&](Field& v) { v.read(ops.add); }},
      {"remove", [&](Field& v) { v.read(ops.remove); }},
  });
}

void decode_headers(const Field& f, Headers& h) {
  f.read_object({
      {"request", [&](Field& v) { read_optional(v, h.request, decode_header_operations); }},
      {"response", [&](Field& v) { read_optional(v, h.response, decode_header_operations); }},
  });
}

void decode_http_route_destination(const Field& f, HTTPRouteDestination& d) {
  f.read_object({
      {"destination", [&](Field& v) { decode_destination(v, d.destination); }},
      {"weight", [&](Field& v) { d.weight_set = v.read(d.weight); }},
      {"headers", [&](Field& v) { read_optional(v, d.headers, decode_headers); }},
  });
}

void decode_redirect(const Field& f, HTTPRedirect& r) {
  f.read_object({
      {"uri", [&](Field& v) { v.read(r.uri); }},
      {"authority", [&](Field& v) { v.read(r.authority); }},
      {"port", [&](Field& v) { v.read(r.port); }},
      {"derivePort", warn_unsupported},
      {"scheme", [&](Field& v) { v.read(r.scheme); }},
      {"redirectCode", [&](Field& v) { v.read(r.redirect_code); }},
  });
}

void decode_direct_response(const Field& f, HTTPDirectResponse& r) {
  f.read_object({
      {"status", [&](Field& v) { v.read(r.status); }},
      {"body",
       [&](Field& body) {
         // A oneof of a literal string and base64 bytes, as protobuf JSON
         // encodes `bytes`.
         int set = 0;
         auto once = [&](Field& v) {
           if (++set > 1) {
             v.error("only one of string or bytes may be set");
             return false;
           }
           return true;
         };
         body.read_object({
             {"string",
              [&](Field& v) {
                std::string text;
                if (once(v) && v.read(text)) r.body = std::move(text);
              }},
             {"bytes",
              [&](Field& v) {
                std::string encoded;
                if (!once(v) || !v.read(encoded)) return;
                std::optional<std::string> decoded = decode_base64(encoded);
                if (!decoded) {
                  v.error("body.bytes is not valid base64");
                  return;
                }
                r.body = std::move(*decoded);
              }},
         });
       }},
  });
}

void decode_rewrite(const Field& f, HTTPRewrite& r) {
  f.read_object({
      {"uri", [&](Field& v) { v.read(r.uri); }},
      {"authority", [&](Field& v) { v.read(r.authority); }},
      {"uriRegexRewrite",
       [&](Field& v) {
         read_optional(v, r.uri_regex_rewrite, [](const Field& g, HTTPRewrite::RegexRewrite& rr) {
           g.read_object({
               {"match", [&](Field& x) { x.read(rr.match); }},
               {"rewrite", [&](Field& x) { x.read(rr.rewrite); }},
           });
         });
       }},
  });
}

void decode_retry(const Field& f, HTTPRetry& r) {
  f.read_object({
      {"attempts", [&](Field& v) { v.read(r.attempts); }},
      {"perTryTimeout", [&](Field& v) { v.read_duration(r.per_try_timeout); }},
      {"retryOn", [&](Field& v) { v.read(r.retry_on); }},
      {"retryRemoteLocalities", [&](Field& v) { v.read(r.retry_remote_localities); }},
      {"backoff", [&](Field& v) { v.read_duration(r.backoff); }},
  });
}

void decode_fault(const Field& f, HTTPFaultInjection& fault) {
  f.read_object({
      {"delay",
       [&](Field& v) {
         read_optional(v, fault.delay, [](const Field& d, HTTPFaultInjection::Delay& delay) {
           d.read_object({
               {"fixedDelay", [&](Field& x) { x.read_duration(delay.fixed_delay); }},
               {"percentage",
                [&](Field& x) { read_optional(x, delay.percentage, decode_percent); }},
               {"exponentialDelay", warn_unsupported},
               {"percent", warn_unsupported},
           });
         });
       }},
      {"abort",
       [&](Field& v) {
         read_optional(v, fault.abort, [](const Field& a, HTTPFaultInjection::Abort& abort) {
           a.read_object({
               {"httpStatus", [&](Field& x) { x.read(abort.http_status); }},
               {"percentage",
                [&](Field& x) { read_optional(x, abort.percentage, decode_percent); }},
               {"grpcStatus", warn_unsupported},
               {"http2Error", warn_unsupported},
           });
         });
       }},
  });
}

void decode_http_route(const Field& f, HTTPRoute& r) {
  f.read_object({
      {"name", [&](Field& v) { v.read(r.name); }},
      {"match",
       [&](Field& v) {
         v.read_list([&](Field& item) { decode_http_match(item, r.match.emplace_back()); });
       }},
      {"route",
       [&](Field& v) {
         v.read_list(
             [&](Field& item) { decode_http_route_destination(item, r.route.emplace_back()); });
       }},
      {"redirect", [&](Field& v) { read_optional(v, r.redirect, decode_redirect); }},
      {"directResponse",
       [&](Field& v) { read_optional(v, r.direct_response, decode_direct_response); }},
      {"rewrite", [&](Field& v) { read_optional(v, r.rewrite, decode_rewrite); }},
      {"timeout", [&](Field& v) { v.read_duration(r.timeout); }},
      {"retries", [&](Field& v) { read_optional(v, r.retries, decode_retry); }},
      {"fault", [&](Field& v) { read_optional(v, r.fault, decode_fault); }},
      {"mirror", [&](Field& v) { read_optional(v, r.mirror, decode_destination); }},
      {"mirrorPercentage",
       [&](Field& v) { read_optional(v, r.mirror_percentage, decode_percent); }},
      {"headers", [&](Field& v) { read_optional(v, r.headers, decode_headers); }},
      {"delegate", warn_unsupported},
      {"mirrors",
       [&](Field& v) {
         v.read_list([&](Field& item) {
           HTTPMirrorPolicy& m = r.mirrors.emplace_back();
           item.read_object({
               {"destination", [&](Field& x) { read_optional(x, m.destination, decode_destination); }},
               {"percentage", [&](Field& x) { read_optional(x, m.percentage, decode_percent); }},
           });
         });
       }},
      {"mirrorPercent", [&](Field& v) { read_optional(v, r.mirror_percent, [](const Field& f, uint32_t& out) { f.read(out); }); }},
      {"mirror_percent", [&](Field& v) { read_optional(v, r.mirror_percent, [](const Field& f, uint32_t& out) { f.read(out); }); }},
      {"corsPolicy", warn_unsupported},
  });
}

void decode_route_destination(const Field& f, RouteDestination& d) {
  f.read_object({
      {"destination", [&](Field& v) { decode_destination(v, d.destination); }},
      {"weight", [&](Field& v) { d.weight_set = v.read(d.weight); }},
  });
}

void decode_tls_match(const Field& f, TLSMatchAttributes& m) {
  f.read_object({
      {"sniHosts", [&](Field& v) { v.read(m.sni_hosts); }},
      {"destinationSubnets", [&](Field& v) { v.read(m.destination_subnets); }},
      {"port", [&](Field& v) { v.read(m.port); }},
      {"sourceLabels", [&](Field& v) { v.read(m.source_labels); }},
      {"gateways", [&](Field& v) { v.read(m.gateways); }},
      {"sourceNamespace", [&](Field& v) { v.read(m.source_namespace); }},
  });
}

void decode_l4_match(const Field& f, L4MatchAttributes& m) {
  f.read_object({
      {"destinationSubnets", [&](Field& v) { v.read(m.destination_subnets); }},
      {"port", [&](Field& v) { v.read(m.port); }},
      {"sourceLabels", [&](Field& v) { v.read(m.source_labels); }},
      {"gateways", [&](Field& v) { v.read(m.gateways); }},
      {"sourceNamespace", [&](Field& v) { v.read(m.source_namespace); }},
      {"sourceSubnet", warn_unsupported},
  });
}

template <typename Route, typename Match, typename MatchDecoder>
void decode_l4_route(const Field& f, Route& r, MatchDecoder decode_match) {
  f.read_object({
      {"match",
       [&](Field& v) {
         v.read_list([&](Field& item) { decode_match(item, r.match.emplace_back()); });
       }},
      {"route",
       [&](Field& v) {
         v.read_list([&](Field& item) { decode_route_destination(item, r.route.emplace_back()); });
       }},
  });
}

}  // namespace

void decode_virtual_service_spec(const Field& spec, VirtualService& vs) {
  spec.read_object({
      {"hosts", [&](Field& v) { v.read(vs.hosts); }},
      {"gateways", [&](Field& v) { v.read(vs.gateways); }},
      {"http",
       [&](Field& v) {
         v.read_list([&](Field& item) { decode_http_route(item, vs.http.emplace_back()); });
       }},
      {"tls",
       [&](Field& v) {
         v.read_list([&](Field& item) {
           decode_l4_route<TLSRoute, TLSMatchAttributes>(item, vs.tls.emplace_back(),
                                                         decode_tls_match);
         });
       }},
      {"tcp",
       [&](Field& v) {
         v.read_list([&](Field& item) {
           decode_l4_route<TCPRoute, L4MatchAttributes>(item, vs.tcp.emplace_back(),
                                                        decode_l4_match);
         });
       }},
      {"exportTo", [&](Field& v) { v.read(vs.export_to); }},
  });
}

}  // namespace sluice::config::detail
