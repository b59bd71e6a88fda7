#include "ctl/status.h"

namespace sluice::ctl {

namespace {

using nlohmann::json;

std::string trim_body(const std::string& body) {
  std::string s = body.substr(0, 200);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

ProxyStatus probe_proxy(const StatusOptions& o) {
  ProxyStatus p;
  p.admin = o.admin.text;
  HttpResponse ready = http_get(o.admin, "/ready", o.timeout);
  if (!ready.ok()) {
    p.error = ready.error;
    if (p.error.find("Connection refused") != std::string::npos) {
      p.error += " (is sluice-proxy running with --admin-port " + std::to_string(o.admin.port) + "?)";
    }
    return p;
  }
  p.ready_status = ready.status;
  p.state = trim_body(ready.body);
  HttpResponse dump = http_get(o.admin, "/config_dump", o.timeout);
  if (!dump.ok()) {
    p.config_error = dump.error;
  } else if (dump.status != 200) {
    p.config_error = "/config_dump answered " + std::to_string(dump.status) + ": " + trim_body(dump.body);
  } else {
    json j = json::parse(dump.body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      p.config_error = "/config_dump is not a JSON object";
    } else {
      p.config_dump = std::move(j);
    }
  }
  return p;
}

// Reads fields defensively: the proxy may be another version.
std::string str_field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_null()) return {};
  return it->dump();
}

std::vector<std::string> list_field(const json& j, const char* key) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || !it->is_array()) return out;
  for (const auto& v : *it) out.push_back(v.is_string() ? v.get<std::string>() : v.dump());
  return out;
}

