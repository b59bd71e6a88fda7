// sluicectl status's parts: certificate expiry (certificates made here with
// fixed dates), the pin directory reader (missing, foreign files, a real
// pinned map when the kernel lets us), cgroup id -> path, and the report's
// rendering and exit code.
#include "ctl/status.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "ctl/bpf_pins.h"
#include "ctl/cert_expiry.h"

namespace sluice::ctl {
namespace {

constexpr std::time_t kNotAfter = 1893456000;  // 2030-01-01T00:00:00Z
constexpr int64_t kDay = 86400;

class TempDir {
 public:
  TempDir() {
    path_ = std::filesystem::temp_directory_path() /
            ("sluicectl-status-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// A self-signed certificate valid until kNotAfter with a SPIFFE URI SAN.
void write_certificate(const std::string& path, const std::string& spiffe) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  ASSERT_NE(key, nullptr);
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  ASN1_TIME_set(X509_getm_notBefore(cert), kNotAfter - 365 * kDay);
  ASN1_TIME_set(X509_getm_notAfter(cert), kNotAfter);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("cluster.local"), -1,
                             -1, 0);
  X509_set_issuer_name(cert, name);
  X509_set_pubkey(cert, key);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, ("URI:" + spiffe).c_str());
  ASSERT_NE(ext, nullptr);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  ASSERT_GT(X509_sign(cert, key, EVP_sha256()), 0);
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  PEM_write_X509(f, cert);
  std::fclose(f);
  X509_free(cert);
  EVP_PKEY_free(key);
}

TEST(CertExpiry, DaysLeftAndIdentity) {
  TempDir dir;
  write_certificate(dir / "cert-chain.pem", "spiffe://cluster.local/ns/default/sa/sleep");
  CertificateInfo c = read_certificate(dir / "cert-chain.pem", kNotAfter - 10 * kDay - 1);
  ASSERT_TRUE(c.error.empty()) << c.error;
  EXPECT_EQ(c.not_after, "2030-01-01T00:00:00Z");
  EXPECT_EQ(c.seconds_left, 10 * kDay + 1);
  EXPECT_EQ(c.days_left(), 10);
  EXPECT_FALSE(c.expired());
  ASSERT_EQ(c.uri_sans.size(), 1u);
  EXPECT_EQ(c.uri_sans[0], "spiffe://cluster.local/ns/default/sa/sleep");
  EXPECT_NE(c.subject.find("O=cluster.local"), std::string::npos) << c.subject;
}

TEST(CertExpiry, Expired) {
  TempDir dir;
  write_certificate(dir / "cert-chain.pem", "spiffe://cluster.local/ns/default/sa/sleep");
  CertificateInfo c = read_certificate(dir / "cert-chain.pem", kNotAfter + 1);
  ASSERT_TRUE(c.error.empty()) << c.error;
  EXPECT_TRUE(c.expired());
  EXPECT_EQ(c.seconds_left, -1);
  EXPECT_EQ(c.days_left(), -1);
}

TEST(CertExpiry, MissingAndGarbage) {
  TempDir dir;
  std::ofstream(dir / "cert-chain.pem") << "not a certificate\n";
  CertReport r = inspect_certs(dir.str(), kNotAfter);
  ASSERT_TRUE(r.error.empty());
  ASSERT_EQ(r.certificates.size(), 2u);
  EXPECT_NE(r.certificates[0].error.find("not a PEM certificate"), std::string::npos) << r.certificates[0].error;
  EXPECT_NE(r.certificates[1].error.find("cannot open"), std::string::npos) << r.certificates[1].error;
  EXPECT_FALSE(r.certificates[0].expired());  // unreadable is not "expired"
  EXPECT_FALSE(r.key_present);

  r = inspect_certs(dir / "nope", kNotAfter);
  EXPECT_NE(r.error.find("does not exist"), std::string::npos) << r.error;
  EXPECT_TRUE(r.certificates.empty());
}

TEST(BpfPins, MissingDirectoryIsReportedNotFatal) {
  TempDir dir;
  PinReport r = inspect_pins(dir / "sluice");
  EXPECT_NE(r.error.find("does not exist"), std::string::npos) << r.error;
  EXPECT_TRUE(r.objects.empty());
}

TEST(BpfPins, FilesThatAreNotBpfObjectsAreReportedPerObject) {
  TempDir dir;
  for (const char* n : {"sluice_config", "prog_sluice_connect4", "link_1_sluice_connect4"}) std::ofstream(dir / n) << "x";
  PinReport r = inspect_pins(dir.str());
  ASSERT_TRUE(r.error.empty()) << r.error;
  ASSERT_EQ(r.objects.size(), 3u);
  // Sorted by name.
  EXPECT_EQ(r.objects[0].name, "link_1_sluice_connect4");
  EXPECT_EQ(r.objects[0].kind, "link");
  EXPECT_EQ(r.objects[1].kind, "program");
  EXPECT_EQ(r.objects[2].kind, "map");
  for (const auto& o : r.objects) EXPECT_NE(o.error.find("bpf_obj_get"), std::string::npos) << o.name;
}

// Removes what a test pinned or created, whatever way the test ends.
class Cleanup {
 public:
  ~Cleanup() {
    for (int fd : fds_) close(fd);
    // Pins first (the last reference to the link detaches it), then the
    // directories and the cgroup.
    for (auto it = paths_.rbegin(); it != paths_.rend(); ++it) {
      if (unlink(it->c_str()) != 0) rmdir(it->c_str());
    }
  }
  void path(std::string p) { paths_.push_back(std::move(p)); }
  int fd(int f) {
    if (f >= 0) fds_.push_back(f);
    return f;
  }

