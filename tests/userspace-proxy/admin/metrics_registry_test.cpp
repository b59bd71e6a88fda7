#include "userspace-proxy/admin/metrics_registry.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tests/userspace-proxy/admin/exposition_parser.h"
#include "userspace-proxy/admin/istio_metrics.h"

namespace sluice::admin {
namespace {

using testing::Exposition;
using testing::Labels;
using testing::parse_exposition;

constexpr std::string_view kDroppedFamily =
    "# HELP sluice_metrics_dropped_updates_total Metric updates dropped: the registry was full (too many label sets) "
    "or the label count was wrong.\n"
    "# TYPE sluice_metrics_dropped_updates_total counter\n";

Exposition parse_or_fail(const std::string& text) {
  std::string err;
  auto e = parse_exposition(text, &err);
  EXPECT_TRUE(e.has_value()) << err << "\n" << text;
  return e.value_or(Exposition{});
}

TEST(MetricsRegistry, RendersCountersAndHistogramsExactly) {
  MetricsRegistry reg;
  // Registered out of name order: the output is sorted by name.
  auto req = reg.add_counter("req_total", "Requests.", {"code", "path"});
  auto lat = reg.add_histogram("lat_ms", "Latency.", {"route"}, {1, 2.5});
  ASSERT_TRUE(req && lat);
  MetricsShard& a = reg.add_shard();
  MetricsShard& b = reg.add_shard();
  a.add(a.series(*req, {"500", "/b"}));
  a.add(a.series(*req, {"200", "/a"}), 2);
  b.add(b.series(*req, {"200", "/a"}), 3);
  auto la = a.series(*lat, {"r1"});
  a.observe(la, 0.5);
  a.observe(la, 2.5);  // on a bound: that bucket ("le")
  a.observe(la, 7);    // above every bound: +Inf only
  b.observe(b.series(*lat, {"r1"}), 1);

  std::string expected =
      "# HELP lat_ms Latency.\n"
      "# TYPE lat_ms histogram\n"
      "lat_ms_bucket{route=\"r1\",le=\"1\"} 2\n"
      "lat_ms_bucket{route=\"r1\",le=\"2.5\"} 3\n"
      "lat_ms_bucket{route=\"r1\",le=\"+Inf\"} 4\n"
      "lat_ms_sum{route=\"r1\"} 11\n"
      "lat_ms_count{route=\"r1\"} 4\n"
      "# HELP req_total Requests.\n"
      "# TYPE req_total counter\n"
      "req_total{code=\"200\",path=\"/a\"} 5\n"
      "req_total{code=\"500\",path=\"/b\"} 1\n" +
      std::string(kDroppedFamily) + "sluice_metrics_dropped_updates_total 0\n";
  EXPECT_EQ(reg.render(), expected);
  EXPECT_EQ(reg.render(), expected);  // rendering does not change anything
  parse_or_fail(reg.render());
}

TEST(MetricsRegistry, UnlabelledCounterReadsZeroBeforeFirstUpdate) {
  MetricsRegistry reg;
  auto c = reg.add_counter("events_total", "Events.", {});
  ASSERT_TRUE(c);
  Exposition e = parse_or_fail(reg.render());
  EXPECT_EQ(e.value("events_total", {}), 0.0);
  MetricsShard& s = reg.add_shard();
  s.add(s.series(*c, {}), 7);
  e = parse_or_fail(reg.render());
  EXPECT_EQ(e.value("events_total", {}), 7.0);
}

TEST(MetricsRegistry, EscapesLabelValuesAndHelpAndReadsBack) {
  MetricsRegistry reg;
  auto c = reg.add_counter("odd_total", "Help with a \\ backslash,\na line feed and \"quotes\".", {"v"});
  ASSERT_TRUE(c);
  MetricsShard& s = reg.add_shard();
  const std::string tricky = "a\\b\"c\nd";
  const std::string utf8 = "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80";  // é, €, an emoji
  s.add(s.series(*c, {tricky}));
  s.add(s.series(*c, {utf8}));
  s.add(s.series(*c, {""}));
  std::string text = reg.render();
  EXPECT_NE(text.find("# HELP odd_total Help with a \\\\ backslash,\\na line feed and \"quotes\".\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("odd_total{v=\"a\\\\b\\\"c\\nd\"} 1\n"), std::string::npos) << text;
  Exposition e = parse_or_fail(text);
  EXPECT_EQ(e.family("odd_total")->help, "Help with a \\ backslash,\na line feed and \"quotes\".");
  EXPECT_EQ(e.value("odd_total", {{"v", tricky}}), 1.0);
  EXPECT_EQ(e.value("odd_total", {{"v", utf8}}), 1.0);
  EXPECT_EQ(e.value("odd_total", {{"v", ""}}), 1.0);
}

TEST(MetricsRegistry, IllFormedUtf8BecomesReplacementCharacter) {
  MetricsRegistry reg;
  auto c = reg.add_counter("host_total", "Hosts.", {"host"});
  ASSERT_TRUE(c);
  MetricsShard& s = reg.add_shard();
  s.add(s.series(*c, {"bad\xC0\xAFhost"}));  // overlong '/'
  s.add(s.series(*c, {"cut\xE2\x82"}));      // truncated sequence
  Exposition e = parse_or_fail(reg.render());  // the parser rejects ill-formed UTF-8
  EXPECT_EQ(e.value("host_total", {{"host", "bad\xEF\xBF\xBD\xEF\xBF\xBDhost"}}), 1.0);
  EXPECT_EQ(e.value("host_total", {{"host", "cut\xEF\xBF\xBD"}}), 1.0);
}

TEST(MetricsRegistry, OrderIsDeterministicWhateverTheInsertionOrder) {
  auto build = [](bool reverse) {
    MetricsRegistry reg;
    std::vector<std::string> names = {"zeta_total", "alpha_total", "mid_total"};
    if (reverse) std::reverse(names.begin(), names.end());
    std::map<std::string, CounterFamily> fams;
    for (const auto& n : names) fams.emplace(n, *reg.add_counter(n, "h", {"k", "j"}));
    MetricsShard& s1 = reg.add_shard();
    MetricsShard& s2 = reg.add_shard();
    std::vector<std::pair<std::string, std::string>> sets = {{"b", "1"}, {"a", "2"}, {"a", "10"}, {"c", ""}};
    if (reverse) std::reverse(sets.begin(), sets.end());
    for (const auto& [name, fam] : fams) {
      for (std::size_t i = 0; i < sets.size(); ++i) {
        MetricsShard& s = i % 2 ? s1 : s2;
        s.add(s.series(fam, {sets[i].first, sets[i].second}), i + 1);
      }
    }
    return reg.render();
  };
  std::string forward = build(false);
  std::string backward = build(true);
  Exposition f = parse_or_fail(forward);
  ASSERT_EQ(f.families.size(), 4u);
  EXPECT_EQ(f.families[0].name, "alpha_total");
  EXPECT_EQ(f.families[1].name, "mid_total");
  EXPECT_EQ(f.families[2].name, "sluice_metrics_dropped_updates_total");
  EXPECT_EQ(f.families[3].name, "zeta_total");
  // Series sorted bytewise by label values in label-name order: (a,10) < (a,2) < (b,1) < (c,"").
  std::vector<std::pair<std::string, std::string>> order;
  for (const auto& s : f.families[0].samples) order.emplace_back(s.labels.at("k"), s.labels.at("j"));
  std::vector<std::pair<std::string, std::string>> want = {{"a", "10"}, {"a", "2"}, {"b", "1"}, {"c", ""}};
  EXPECT_EQ(order, want);
  // Label names in registration order, not alphabetical.
  EXPECT_EQ(f.families[0].samples[0].label_order, (std::vector<std::string>{"k", "j"}));
  Exposition b = parse_or_fail(backward);
  for (std::size_t i = 0; i < 4; ++i) {
    ASSERT_EQ(b.families[i].samples.size(), f.families[i].samples.size());
    for (std::size_t k = 0; k < f.families[i].samples.size(); ++k) {
      EXPECT_EQ(b.families[i].samples[k].labels, f.families[i].samples[k].labels);
    }
  }
}

TEST(MetricsRegistry, RejectsInvalidRegistrations) {
  MetricsRegistry reg;
  std::string err;
  EXPECT_FALSE(reg.add_counter("9lives_total", "h", {}, &err));
  EXPECT_NE(err.find("invalid metric name"), std::string::npos);
  EXPECT_FALSE(reg.add_counter("a-b", "h", {}));
  EXPECT_FALSE(reg.add_counter("ok_total", "h", {"__reserved"}));
  EXPECT_FALSE(reg.add_counter("ok_total", "h", {"has:colon"}));
  EXPECT_FALSE(reg.add_counter("ok_total", "h", {"x", "x"}, &err));
  EXPECT_NE(err.find("twice"), std::string::npos);
  EXPECT_TRUE(reg.add_counter("ok_total", "h", {"x"}));
  EXPECT_FALSE(reg.add_counter("ok_total", "h", {"x"}, &err));
  EXPECT_NE(err.find("already registered"), std::string::npos);
  EXPECT_FALSE(reg.add_histogram("h1", "h", {"le"}, {1}));
  EXPECT_FALSE(reg.add_histogram("h2", "h", {}, {}));
  EXPECT_FALSE(reg.add_histogram("h3", "h", {}, {1, 1}));
  EXPECT_FALSE(reg.add_histogram("h4", "h", {}, {2, 1}));
  EXPECT_FALSE(reg.add_histogram("h5", "h", {}, {1, HUGE_VAL}));
  EXPECT_TRUE(reg.add_histogram("h6", "h", {}, {1, 2}));
  EXPECT_FALSE(reg.add_callback("cb", "h", MetricType::kHistogram, {}, [](SampleWriter&) {}));
  EXPECT_FALSE(reg.add_callback("cb", "h", MetricType::kGauge, {}, nullptr));
}

TEST(MetricsRegistry, WrongLabelCountIsDroppedAndCounted) {
  MetricsRegistry reg;
  auto c = reg.add_counter("c_total", "h", {"a", "b"});
  ASSERT_TRUE(c);
  MetricsShard& s = reg.add_shard();
  CounterSeries bad = s.series(*c, {"only-one"});
  EXPECT_FALSE(bad.valid());
  s.add(bad);  // ignored
  EXPECT_EQ(reg.dropped_updates(), 1u);
  Exposition e = parse_or_fail(reg.render());
  EXPECT_TRUE(e.family("c_total")->samples.empty());
  EXPECT_EQ(e.value("sluice_metrics_dropped_updates_total", {}), 1.0);
}

TEST(MetricsRegistry, CardinalityIsBoundedAndKnownSeriesStayReachable) {
  MetricsRegistry reg(MetricsRegistryOptions{.max_slots = 1024});
  auto c = reg.add_counter("c_total", "h", {"id"});
  auto h = reg.add_histogram("h_ms", "h", {"id"}, {1, 2, 3});  // 5 slots per series
  ASSERT_TRUE(c && h);
  MetricsShard& a = reg.add_shard();
  MetricsShard& b = reg.add_shard();
  a.add(a.series(*c, {"early"}));
  // A histogram series never straddles a 512-slot chunk.
  for (int i = 0;; ++i) {
    HistogramSeries s = a.series(*h, {std::to_string(i)});
    if (!s.valid()) break;
    ASSERT_EQ(s.slot / 512, (s.slot + 4) / 512) << "series " << i << " straddles a chunk";
    a.observe(s, 1.5);
  }
  EXPECT_EQ(reg.dropped_updates(), 1u);
  // Counters take one slot: they fill what the histograms could not.
  for (int i = 0;; ++i) {
    CounterSeries s = a.series(*c, {"fill" + std::to_string(i)});
    if (!s.valid()) break;
    a.add(s);
  }
  EXPECT_EQ(reg.slots_used(), 1024u);
  uint64_t dropped = reg.dropped_updates();
  EXPECT_EQ(dropped, 2u);
  EXPECT_FALSE(a.series(*c, {"late"}).valid());
  EXPECT_EQ(reg.dropped_updates(), dropped + 1);
  // Full, but a label set interned before is still found by another shard.
  CounterSeries early_b = b.series(*c, {"early"});
  ASSERT_TRUE(early_b.valid());
  b.add(early_b, 4);
  Exposition e = parse_or_fail(reg.render());
  EXPECT_EQ(e.value("c_total", {{"id", "early"}}), 5.0);
  EXPECT_FALSE(e.value("c_total", {{"id", "late"}}).has_value());
}

TEST(MetricsRegistry, SeriesKeysDoNotCollide) {
  std::string k1, k2;
  std::vector<std::string_view> v1 = {"a", "bc"}, v2 = {"ab", "c"};
  encode_series_key(k1, 1, v1);
  encode_series_key(k2, 1, v2);
  EXPECT_NE(k1, k2);
  MetricsRegistry reg;
  auto c = reg.add_counter("c_total", "h", {"x", "y"});
  MetricsShard& s = reg.add_shard();
  s.add(s.series(*c, {"a", "bc"}));
  s.add(s.series(*c, {"ab", "c"}), 2);
  Exposition e = parse_or_fail(reg.render());
  EXPECT_EQ(e.value("c_total", {{"x", "a"}, {"y", "bc"}}), 1.0);
  EXPECT_EQ(e.value("c_total", {{"x", "ab"}, {"y", "c"}}), 2.0);
}

// Each family remembers the label set it looked up last (a connection's
// requests repeat theirs); families share those memories by id, so more
// families than memories, with the same and with alternating values, must
// each still reach their own series.
TEST(MetricsRegistry, RepeatedLookupsAcrossManyFamiliesFindTheirOwnSeries) {
  MetricsRegistry reg;
  std::vector<CounterFamily> families;
  for (int f = 0; f < 40; ++f) {
    auto c = reg.add_counter("c" + std::to_string(f) + "_total", "h", {"code"});
    ASSERT_TRUE(c);
    families.push_back(*c);
  }
  MetricsShard& s = reg.add_shard();
  for (int round = 0; round < 3; ++round) {
    for (int f = 0; f < 40; ++f) {
      s.add(s.series(families[f], {"200"}), static_cast<uint64_t>(f + 1));
      s.add(s.series(families[f], {"200"}));  // again at once: the remembered one
      s.add(s.series(families[f], {f % 2 ? "503" : "200"}), 1000);
    }
  }
  Exposition e = parse_or_fail(reg.render());
  for (int f = 0; f < 40; ++f) {
    const std::string name = "c" + std::to_string(f) + "_total";
    const double ok = 3.0 * (f + 2) + (f % 2 ? 0 : 3000);
    EXPECT_EQ(e.value(name, {{"code", "200"}}), ok) << name;
    if (f % 2) {
      EXPECT_EQ(e.value(name, {{"code", "503"}}), 3000.0) << name;
    } else {
      EXPECT_FALSE(e.value(name, {{"code", "503"}}).has_value()) << name;
    }
  }
}

TEST(MetricsRegistry, HistogramIgnoresNaNAndAddsFractions) {
  MetricsRegistry reg;
  auto h = reg.add_histogram("d_ms", "h", {}, {0.5, 1});
  MetricsShard& s = reg.add_shard();
  HistogramSeries hs = s.series(*h, {});
  s.observe(hs, std::nan(""));
  s.observe(hs, 0.25);
  s.observe(hs, 0.5);
  s.observe(hs, 0.75);
  Exposition e = parse_or_fail(reg.render());
  EXPECT_EQ(e.value("d_ms_bucket", {{"le", "0.5"}}), 2.0);
  EXPECT_EQ(e.value("d_ms_bucket", {{"le", "1"}}), 3.0);
  EXPECT_EQ(e.value("d_ms_bucket", {{"le", "+Inf"}}), 3.0);
  EXPECT_EQ(e.value("d_ms_count", {}), 3.0);
  EXPECT_EQ(e.value("d_ms_sum", {}), 1.5);
}

TEST(MetricsRegistry, CallbackFamiliesAreSortedAndEscaped) {
  MetricsRegistry reg;
  ASSERT_TRUE(reg.add_callback("engine_active", "Active.", MetricType::kGauge, {"worker"}, [](SampleWriter& w) {
    w.sample({"1"}, 3);
    w.sample({"0"}, 2.5);
    w.sample({"a\"b"}, 1);
    w.sample({"x", "too many"}, 9);  // wrong count: ignored
  }));
  std::string text = reg.render();
  EXPECT_NE(text.find("# TYPE engine_active gauge\n"
                      "engine_active{worker=\"0\"} 2.5\n"
                      "engine_active{worker=\"1\"} 3\n"
                      "engine_active{worker=\"a\\\"b\"} 1\n"),
            std::string::npos)
      << text;
  parse_or_fail(text);
}

TEST(IstioMetrics, NamesLabelsAndBucketsAreIstios) {
  MetricsRegistry reg;
  IstioMetrics istio(reg);
  MetricsShard& s = reg.add_shard();
  IstioLabels l;
  l.destination_service = "edition.cnn.com";
  l.destination_service_name = "edition.cnn.com";
  l.response_code = "301";
  istio.record_request(s, l, 12.5);
  istio.record_request(s, l, 0.2);
  IstioLabels t = l;
  t.request_protocol = "tcp";
  t.destination_service = "unknown";
  t.destination_service_name = "PassthroughCluster";
  istio.record_tcp_open(s, t);
  istio.record_tcp_close(s, t, 1000, 200);

  std::string text = reg.render();
  Exposition e = parse_or_fail(text);
  const auto* req = e.family("istio_requests_total");
  ASSERT_NE(req, nullptr);
  EXPECT_EQ(req->type, "counter");
  ASSERT_EQ(req->samples.size(), 1u);
  EXPECT_EQ(req->samples[0].value, 2.0);
  std::vector<std::string> want_labels = {
      "reporter", "source_workload", "source_canonical_service", "source_canonical_revision",
      "source_workload_namespace", "source_principal", "source_app", "source_version", "source_cluster",
      "destination_workload", "destination_workload_namespace", "destination_principal", "destination_app",
      "destination_version", "destination_service", "destination_canonical_service",
      "destination_canonical_revision", "destination_service_name", "destination_service_namespace",
      "destination_cluster", "request_protocol", "response_code", "grpc_response_status", "response_flags",
      "connection_security_policy"};
  EXPECT_EQ(req->samples[0].label_order, want_labels);
  EXPECT_EQ(req->samples[0].labels.at("response_code"), "301");
  EXPECT_EQ(req->samples[0].labels.at("destination_service"), "edition.cnn.com");
  EXPECT_EQ(req->samples[0].labels.at("reporter"), "source");

  const auto* dur = e.family("istio_request_duration_milliseconds");
  ASSERT_NE(dur, nullptr);
  EXPECT_EQ(dur->type, "histogram");
  std::vector<std::string> les;
  for (const auto& smp : dur->samples) {
    if (smp.name == "istio_request_duration_milliseconds_bucket") les.push_back(smp.labels.at("le"));
  }
  std::vector<std::string> want_les = {"0.5",   "1",     "5",      "10",     "25",      "50",      "100",
                                       "250",   "500",   "1000",   "2500",   "5000",    "10000",   "30000",
                                       "60000", "300000", "600000", "1800000", "3600000", "+Inf"};
  EXPECT_EQ(les, want_les);
  Labels dl = req->samples[0].labels;
  dl["le"] = "0.5";
  EXPECT_EQ(e.value("istio_request_duration_milliseconds_bucket", dl), 1.0);
  dl["le"] = "25";
  EXPECT_EQ(e.value("istio_request_duration_milliseconds_bucket", dl), 2.0);

  for (std::string_view name : {"istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total",
                                 "istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total"}) {
    const auto* f = e.family(name);
    ASSERT_NE(f, nullptr) << name;
    ASSERT_EQ(f->samples.size(), 1u) << name;
    EXPECT_EQ(f->samples[0].labels.count("response_code"), 0u) << name;
    EXPECT_EQ(f->samples[0].labels.at("request_protocol"), "tcp");
    EXPECT_EQ(f->samples[0].labels.at("destination_service_name"), "PassthroughCluster");
  }
  EXPECT_EQ(e.family("istio_tcp_sent_bytes_total")->samples[0].value, 1000.0);
  EXPECT_EQ(e.family("istio_tcp_received_bytes_total")->samples[0].value, 200.0);
}

// Workers update their own shards while a scraper renders and parses: every
// scrape is well-formed, every value is monotonic between scrapes, and the
// totals after the workers stop are exact.
TEST(MetricsRegistry, ConcurrentUpdatesAndScrapes) {
  MetricsRegistry reg;
  auto c = reg.add_counter("ops_total", "h", {"worker_kind", "code"});
  auto h = reg.add_histogram("lat_ms", "h", {"code"}, {1, 10, 100});
  ASSERT_TRUE(c && h);
  constexpr int kWorkers = 4;
  constexpr int kOps = 50000;
  std::vector<MetricsShard*> shards;
  for (int i = 0; i < kWorkers; ++i) shards.push_back(&reg.add_shard());
  std::atomic<bool> done{false};
  std::string scrape_error;
  int scrapes = 0;
  std::thread scraper([&] {
    std::map<std::pair<std::string, Labels>, double> last;
    while (!done.load() || scrapes == 0) {
      std::string err;
      auto e = parse_exposition(reg.render(), &err);
      ++scrapes;
      if (!e) {
        scrape_error = err;
        return;
      }
      for (const auto& f : e->families) {
        for (const auto& s : f.samples) {
          auto key = std::make_pair(s.name, s.labels);
          auto it = last.find(key);
          if (it != last.end() && s.value < it->second) {
            scrape_error = s.name + " went backwards";
            return;
          }
          last[key] = s.value;
        }
      }
    }
  });
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      MetricsShard& s = *shards[w];
      for (int i = 0; i < kOps; ++i) {
        std::string code = std::to_string(200 + i % 5);  // a few label sets, interned concurrently
        s.add(s.series(*c, {"worker", code}));
        s.observe(s.series(*h, {code}), static_cast<double>(i % 200));
      }
    });
  }
  for (auto& t : workers) t.join();
  done = true;
  scraper.join();
  EXPECT_EQ(scrape_error, "");
  EXPECT_GE(scrapes, 1);
  Exposition e = parse_or_fail(reg.render());
  double total = 0;
  for (int k = 0; k < 5; ++k) {
    std::string code = std::to_string(200 + k);
    EXPECT_EQ(e.value("ops_total", {{"worker_kind", "worker"}, {"code", code}}), kWorkers * kOps / 5.0);
    EXPECT_EQ(e.value("lat_ms_count", {{"code", code}}), kWorkers * kOps / 5.0);
    total += *e.value("ops_total", {{"worker_kind", "worker"}, {"code", code}});
  }
  EXPECT_EQ(total, static_cast<double>(kWorkers) * kOps);
  // i % 200 for i ≡ k (mod 5): exact sums are integers, exactly representable.
  double sum_all = 0;
  for (int k = 0; k < 5; ++k) sum_all += *e.value("lat_ms_sum", {{"code", std::to_string(200 + k)}});
  double want = 0;
  for (int i = 0; i < kOps; ++i) want += i % 200;
  EXPECT_EQ(sum_all, want * kWorkers);
}

}  // namespace
}  // namespace sluice::admin
