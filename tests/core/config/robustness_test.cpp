// Hostile and broken input: every case must return promptly, never throw or
// crash, and (except the empty file) produce exactly one error that says
// what is wrong with the file.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "core/config/loader.h"
#include "core/config/yaml_parse.h"

namespace sluice::config {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string dump(const Diagnostics& diagnostics) {
  std::string out;
  for (const Diagnostic& d : diagnostics.items()) out += d.format() + "\n";
  return out;
}

LoadResult load(std::string_view text, const LoadOptions& options = {}) {
  LoadResult result;
  load_text(text, "bad.yaml", result, options);
  return result;
}

// The one error a broken file must produce (a copy: callers pass temporaries).
Diagnostic only_error(const LoadResult& r) {
  EXPECT_EQ(r.diagnostics.items().size(), 1u) << dump(r.diagnostics);
  EXPECT_EQ(r.diagnostics.error_count(), 1u) << dump(r.diagnostics);
  return r.diagnostics.items().empty() ? Diagnostic{} : r.diagnostics.items()[0];
}

int64_t elapsed_ms(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

constexpr const char* kVirtualService = R"(apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: direct-cnn-through-egress-gateway
spec:
  hosts: ["edition.cnn.com"]
  gateways: [istio-egressgateway, mesh]
  http:
  - match:
    - gateways: [mesh]
      port: 80
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: cnn
        port: {number: 80}
      weight: 100
)";

TEST(RobustnessTest, EmptyInputLoadsNothingQuietly) {
  for (const char* text : {"", "\n\n", "# only a comment\n", "---\n", "---\n---\n...\n", "   "}) {
    LoadResult r = load(text);
    EXPECT_TRUE(r.diagnostics.empty()) << "[" << text << "]\n" << dump(r.diagnostics);
    EXPECT_EQ(r.config.resource_count(), 0u);
    EXPECT_TRUE(r.config.source_files.empty());
  }
}

TEST(RobustnessTest, TruncatedYaml) {
  std::string text = kVirtualService;
  // Cut inside the flow sequence of line 7.
  text.resize(text.find("mesh]"));
  const Diagnostic d = only_error(load(text));
  EXPECT_EQ(d.location.file, "bad.yaml");
  EXPECT_TRUE(d.location.known());
  EXPECT_EQ(d.message.rfind("invalid YAML: ", 0), 0u) << d.message;

  // Cut inside a quoted string.
  text = kVirtualService;
  text.resize(text.find("cnn.com\"]") + 3);
  only_error(load(text));
}

TEST(RobustnessTest, TruncatedAtEveryByteNeverCrashes) {
  const std::string text = kVirtualService;
  for (size_t n = 0; n <= text.size(); ++n) {
    LoadResult r = load(std::string_view(text).substr(0, n));
    // A prefix may be valid YAML that is an incomplete resource, or broken
    // YAML: either way at most one error, never an exception.
    EXPECT_LE(r.diagnostics.error_count(), 1u) << n << "\n" << dump(r.diagnostics);
  }
}

TEST(RobustnessTest, BinaryGarbage) {
  std::mt19937 random(42);
  std::string garbage(4096, '\0');
  for (char& c : garbage) c = static_cast<char>(random() & 0xFF);
  const Diagnostic d = only_error(load(garbage));
  EXPECT_TRUE(d.location.known());
  EXPECT_EQ(d.location.line, 1u);

  // NUL bytes in otherwise plain ASCII: a binary file, not YAML.
  std::string with_nul = "apiVersion: v1\nkind: Config";
  with_nul.push_back('\0');
  with_nul += "Map\n";
  const Diagnostic nul = only_error(load(with_nul));
  EXPECT_EQ(nul.message,
            "file contains binary data (control byte 0x00 at byte offset 27); expected YAML or "
            "JSON text");
  EXPECT_EQ(nul.location.str(), "bad.yaml:2:13");
}

TEST(RobustnessTest, NotUtf8) {
  // Latin-1 "café" in a host name.
  std::string text =
      "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x}\n"
      "spec:\n  hosts: [caf\xE9.example.com]\n";
  const Diagnostic d = only_error(load(text));
  EXPECT_EQ(d.message.rfind("file is not valid UTF-8 at byte offset 93", 0), 0u) << d.message;
  EXPECT_EQ(d.location.str(), "bad.yaml:5:14");

  // Valid multi-byte UTF-8 is fine; overlong forms and surrogates are not.
  EXPECT_TRUE(load("accessLogFile: /var/log/caf\xC3\xA9\n").diagnostics.empty());
  only_error(load("a: \xC0\xAF\n"));          // overlong '/'
  only_error(load("a: \xED\xA0\x80\n"));      // UTF-16 surrogate
  only_error(load("a: \xF4\x90\x80\x80\n"));  // past U+10FFFF
  only_error(load("a: \xE2\x82"));            // truncated sequence at end of file
}

TEST(RobustnessTest, DeepFlowNesting) {
  const auto start = Clock::now();
  const Diagnostic d = only_error(load(std::string(100'000, '[')));
  EXPECT_EQ(d.message, "YAML nesting is deeper than 64 levels; refusing to parse it");
  EXPECT_EQ(d.location.str(), "bad.yaml:1:64");

  std::string balanced = "a: " + std::string(10'000, '{') + std::string(10'000, '}') + "\n";
  only_error(load(balanced));
  EXPECT_LT(elapsed_ms(start), 2000);
}

TEST(RobustnessTest, DeepBlockNesting) {
  std::string text;
  for (int i = 0; i < 2000; ++i) text += std::string(static_cast<size_t>(i), ' ') + "k:\n";
  const Diagnostic d = only_error(load(text));
  EXPECT_EQ(d.location.line, 65u);

  std::string dashes;
  for (int i = 0; i < 1000; ++i) dashes += "- ";
  dashes += "x\n";
  only_error(load(dashes));
}

TEST(RobustnessTest, DeepNestingInsideTheMeshConfigMap) {
  std::string text =
      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio}\ndata:\n  mesh: |\n    a: " +
      std::string(1000, '[') + "\n";
  const Diagnostic d = only_error(load(text));
  EXPECT_EQ(d.location.line, 6u);
  EXPECT_EQ(d.field, "data.mesh");
}

TEST(RobustnessTest, StrayTopLevelCommaDoesNotHangYamlCpp) {
  // yaml-cpp 0.7's LoadAll loops forever, allocating, on each of these.
  for (const char* text :
       {"{a: b},\n", "{\"apiVersion\": \"v1\"},\"spec\": {}\n", ",\n", "[a],[b]\n", "\"a\",\n",
        "'a' ,\n", "&x ,\n", "!t ,\n", "--- ,\n", "{a: b}\n\n,\n", "- \"a\", b\n", "a: [b],\n",
        "!tag.example.com, b\n", "&anchor, b\n", "a: &x 1\n---\n*x, b\n", "  , n   tls:\n    o\n",
        "a: b\n# note\n  , c\n", "{[\n---\n    a: 1\n,\n"}) {
    const auto start = Clock::now();
    const Diagnostic d = only_error(load(text));
    EXPECT_EQ(d.message, "unexpected ',' outside a flow collection ([...] or {...})") << text;
    EXPECT_LT(elapsed_ms(start), 1000) << text;
  }
  // Commas that are only text.
  for (const char* text :
       {"a: b, c\n", "a: this is long\n  , continued\n", "a: this is long\n\n  , continued\n",
        "a: \"x,\" # ,\n", "a: [b, c]\n", "a: |\n  ,\n", "{a: b}: c\n"}) {
    EXPECT_EQ(load(text).diagnostics.error_count(), 0u) << text;
  }
}

TEST(RobustnessTest, ParserGuardStopsWhatTheScreenMisses) {
  // Straight to the parser, past the structure check: still terminates.
  for (const char* text :
       {"{a: b},\n", "\"a\",\n", "--- [a],[b]\n", "{a: 1}\n...\n,\n", "- a\n,\n", "- a: 1\n,\n",
        "    a: 1\n    b\n,x\n", "a: 1\n---\n- c\n,\n", "a: 1\n%x\n---\n- c\n,\n",
        // A plain scalar at column 0, not a key (found by the loader fuzzer:
        // LoadAll grew by gigabytes a second on it).
        "i #\n - h\n ,", "i #\n - h\n ,\n"}) {
    const auto start = Clock::now();
    ParsedDocuments parsed = parse_documents(text);
    EXPECT_FALSE(parsed.ok) << text;
    EXPECT_EQ(parsed.error, "unexpected text after the end of a document") << text;
    EXPECT_LT(elapsed_ms(start), 1000) << text;
  }
  // The fuzzer's whole input: several documents, each refused promptly.
  const std::string found =
      "api--- - gatew   ##################### ehoapiVer###essgat`eway\n  - mesh\n , http:\n  - match:\n"
      "--- - gnd: Configatew   ######Map netglobworking.istio.io/v1alpha3\nkin     ps:\n  - port:\n"
      "      fumber:atch:\n--- - gatew   piVer###essgat`eway\n  -ch:\n--- - gnd: Configatew   ######Ma\n#";
  const auto start = Clock::now();
  EXPECT_GE(load(found).diagnostics.error_count(), 1u);
  EXPECT_LT(elapsed_ms(start), 1000);
  ParsedDocuments json = parse_documents("{\"a\": 1}\n{\"b\": 2}\n");
  ASSERT_TRUE(json.ok);
  EXPECT_EQ(json.documents.size(), 2u);
  ParsedDocuments ends = parse_documents("a: 1\n...\nb: 2\n...\n");
  ASSERT_TRUE(ends.ok) << ends.error;
  EXPECT_EQ(ends.documents.size(), 2u);
}

TEST(RobustnessTest, ModerateNestingIsFine) {
  // Real resources are a dozen levels deep; flow style and brackets inside
  // strings, comments and block scalars must not count.
  LoadResult r = load(R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: regex # [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[
  annotations:
    a: "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
    b: '{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{'
    c: |
      [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[
spec:
  hosts: [a.example.com]
  http:
  - match:
    - uri: {regex: "^/v[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[0-9]"}
    route: [{destination: {host: a.example.com, port: {number: 80}}}]
)");
  EXPECT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
  EXPECT_EQ(r.config.virtual_services.size(), 1u);
}

TEST(RobustnessTest, HugeFileIsRefusedWithoutReadingIt) {
  char path[] = "/tmp/sluice-huge-XXXXXX.yaml";
  int fd = mkstemps(path, 5);
  ASSERT_GE(fd, 0);
  // Sparse: 100 MiB of nothing costs no disk and no time to create.
  ASSERT_EQ(ftruncate(fd, 100LL * 1024 * 1024), 0);
  close(fd);
  const auto start = Clock::now();
  LoadResult r;
  load_path(path, r);
  const int64_t ms = elapsed_ms(start);
  const Diagnostic d = only_error(r);
  EXPECT_EQ(d.message, "file is 100.0 MB, larger than the 64 MiB limit");
  EXPECT_EQ(d.location.file, path);
  EXPECT_LT(ms, 100);
  unlink(path);
}

TEST(RobustnessTest, HugeTextIsRefused) {
  LoadOptions small;
  small.max_file_bytes = 1024;
  const Diagnostic d = only_error(load(std::string(2048, 'a'), small));
  EXPECT_EQ(d.message, "file is 0.0 MB, larger than the 1024 bytes limit");
}

// "Billion laughs" aimed at the loader rather than at yaml-cpp: yaml-cpp
// shares aliased nodes, but walking them into the model would copy each one.
// Three levels the loader walks (http routes x matches x headers) of a few
// hundred aliases each: 8 million nodes from 7 KB of text.
std::string alias_bomb() {
  std::string text =
      "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bomb}\n"
      "spec:\n  hosts: [a.example.com]\n  http:\n  - &r\n    match:\n    - &m\n"
      "      headers: {h0: &h {exact: lol}";
  for (int i = 1; i < 200; ++i) text += ", h" + std::to_string(i) + ": *h";
  text += "}\n";
  for (int i = 1; i < 200; ++i) text += "    - *m\n";
  for (int i = 1; i < 100; ++i) text += "  - *r\n";
  return text;
}

TEST(RobustnessTest, AliasBomb) {
  const std::string text = alias_bomb();
  ASSERT_LT(text.size(), 8000u) << text.size();
  const auto start = Clock::now();
  LoadResult r = load(text);
  const Diagnostic d = only_error(r);
  EXPECT_NE(d.message.find("anchors/aliases"), std::string::npos) << d.message;
  EXPECT_EQ(d.kind, "VirtualService");
  EXPECT_EQ(d.name, "bomb");
  EXPECT_EQ(r.config.resource_count(), 0u);
  EXPECT_LT(elapsed_ms(start), 20'000);
}

TEST(RobustnessTest, AliasBombWithALowBudget) {
  LoadOptions options;
  options.max_nodes_per_document = 50;
  std::string text =
      "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x}\n"
      "spec:\n  hosts: &h [a, b, c, d, e, f, g, h, i, j]\n  addresses: *h\n"
      "  subjectAltNames: *h\n  exportTo: *h\n  x: *h\n";
  only_error(load(text, options));
}

TEST(RobustnessTest, FloodOfProblemsIsCapped) {
  std::string text =
      "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x}\nspec:\n"
      "  ports:\n";
  for (int i = 0; i < 1000; ++i) text += "  - {number: bad}\n";
  LoadResult r = load(text);
  EXPECT_EQ(r.diagnostics.items().size(), 101u);
  EXPECT_NE(r.diagnostics.items().back().message.find("too many problems"), std::string::npos);
  EXPECT_EQ(r.config.resource_count(), 0u);
}

TEST(RobustnessTest, ScalarsAndOddDocuments) {
  only_error(load("just a sentence\n"));
  only_error(load("42\n"));
  only_error(
      load("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x}\n"
           "spec: {hosts: {a: b}}\n"));
  only_error(load("%YAML 1.2\n---\napiVersion: [\n"));
  only_error(load("\t- tab indented\n"));
  only_error(load("a: *undefined_alias\n"));
  only_error(load("a: &x 1\nb: !!binary 'not base64 !'\nc: [\n"));
  // Well-formed YAML that is no known kind of document: a warning, not an error.
  LoadResult unknown = load("? [complex, key]\n: value\n");
  ASSERT_EQ(unknown.diagnostics.items().size(), 1u) << dump(unknown.diagnostics);
  EXPECT_EQ(unknown.diagnostics.items()[0].severity, Severity::kWarning);
}

TEST(RobustnessTest, UnreadablePaths) {
  LoadResult r;
  load_path("/nonexistent/sluice/config", r);
  only_error(r);
  if (geteuid() != 0) {
    char path[] = "/tmp/sluice-noperm-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    close(fd);
    chmod(path, 0);
    LoadResult denied;
    load_path(path, denied);
    only_error(denied);
    unlink(path);
  }
}

}  // namespace
}  // namespace sluice::config