 private:
  std::vector<std::string> paths_;
  std::vector<int> fds_;
};

bool have_bpffs() {
  constexpr long kBpfFsMagic = 0xcafe4a11;
  struct statfs fs {};
  return statfs("/sys/fs/bpf", &fs) == 0 && static_cast<long>(fs.f_type) == kBpfFsMagic;
}

TEST(BpfPins, ReadsAPinnedMap) {
  if (!have_bpffs()) GTEST_SKIP() << "no bpffs at /sys/fs/bpf";
  Cleanup cleanup;
  int fd = cleanup.fd(bpf_map_create(BPF_MAP_TYPE_ARRAY, "sluicectl_test", 4, 8, 16, nullptr));
  if (fd < 0) GTEST_SKIP() << "cannot create BPF maps here: " << std::strerror(errno);
  const std::string dir = "/sys/fs/bpf/sluicectl-test-" + std::to_string(getpid());
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0) << std::strerror(errno);
  cleanup.path(dir);
  const std::string pin = dir + "/sluice_test_map";
  ASSERT_EQ(bpf_obj_pin(fd, pin.c_str()), 0) << std::strerror(errno);
  cleanup.path(pin);
  PinReport r = inspect_pins(dir);
  ASSERT_TRUE(r.error.empty()) << r.error;
  ASSERT_EQ(r.objects.size(), 1u);
  EXPECT_EQ(r.objects[0].kind, "map");
  EXPECT_TRUE(r.objects[0].error.empty()) << r.objects[0].error;
  EXPECT_NE(r.objects[0].detail.find("array, 16 entries max"), std::string::npos) << r.objects[0].detail;
}

// A program and a cgroup link pinned the way the agent pins them, on a
// cgroup this test creates (empty: no process is affected; never the root
// cgroup): the link is traced back to the cgroup's path.
TEST(BpfPins, ReadsAPinnedCgroupLinkBackToItsCgroupPath) {
  if (!have_bpffs()) GTEST_SKIP() << "no bpffs at /sys/fs/bpf";
  const std::string cgroup2 = find_cgroup2_mount();
  if (cgroup2.empty()) GTEST_SKIP() << "no cgroup v2 mount";
  Cleanup cleanup;
  const std::string cgroup = cgroup2 + "/sluicectl-test-" + std::to_string(getpid());
  if (mkdir(cgroup.c_str(), 0755) != 0) GTEST_SKIP() << "cannot create a cgroup: " << std::strerror(errno);
  cleanup.path(cgroup);
  int cg_fd = cleanup.fd(open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_GE(cg_fd, 0);

  // r0 = 1 (allow); exit
  const bpf_insn insns[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1},
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_CGROUP_INET4_CONNECT);
  int prog = cleanup.fd(bpf_prog_load(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, "sluicectl_t", "GPL", insns, 2, &opts));
  if (prog < 0) GTEST_SKIP() << "cannot load BPF programs here: " << std::strerror(errno);
  int link = cleanup.fd(bpf_link_create(prog, cg_fd, BPF_CGROUP_INET4_CONNECT, nullptr));
  if (link < 0) GTEST_SKIP() << "no BPF links for cgroups: " << std::strerror(errno);

  const std::string dir = "/sys/fs/bpf/sluicectl-test-" + std::to_string(getpid());
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0) << std::strerror(errno);
  cleanup.path(dir);
  struct stat st {};
  ASSERT_EQ(stat(cgroup.c_str(), &st), 0);
  const std::string prog_pin = dir + "/prog_sluicectl_t";
  const std::string link_pin = dir + "/link_" + std::to_string(st.st_ino) + "_sluicectl_t";
  ASSERT_EQ(bpf_obj_pin(prog, prog_pin.c_str()), 0) << std::strerror(errno);
  cleanup.path(prog_pin);
  ASSERT_EQ(bpf_obj_pin(link, link_pin.c_str()), 0) << std::strerror(errno);
  cleanup.path(link_pin);

