#include "ctl/maps.h"

#include "ctl/unique_fd.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "core/decision/ip_address.h"

namespace sluice::ctl {

namespace {

using nlohmann::ordered_json;

// Pin names: the map names in bpf/sluice.bpf.c (libbpf pins a map under its
// name; agent/installation.h describes the layout).
constexpr const char* kConfigMap = "sluice_config";
constexpr const char* kCountersMap = "sluice_counters";
constexpr const char* kInclV4 = "sluice_incl_v4";
constexpr const char* kExclV4 = "sluice_excl_v4";
constexpr const char* kInclV6 = "sluice_incl_v6";
constexpr const char* kExclV6 = "sluice_excl_v6";
constexpr const char* kInclPorts = "sluice_incl_pt";
constexpr const char* kExclPorts = "sluice_excl_pt";

// Indexed by enum sluice_counter.
constexpr std::array<const char*, SLUICE_CTR_COUNT> kCounterNames = [] {
  std::array<const char*, SLUICE_CTR_COUNT> n{};
  n[SLUICE_CTR_INTERCEPTED] = "intercepted";
  n[SLUICE_CTR_EXCLUDED_PORT] = "excluded_port";
  n[SLUICE_CTR_OWN_TRAFFIC] = "own_traffic";
  n[SLUICE_CTR_LOOPBACK] = "loopback";
  n[SLUICE_CTR_EXCLUDED_RANGE] = "excluded_range";
  n[SLUICE_CTR_NOT_INCLUDED] = "not_included";
  n[SLUICE_CTR_ORIGDST_ANSWERED] = "origdst_answered";
  n[SLUICE_CTR_ORIGDST_MISS] = "origdst_miss";
  n[SLUICE_CTR_PROXY_ADDRESS] = "proxy_address";
  n[SLUICE_CTR_NO_PROXY_FAMILY] = "no_proxy_family";
  n[SLUICE_CTR_RECORD_FAILED] = "record_failed";
  n[SLUICE_CTR_TUPLE_FAILED] = "tuple_failed";
  n[SLUICE_CTR_SOCK_ADDED] = "sock_added";
  n[SLUICE_CTR_SOCK_ADD_FAILED] = "sock_add_failed";
  n[SLUICE_CTR_SOCK_SHORTCUT] = "sock_shortcut";
  n[SLUICE_CTR_SOCK_TCP_PATH] = "sock_tcp_path";
  n[SLUICE_CTR_MSG_REDIRECTED] = "msg_redirected";
  n[SLUICE_CTR_SOCK_QUEUE_FULL] = "sock_queue_full";
  return n;
}();
// A counter added to enum sluice_counter without a name here fails the build.
static_assert(std::all_of(kCounterNames.begin(), kCounterNames.end(), [](const char* s) { return s != nullptr; }),
              "every enum sluice_counter value needs a name in kCounterNames");

struct FlagName {
  uint32_t bit;
  const char* name;
};
constexpr FlagName kFlagNames[] = {
    {SLUICE_F_ENABLED, "enabled"},
    {SLUICE_F_PROXY4, "proxy4"},
    {SLUICE_F_PROXY6, "proxy6"},
    {SLUICE_F_INCLUDE_ALL_PORTS, "include_all_ports"},
    {SLUICE_F_EXCLUDE_ALL_PORTS, "exclude_all_ports"},
    {SLUICE_F_MATCH_MARK, "match_mark"},
    {SLUICE_F_MATCH_UID, "match_uid"},
    {SLUICE_F_MATCH_GID, "match_gid"},
    {SLUICE_F_SOCKET_REDIRECT, "socket_redirect"},
};



// Opens a pinned map and checks that it has the type and key/value sizes this
// build decodes: a map pinned by another version of the agent is reported,
// not misread.
std::optional<std::string> open_map(const std::string& pin_dir, const char* name, bpf_map_type type,
                                    size_t key_size, size_t value_size, int& fd_out, bpf_map_info& info) {
  const std::string path = pin_dir + "/" + name;
  const int fd = bpf_obj_get(path.c_str());
  if (fd < 0) {
    const int err = errno;
    std::string why = "bpf_obj_get " + path + ": " + errno_text(err);
    if (err == EPERM || err == EACCES) why += " (reading BPF maps needs root: CAP_BPF and CAP_SYS_ADMIN)";
    return why;
  }
  fd_out = fd;
  info = {};
  __u32 len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return "cannot read the map's info: " + errno_text(errno);
  if (info.type != static_cast<__u32>(type) || info.key_size != key_size || info.value_size != value_size) {
    const char* have = libbpf_bpf_map_type_str(static_cast<bpf_map_type>(info.type));
    std::ostringstream s;
    s << "unexpected layout: " << (have ? have : "unknown type") << ", key " << info.key_size << " B, value "
      << info.value_size << " B; this sluicectl decodes " << libbpf_bpf_map_type_str(type) << ", key " << key_size
      << " B, value " << value_size << " B (pinned by another version of sluice-agent?)";
    return s.str();
  }
  return std::nullopt;
}

template <typename K>
bool key_less(const std::pair<K, sluice_rule_ref>& a, const std::pair<K, sluice_rule_ref>& b) {
  if (a.second.index != b.second.index) return a.second.index < b.second.index;
  return std::memcmp(&a.first, &b.first, sizeof(K)) < 0;
}

// Every entry of a range or port map. The agent may rewrite the maps while we
// walk them (a config reload): a deleted cursor makes get_next_key restart,
// so the walk is bounded and a walk that does not end says so.
template <typename K>
std::optional<std::string> read_entries(const std::string& pin_dir, const char* name, bpf_map_type type,
                                        std::vector<std::pair<K, sluice_rule_ref>>& out) {
  int raw = -1;
  bpf_map_info info{};
  auto err = open_map(pin_dir, name, type, sizeof(K), sizeof(sluice_rule_ref), raw, info);
  Fd fd(raw);
  if (err) return err;
  K cursor{};
  K next{};
  const K* prev = nullptr;
  const size_t limit = static_cast<size_t>(info.max_entries) + 1;
  size_t steps = 0;
  while (bpf_map_get_next_key(fd.get(), prev, &next) == 0) {
    if (++steps > limit) return std::string("the map changed while it was read: run again");
    sluice_rule_ref ref{};
    if (bpf_map_lookup_elem(fd.get(), &next, &ref) == 0) {
      out.emplace_back(next, ref);
    } else if (errno != ENOENT) {  // ENOENT: deleted between the two calls
      return "lookup: " + errno_text(errno);
    }
    cursor = next;
    prev = &cursor;
  }
  if (errno != ENOENT) return "get_next_key: " + errno_text(errno);
  std::sort(out.begin(), out.end(), key_less<K>);
  return std::nullopt;
}

std::optional<std::string> read_config(const std::string& pin_dir, sluice_config& config) {
  int raw = -1;
  bpf_map_info info{};
  auto err = open_map(pin_dir, kConfigMap, BPF_MAP_TYPE_ARRAY, sizeof(__u32), sizeof(sluice_config), raw, info);
  Fd fd(raw);
  if (err) return err;
  const __u32 key = 0;
  if (bpf_map_lookup_elem(fd.get(), &key, &config) != 0) return "lookup of entry 0: " + errno_text(errno);
  return std::nullopt;
}

std::optional<std::string> read_counters(const std::string& pin_dir, unsigned& cpus, std::vector<uint64_t>& sums) {
  const int possible = libbpf_num_possible_cpus();
  if (possible <= 0) return "cannot count the possible CPUs: " + errno_text(-possible);
  int raw = -1;
  bpf_map_info info{};
  auto err = open_map(pin_dir, kCountersMap, BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(__u32), sizeof(__u64), raw, info);
  Fd fd(raw);
  if (err) return err;
  // A per-CPU lookup fills one 8-byte-aligned slot per possible CPU.
  std::vector<uint64_t> per_cpu(static_cast<size_t>(possible));
  std::vector<uint64_t> out(info.max_entries, 0);
  for (__u32 i = 0; i < info.max_entries; ++i) {
    if (bpf_map_lookup_elem(fd.get(), &i, per_cpu.data()) != 0) {
      return "lookup of counter " + std::to_string(i) + ": " + errno_text(errno);
    }
    for (uint64_t v : per_cpu) out[i] += v;
  }
  cpus = static_cast<unsigned>(possible);
  sums = std::move(out);
  return std::nullopt;
}

std::string ip4_text(const __u8 (&bytes)[4]) {
  std::array<uint8_t, 4> a{};
  std::memcpy(a.data(), bytes, 4);
  return decision::IpAddress::v4(a).str();
}

std::string ip6_text(const __u8 (&bytes)[16]) {
  std::array<uint8_t, 16> a{};
  std::memcpy(a.data(), bytes, 16);
  return decision::IpAddress::v6(a).str();
}

struct RangeLine {
  uint32_t index;
  std::string cidr;
};

// v4 and v6 entries of one list in configuration order (the rule index is
// the position in includeIPRanges/excludeIPRanges).
std::vector<RangeLine> merged_ranges(const std::vector<std::pair<sluice_lpm_v4, sluice_rule_ref>>& v4,
                                     const std::vector<std::pair<sluice_lpm_v6, sluice_rule_ref>>& v6) {
  std::vector<RangeLine> lines;
  for (const auto& [k, r] : v4) lines.push_back({r.index, range_text(k)});
  for (const auto& [k, r] : v6) lines.push_back({r.index, range_text(k)});
  std::stable_sort(lines.begin(), lines.end(), [](const RangeLine& a, const RangeLine& b) { return a.index < b.index; });
  return lines;
}

std::vector<std::string> flag_names(uint32_t flags) {
  std::vector<std::string> names;
  for (const FlagName& f : kFlagNames) {
    if (flags & f.bit) names.emplace_back(f.name);
  }
  uint32_t known = 0;
  for (const FlagName& f : kFlagNames) known |= f.bit;
  if (flags & ~known) {
    std::ostringstream s;
    s << "unknown(0x" << std::hex << (flags & ~known) << ")";
    names.push_back(s.str());
  }
  return names;
}

std::string counter_label(size_t i) {
  const char* n = counter_name(static_cast<uint32_t>(i));
  return n ? n : "counter_" + std::to_string(i);
}

ordered_json config_json(const sluice_config& c) {
  ordered_json j;
  j["enabled"] = (c.flags & SLUICE_F_ENABLED) != 0;
  j["flags"] = c.flags;
  j["flag_names"] = flag_names(c.flags);
  j["proxy_ipv4"] = (c.flags & SLUICE_F_PROXY4) ? ordered_json(ip4_text(c.proxy_ip4)) : ordered_json(nullptr);
  j["proxy_port4"] = (c.flags & SLUICE_F_PROXY4) ? ordered_json(c.proxy_port4) : ordered_json(nullptr);
  j["proxy_ipv6"] = (c.flags & SLUICE_F_PROXY6) ? ordered_json(ip6_text(c.proxy_ip6)) : ordered_json(nullptr);
  j["proxy_port6"] = (c.flags & SLUICE_F_PROXY6) ? ordered_json(c.proxy_port6) : ordered_json(nullptr);
  j["mark"] = (c.flags & SLUICE_F_MATCH_MARK) ? ordered_json(c.mark) : ordered_json(nullptr);
  j["uid"] = (c.flags & SLUICE_F_MATCH_UID) ? ordered_json(c.uid) : ordered_json(nullptr);
  j["gid"] = (c.flags & SLUICE_F_MATCH_GID) ? ordered_json(c.gid) : ordered_json(nullptr);
  j["include_all_ports"] = (c.flags & SLUICE_F_INCLUDE_ALL_PORTS) != 0;
  j["exclude_all_ports"] = (c.flags & SLUICE_F_EXCLUDE_ALL_PORTS) != 0;
  j["socket_redirect"] = (c.flags & SLUICE_F_SOCKET_REDIRECT) != 0;
  j["socket_redirect_queue_limit"] =
      (c.flags & SLUICE_F_SOCKET_REDIRECT) ? ordered_json(c.sock_queue_limit) : ordered_json(nullptr);
  return j;
}

ordered_json ranges_json(const std::vector<RangeLine>& lines) {
  ordered_json a = ordered_json::array();
  for (const RangeLine& l : lines) a.push_back({{"cidr", l.cidr}, {"index", l.index}});
  return a;
}

ordered_json ports_json(const std::vector<std::pair<sluice_port_key, sluice_rule_ref>>& ports) {
  ordered_json a = ordered_json::array();
  for (const auto& [k, r] : ports) a.push_back({{"port", k.port}, {"index", r.index}});
  return a;
}

void write_json(std::ostream& out, const MapsReport& r) {
  ordered_json j;
  j["pin_dir"] = r.pin_dir;
  if (!r.error.empty()) {
    j["error"] = r.error;
    out << j.dump(2) << "\n";
    return;
  }
  const decision::MapContents& m = r.contents;
  j["config"] = r.have_config ? config_json(m.config) : ordered_json(nullptr);
  j["include_ranges"] = ranges_json(merged_ranges(m.include_v4, m.include_v6));
  j["exclude_ranges"] = ranges_json(merged_ranges(m.exclude_v4, m.exclude_v6));
  j["include_ports"] = ports_json(m.include_ports);
  j["exclude_ports"] = ports_json(m.exclude_ports);
  if (r.counters.empty()) {
    j["counters"] = nullptr;
  } else {
    ordered_json c = ordered_json::object();
    for (size_t i = 0; i < r.counters.size(); ++i) c[counter_label(i)] = r.counters[i];
    j["counters"] = std::move(c);
    j["possible_cpus"] = r.possible_cpus;
  }
  ordered_json errors = ordered_json::array();
  for (const MapReadError& e : r.map_errors) errors.push_back({{"map", e.map}, {"error", e.error}});
  j["errors"] = std::move(errors);
  out << j.dump(2) << "\n";
}

void write_ranges_text(std::ostream& out, const char* title, const char* maps, const std::vector<RangeLine>& lines) {
  out << title << " (" << maps << "): " << lines.size() << "\n";
  for (const RangeLine& l : lines) out << "  " << std::left << std::setw(44) << l.cidr << " #" << l.index << "\n";
}

void write_ports_text(std::ostream& out, const char* title, const char* map, bool all,
                      const std::vector<std::pair<sluice_port_key, sluice_rule_ref>>& ports) {
  out << title << " (" << map << "): " << ports.size() << (all ? ", and \"*\" (every port)" : "") << "\n";
  for (const auto& [k, r] : ports) out << "  " << std::left << std::setw(44) << k.port << " #" << r.index << "\n";
}

std::string or_none(bool set, const std::string& value) { return set ? value : "none"; }

void write_text(std::ostream& out, const MapsReport& r) {
  if (!r.error.empty()) {
    out << "error: " << r.error << "\n";
    return;
  }
  out << "pin dir: " << r.pin_dir << "\n";
  const decision::MapContents& m = r.contents;
  if (r.have_config) {
    const sluice_config& c = m.config;
    std::string flags;
    for (const std::string& n : flag_names(c.flags)) flags += (flags.empty() ? "" : " ") + n;
    std::ostringstream mark;
    mark << "0x" << std::hex << c.mark << std::dec << " (" << c.mark << ")";
    out << "config (" << kConfigMap << "):\n"
        << "  enabled:     " << ((c.flags & SLUICE_F_ENABLED) ? "yes" : "no (the programs leave every connection alone)")
        << "\n"
        << "  proxy IPv4:  "
        << or_none(c.flags & SLUICE_F_PROXY4, ip4_text(c.proxy_ip4) + ":" + std::to_string(c.proxy_port4)) << "\n"
        << "  proxy IPv6:  "
        << or_none(c.flags & SLUICE_F_PROXY6, "[" + ip6_text(c.proxy_ip6) + "]:" + std::to_string(c.proxy_port6))
        << "\n"
        << "  mark:        " << or_none(c.flags & SLUICE_F_MATCH_MARK, mark.str()) << "\n"
        << "  uid:         " << or_none(c.flags & SLUICE_F_MATCH_UID, std::to_string(c.uid)) << "\n"
        << "  gid:         " << or_none(c.flags & SLUICE_F_MATCH_GID, std::to_string(c.gid)) << "\n"
        << "  socket redirect: "
        << ((c.flags & SLUICE_F_SOCKET_REDIRECT)
                ? "on (workload <-> proxy hop socket to socket while the reader is less than " +
                      std::to_string(c.sock_queue_limit) + " bytes behind)"
                : "off")
        << "\n"
        << "  flags:       0x" << std::hex << c.flags << std::dec << (flags.empty() ? "" : " " + flags) << "\n";
  } else {
    out << "config (" << kConfigMap << "): unreadable\n";
  }
  write_ranges_text(out, "include ranges", "sluice_incl_v4, sluice_incl_v6", merged_ranges(m.include_v4, m.include_v6));
  write_ranges_text(out, "exclude ranges", "sluice_excl_v4, sluice_excl_v6", merged_ranges(m.exclude_v4, m.exclude_v6));
  write_ports_text(out, "include ports", kInclPorts, r.have_config && (m.config.flags & SLUICE_F_INCLUDE_ALL_PORTS),
                   m.include_ports);
  write_ports_text(out, "exclude ports", kExclPorts, r.have_config && (m.config.flags & SLUICE_F_EXCLUDE_ALL_PORTS),
                   m.exclude_ports);
  if (r.counters.empty()) {
    out << "counters (" << kCountersMap << "): unreadable\n";
  } else {
    out << "counters (" << kCountersMap << ", summed over " << r.possible_cpus << " possible CPUs):\n";
    for (size_t i = 0; i < r.counters.size(); ++i) {
      out << "  " << std::left << std::setw(20) << counter_label(i) << " " << r.counters[i] << "\n";
    }
  }
  for (const MapReadError& e : r.map_errors) out << "error: " << e.map << ": " << e.error << "\n";
}

}  // namespace

const char* counter_name(uint32_t index) { return index < kCounterNames.size() ? kCounterNames[index] : nullptr; }

std::string range_text(const sluice_lpm_v4& key) {
  return ip4_text(key.addr) + "/" + std::to_string(key.prefixlen);
}

std::string range_text(const sluice_lpm_v6& key) {
  return ip6_text(key.addr) + "/" + std::to_string(key.prefixlen);
}

MapsReport read_pinned_maps(const std::string& pin_dir) {
  MapsReport r;
  r.pin_dir = pin_dir;
  // Check the directory first: "does not exist" and "root-only" are the
  // common answers and say more than the first map's bpf_obj_get error.
  DIR* d = opendir(pin_dir.c_str());
  if (d == nullptr) {
    const int err = errno;
    r.error = err == ENOENT ? pin_dir + " does not exist: sluice-agent has installed nothing on this host "
                                       "(or pins elsewhere: --pin-dir)"
                            : "cannot read " + pin_dir + ": " + errno_text(err) +
                                  (err == EACCES ? " (the agent's pin directory is root-only: run as root)" : "");
    return r;
  }
  closedir(d);

  auto note = [&r](const char* map, std::optional<std::string> err) {
    if (err) r.map_errors.push_back({map, std::move(*err)});
  };
  decision::MapContents& m = r.contents;
  auto config_err = read_config(pin_dir, m.config);
  r.have_config = !config_err;
  note(kConfigMap, std::move(config_err));
  note(kInclV4, read_entries(pin_dir, kInclV4, BPF_MAP_TYPE_LPM_TRIE, m.include_v4));
  note(kInclV6, read_entries(pin_dir, kInclV6, BPF_MAP_TYPE_LPM_TRIE, m.include_v6));
  note(kExclV4, read_entries(pin_dir, kExclV4, BPF_MAP_TYPE_LPM_TRIE, m.exclude_v4));
  note(kExclV6, read_entries(pin_dir, kExclV6, BPF_MAP_TYPE_LPM_TRIE, m.exclude_v6));
  note(kInclPorts, read_entries(pin_dir, kInclPorts, BPF_MAP_TYPE_HASH, m.include_ports));
  note(kExclPorts, read_entries(pin_dir, kExclPorts, BPF_MAP_TYPE_HASH, m.exclude_ports));
  note(kCountersMap, read_counters(pin_dir, r.possible_cpus, r.counters));
  return r;
}

void write_maps(std::ostream& out, OutputFormat format, const MapsReport& report) {
  // The text form sets std::left and std::hex on `out`: leave the caller's
  // stream as it was.
  const std::ios_base::fmtflags saved = out.flags();
  if (format == OutputFormat::kJson) {
    write_json(out, report);
  } else {
    write_text(out, report);
  }
  out.flags(saved);
}

}  // namespace sluice::ctl