std::string join(const std::vector<std::string>& items, const char* sep = ", ") {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

json pins_json(const PinReport& r) {
  json j;
  j["pin_dir"] = r.pin_dir;
  j["error"] = r.error.empty() ? json(nullptr) : json(r.error);
  j["cgroup2_mount"] = r.cgroup2_mount.empty() ? json(nullptr) : json(r.cgroup2_mount);
  j["objects"] = json::array();
  for (const PinnedObject& o : r.objects) {
    json oj = {{"name", o.name}, {"kind", o.kind}, {"detail", o.detail}};
    oj["error"] = o.error.empty() ? json(nullptr) : json(o.error);
    if (o.cgroup_id) {
      oj["cgroup_id"] = *o.cgroup_id;
      oj["cgroup_path"] = o.cgroup_path.empty() ? json(nullptr) : json(o.cgroup_path);
      oj["attach_type"] = o.attach_type;
    }
    j["objects"].push_back(std::move(oj));
  }
  return j;
}

json certs_json(const CertReport& r) {
  json j;
  j["dir"] = r.dir;
  j["error"] = r.error.empty() ? json(nullptr) : json(r.error);
  j["certificates"] = json::array();
  for (const CertificateInfo& c : r.certificates) {
    json cj;
    cj["file"] = c.file;
    if (!c.error.empty()) {
      cj["error"] = c.error;
    } else {
      cj["subject"] = c.subject;
      cj["uri_sans"] = c.uri_sans;
      cj["not_after"] = c.not_after;
      cj["seconds_left"] = c.seconds_left;
      cj["days_left"] = c.days_left();
      cj["expired"] = c.expired();
    }
    j["certificates"].push_back(std::move(cj));
  }
  if (r.error.empty()) j["key_present"] = r.key_present;
  return j;
}

std::string base_name(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

void write_text(std::ostream& out, const StatusReport& r) {
  const ProxyStatus& p = r.proxy;
  out << "Proxy (admin " << p.admin << "):\n";
  if (!p.error.empty()) {
    out << "  unavailable: " << p.error << "\n";
  } else {
    out << "  ready: " << (p.ready() ? "yes" : "no") << " (/ready answered " << p.ready_status
        << (p.state.empty() ? "" : " " + p.state) << ")\n";
    if (!p.config_error.empty()) {
      out << "  config: unavailable: " << p.config_error << "\n";
    } else if (p.config_dump.is_object()) {
      const json& d = p.config_dump;
      out << "  role: " << str_field(d, "role");
      if (d.contains("generation")) out << "; config generation " << str_field(d, "generation");
      if (d.contains("outbound_traffic_policy")) {
        out << "; outboundTrafficPolicy " << str_field(d, "outbound_traffic_policy");
      }
      out << "\n";
      if (d.contains("summary")) out << "  summary: " << str_field(d, "summary") << "\n";
      if (!d.contains("generation")) out << "  config: none loaded yet\n";
      std::vector<std::string> files = list_field(d, "source_files");
      if (d.contains("source_files")) out << "  source files: " << (files.empty() ? "(none)" : join(files)) << "\n";
      for (const auto& [key, label] : {std::pair{"service_entries", "ServiceEntry"},
                                       std::pair{"virtual_services", "VirtualService"},
                                       std::pair{"destination_rules", "DestinationRule"},
                                       std::pair{"gateways", "Gateway"}}) {
        if (!d.contains(key)) continue;
        std::vector<std::string> names = list_field(d, key);
        out << "  " << label << " (" << names.size() << ")" << (names.empty() ? "" : ": " + join(names)) << "\n";
      }
      if (d.contains("gateway_servers")) {
        std::vector<std::string> servers = list_field(d, "gateway_servers");
        if (!servers.empty()) out << "  gateway servers: " << join(servers, "; ") << "\n";
      }
    }
  }

  const PinReport& pins = r.pins;
  out << "\nAgent pins (" << pins.pin_dir << "):\n";
  if (!pins.error.empty()) {
    out << "  unavailable: " << pins.error << "\n";
  } else if (pins.objects.empty()) {
    out << "  (empty: nothing pinned)\n";
  } else {
    for (const PinnedObject& o : pins.objects) {
      out << "  " << o.kind << " " << o.name << ": ";
      if (!o.error.empty()) {
        out << "unreadable: " << o.error << "\n";
        continue;
      }
      out << o.detail;
      if (o.cgroup_id) {
        out << "; " << o.attach_type << " on cgroup "
            << (o.cgroup_path.empty() ? "id " + std::to_string(*o.cgroup_id) + " (path not found under " +
                                            (pins.cgroup2_mount.empty() ? std::string("any cgroup2 mount")
                                                                        : pins.cgroup2_mount) +
                                            ")"
                                      : o.cgroup_path + " (id " + std::to_string(*o.cgroup_id) + ")");
      }
      out << "\n";
    }
  }

  const CertReport& c = r.certs;
  out << "\nCertificates (" << c.dir << "):\n";
  if (!c.error.empty()) {
    out << "  unavailable: " << c.error << "\n";
  } else {
    for (const CertificateInfo& ci : c.certificates) {
      out << "  " << base_name(ci.file) << ": ";
      if (!ci.error.empty()) {
        out << "unavailable: " << ci.error << "\n";
        continue;
      }
      out << (ci.uri_sans.empty() ? ci.subject : join(ci.uri_sans)) << ", notAfter " << ci.not_after << " ("
          << (ci.expired() ? "EXPIRED " + std::to_string(-ci.days_left()) + " day(s) ago"
                           : std::to_string(ci.days_left()) + " day(s) left")
          << ")\n";
    }
    out << "  key.pem: " << (c.key_present ? "present" : "missing") << "\n";
  }

  out << "\n=> ";
  if (!p.error.empty()) {
    out << "proxy unavailable";
  } else {
    out << (p.ready() ? "proxy ready" : "proxy not ready");
  }
  bool expired = false;
  for (const CertificateInfo& ci : c.certificates) expired = expired || ci.expired();
  if (expired) out << "; a certificate has expired";
  out << " (exit " << r.exit_code() << ")\n";
}

}  // namespace

int StatusReport::exit_code() const {
  if (!proxy.ready()) return 1;
  for (const CertificateInfo& c : certs.certificates) {
    if (c.expired()) return 1;
  }
  return 0;
}

StatusReport collect_status(const StatusOptions& options, std::time_t now) {
  StatusReport r;
  r.proxy = probe_proxy(options);
  r.pins = inspect_pins(options.pin_dir);
  r.certs = inspect_certs(options.certs, now);
  return r;
}

void write_status(std::ostream& out, OutputFormat format, const StatusReport& r) {
  if (format == OutputFormat::kText) {
    write_text(out, r);
    return;
  }
  json j;
  json p;
  p["admin"] = r.proxy.admin;
  p["error"] = r.proxy.error.empty() ? json(nullptr) : json(r.proxy.error);
  p["ready"] = r.proxy.ready();
  p["ready_status"] = r.proxy.ready_status;
  p["state"] = r.proxy.state;
  p["config_dump"] = r.proxy.config_dump;
  p["config_error"] = r.proxy.config_error.empty() ? json(nullptr) : json(r.proxy.config_error);
  j["proxy"] = std::move(p);
  j["pins"] = pins_json(r.pins);
  j["certificates"] = certs_json(r.certs);
  j["exit_code"] = r.exit_code();
  out << j.dump(2) << "\n";
}

}  // namespace sluice::ctl