  PinReport r = inspect_pins(dir);
  ASSERT_TRUE(r.error.empty()) << r.error;
  ASSERT_EQ(r.objects.size(), 2u);
  const PinnedObject& l = r.objects[0];
  EXPECT_EQ(l.kind, "link");
  EXPECT_TRUE(l.error.empty()) << l.error;
  ASSERT_TRUE(l.cgroup_id);
  EXPECT_EQ(*l.cgroup_id, static_cast<uint64_t>(st.st_ino));
  EXPECT_EQ(l.cgroup_path, cgroup);
  EXPECT_EQ(l.attach_type, "cgroup_inet4_connect");
  const PinnedObject& p = r.objects[1];
  EXPECT_EQ(p.kind, "program");
  EXPECT_TRUE(p.error.empty()) << p.error;
  EXPECT_NE(p.detail.find("cgroup_sock_addr, name sluicectl_t"), std::string::npos) << p.detail;
}

TEST(Cgroups, Cgroup2MountFromMountsFile) {
  TempDir dir;
  std::ofstream(dir / "mounts") << "proc /proc proc rw 0 0\n"
                                   "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"
                                   "cgroup2 /sys/fs/cgroup/uni\\040fied cgroup2 rw 0 0\n";
  EXPECT_EQ(find_cgroup2_mount(dir / "mounts"), "/sys/fs/cgroup/uni fied");
  std::ofstream(dir / "none") << "proc /proc proc rw 0 0\n";
  EXPECT_EQ(find_cgroup2_mount(dir / "none"), "");
}

TEST(Cgroups, IdIsTheDirectoryInode) {
  TempDir dir;
  std::filesystem::create_directories(dir / "kubepods/pod1/c1");
  std::filesystem::create_directories(dir / "system.slice");
  struct stat st {};
  ASSERT_EQ(stat((dir / "kubepods/pod1/c1").c_str(), &st), 0);
  EXPECT_EQ(find_cgroup_path(dir.str(), st.st_ino), dir.str() + "/kubepods/pod1/c1");
  ASSERT_EQ(stat(dir.str().c_str(), &st), 0);
  EXPECT_EQ(find_cgroup_path(dir.str(), st.st_ino), dir.str());
  EXPECT_EQ(find_cgroup_path(dir.str(), 0), "");
  // The search is bounded.
  ASSERT_EQ(stat((dir / "kubepods/pod1/c1").c_str(), &st), 0);
  EXPECT_EQ(find_cgroup_path(dir.str(), st.st_ino, /*max_dirs=*/2), "");
}

StatusReport sample_report() {
  StatusReport r;
  r.proxy.admin = "http://127.0.0.1:15000";
  r.proxy.ready_status = 200;
  r.proxy.state = "LIVE";
  r.proxy.config_dump = nlohmann::json::parse(R"({
    "role": "sidecar", "generation": 3, "summary": "config generation 3 from a.yaml",
    "source_files": ["a.yaml"], "outbound_traffic_policy": "REGISTRY_ONLY",
    "service_entries": ["default/cnn"], "virtual_services": [], "destination_rules": [], "gateways": [],
    "gateway_servers": []})");
  r.pins.pin_dir = "/sys/fs/bpf/sluice";
  r.pins.cgroup2_mount = "/sys/fs/cgroup";
  PinnedObject link;
  link.name = "link_42_sluice_connect4";
  link.kind = "link";
  link.detail = "id 7, cgroup, program id 9";
  link.cgroup_id = 42;
  link.cgroup_path = "/sys/fs/cgroup/kubepods";
  link.attach_type = "cgroup_inet4_connect";
  r.pins.objects.push_back(link);
  r.certs.dir = "/etc/certs";
  CertificateInfo c;
  c.file = "/etc/certs/cert-chain.pem";
  c.uri_sans = {"spiffe://cluster.local/ns/default/sa/sleep"};
  c.not_after = "2030-01-01T00:00:00Z";
  c.seconds_left = 5 * kDay;
  r.certs.certificates.push_back(c);
  r.certs.key_present = true;
  return r;
}

TEST(StatusReport, TextShowsEveryPart) {
  StatusReport r = sample_report();
  std::ostringstream out;
  write_status(out, OutputFormat::kText, r);
  const std::string t = out.str();
  EXPECT_NE(t.find("ready: yes (/ready answered 200 LIVE)"), std::string::npos) << t;
  EXPECT_NE(t.find("config generation 3; outboundTrafficPolicy REGISTRY_ONLY"), std::string::npos) << t;
  EXPECT_NE(t.find("source files: a.yaml"), std::string::npos) << t;
  EXPECT_NE(t.find("ServiceEntry (1): default/cnn"), std::string::npos) << t;
  EXPECT_NE(t.find("cgroup_inet4_connect on cgroup /sys/fs/cgroup/kubepods (id 42)"), std::string::npos) << t;
  EXPECT_NE(t.find("cert-chain.pem: spiffe://cluster.local/ns/default/sa/sleep, notAfter 2030-01-01T00:00:00Z (5 "
                   "day(s) left)"),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("=> proxy ready (exit 0)"), std::string::npos) << t;
  EXPECT_EQ(r.exit_code(), 0);
}

TEST(StatusReport, ExitCodes) {
  StatusReport r = sample_report();
  r.certs.certificates[0].seconds_left = -2 * kDay;
  EXPECT_EQ(r.exit_code(), 1);  // expired
  std::ostringstream out;
  write_status(out, OutputFormat::kText, r);
  EXPECT_NE(out.str().find("EXPIRED 2 day(s) ago"), std::string::npos) << out.str();

  r = sample_report();
  r.proxy.ready_status = 503;
  r.proxy.state = "DRAINING";
  EXPECT_EQ(r.exit_code(), 1);

  r = sample_report();
  r.proxy = ProxyStatus{};
  r.proxy.error = "connect: Connection refused";
  r.pins.objects.clear();
  r.pins.error = "/sys/fs/bpf/sluice does not exist";
  r.certs.certificates.clear();
  r.certs.error = "/etc/certs does not exist";
  EXPECT_EQ(r.exit_code(), 1);
  out.str("");
  write_status(out, OutputFormat::kJson, r);
  nlohmann::json j = nlohmann::json::parse(out.str());
  EXPECT_EQ(j["exit_code"], 1);
  EXPECT_EQ(j["proxy"]["ready"], false);
  EXPECT_EQ(j["proxy"]["error"], "connect: Connection refused");
  EXPECT_TRUE(j["proxy"]["config_dump"].is_null());
  EXPECT_EQ(j["pins"]["error"], "/sys/fs/bpf/sluice does not exist");
  EXPECT_EQ(j["certificates"]["error"], "/etc/certs does not exist");

  // Pins and certificates missing alone do not fail a ready proxy.
  r = sample_report();
  r.pins.objects.clear();
  r.pins.error = "missing";
  r.certs.certificates.clear();
  r.certs.error = "missing";
  EXPECT_EQ(r.exit_code(), 0);
}

}  // namespace
}  // namespace sluice::ctl
