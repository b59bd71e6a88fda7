// Prometheus metrics for the data plane: counters and histograms with label
// sets, updated by io_uring workers without locks or locked instructions, and
// rendered in the text exposition format by the admin thread.
//
//   MetricsRegistry registry;
//   auto requests = *registry.add_counter("istio_requests_total", "...", {"response_code", ...});
//   MetricsShard& shard = registry.add_shard();        // one per worker thread, at startup
//   ... on the worker:  shard.add(shard.series(requests, {"200", ...}));
//   ... on the admin thread:  std::string text = registry.render();
//
// Design:
// - A label set is interned once, registry-wide, to a small integer: the
//   index of the first of the series' value slots. Interning takes the
//   registry's mutex; each shard caches what it interned (an ordinary hash map
//   only its worker touches), so a worker takes the mutex only the first time
//   it sees a label set. Callers that know their labels early (per connection,
//   per route) keep the returned series and skip even the hash lookup.
// - Each shard owns its value slots: a directory of lazily allocated chunks of
//   std::atomic<uint64_t>. Only the owning thread writes a shard, with a
//   relaxed load and store (no read-modify-write instruction); the scraper
//   reads every shard with relaxed loads and sums. Chunks are published with
//   release/acquire, so a scraper never sees an uninitialised slot.
// - Histograms store per-bucket counts (not cumulative) plus the sum; the
//   scraper makes them cumulative and takes _count from the +Inf bucket, so
//   _count always equals the +Inf bucket and every bucket is monotonic
//   between scrapes. The sum may be one observation ahead of or behind the
//   buckets in a scrape that races a worker; Prometheus tolerates that.
// - Cardinality is bounded: once max_slots are taken, updates for new label
//   sets are dropped and counted (sluice_metrics_dropped_updates_total).
//   Series are never deleted.
// - Output is deterministic: families by name, series by label values
//   (bytewise), label names in registration order.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sluice::admin {

enum class MetricType : uint8_t { kCounter, kGauge, kHistogram };
std::string_view to_string(MetricType type);  // "counter", "gauge", "histogram"

class MetricsRegistry;
class MetricsShard;

namespace detail {
struct Family;
struct Series;
}

// A counter family (a metric name with its label names).
class CounterFamily {
 public:
  const std::string& name() const;
  std::size_t label_count() const;

 private:
  friend class MetricsRegistry;
  friend class MetricsShard;
  explicit CounterFamily(const detail::Family* f) : f_(f) {}
  const detail::Family* f_;
};

// A histogram family: label names and bucket upper bounds.
class HistogramFamily {
 public:
  const std::string& name() const;
  std::size_t label_count() const;
  std::span<const double> bounds() const;

 private:
  friend class MetricsRegistry;
  friend class MetricsShard;
  explicit HistogramFamily(const detail::Family* f) : f_(f) {}
  const detail::Family* f_;
};

// One interned label set of a counter family. Valid in every shard of the
// registry that made it. A default-constructed (or dropped) series ignores
// updates.
struct CounterSeries {
  static constexpr uint32_t kNone = UINT32_MAX;
  uint32_t slot = kNone;
  bool valid() const { return slot != kNone; }
};

struct HistogramSeries {
  static constexpr uint32_t kNone = UINT32_MAX;
  uint32_t slot = kNone;
  const detail::Family* family = nullptr;
  bool valid() const { return slot != kNone; }
};

// The values of one worker thread. Not thread-safe for writers: exactly one
// thread may call series()/add()/observe() on a shard. Any thread may scrape.
class MetricsShard {
 public:
  MetricsShard(const MetricsShard&) = delete;
  MetricsShard& operator=(const MetricsShard&) = delete;
  ~MetricsShard();

  // The series for these label values (in the family's label-name order).
  // A wrong number of values, or a full registry, gives an invalid series.
  CounterSeries series(const CounterFamily& family, std::span<const std::string_view> values);
  CounterSeries series(const CounterFamily& family, std::initializer_list<std::string_view> values) {
    return series(family, std::span<const std::string_view>(values.begin(), values.size()));
  }
  HistogramSeries series(const HistogramFamily& family, std::span<const std::string_view> values);
  HistogramSeries series(const HistogramFamily& family, std::initializer_list<std::string_view> values) {
    return series(family, std::span<const std::string_view>(values.begin(), values.size()));
  }

  void add(CounterSeries s, uint64_t n = 1) {
    if (!s.valid()) return;
    if (std::atomic<uint64_t>* v = slot(s.slot)) bump(*v, n);
  }
  void observe(HistogramSeries s, double value);

 private:
  friend class MetricsRegistry;
  static constexpr uint32_t kChunkSlots = 512;  // 4 KiB of values per chunk
  struct Chunk {
    std::atomic<uint64_t> v[kChunkSlots];
  };

  MetricsShard(MetricsRegistry& registry, uint32_t directory_size);

  static void bump(std::atomic<uint64_t>& v, uint64_t n) {
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  // The slot, allocating its chunk on first use (owner thread only); nullptr
  // if the allocation failed (the update is dropped, not thrown).
  std::atomic<uint64_t>* slot(uint32_t index);
  // Any thread: 0 for a slot whose chunk does not exist yet.
  uint64_t read(uint32_t index) const;
  uint32_t lookup(const detail::Family* family, std::span<const std::string_view> values);

  MetricsRegistry& registry_;
  std::unique_ptr<std::atomic<Chunk*>[]> directory_;
  uint32_t directory_size_;
  // Label-set cache: encoded (family, values) -> first slot. Owner thread only.
  struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, uint32_t, KeyHash, std::equal_to<>> cache_;
  std::string key_;  // reused encoding buffer
  // The last label set each family looked up (by family id, direct-mapped):
  // a connection's requests repeat their labels, so most lookups end here,
  // with a compare instead of hashing the whole key. Owner thread only.
  struct Recent {
    std::string key;
    uint32_t first = 0;
  };
  static constexpr std::size_t kRecent = 16;
  std::array<Recent, kRecent> recent_;
};

// Receives the samples of a callback family at scrape time.
class SampleWriter {
 public:
  virtual ~SampleWriter() = default;
  // Values in the family's label-name order; a wrong count is ignored.
  virtual void sample(std::span<const std::string_view> label_values, double value) = 0;
  void sample(std::initializer_list<std::string_view> label_values, double value) {
    sample(std::span<const std::string_view>(label_values.begin(), label_values.size()), value);
  }
};
using SampleCallback = std::function<void(SampleWriter&)>;

struct MetricsRegistryOptions {
  // Upper bound on value slots per shard, i.e. on memory and cardinality: a
  // counter series takes 1 slot, a histogram series (buckets + 2). 2^20 slots
  // = 8 MiB per shard when full; chunks are only allocated as series appear.
  uint32_t max_slots = 1u << 20;
};

class MetricsRegistry {
 public:
  explicit MetricsRegistry(MetricsRegistryOptions options = {});
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Registration (any time, any thread; normally at startup). nullopt with a
  // reason in *error for an invalid or duplicate name, an invalid label name,
  // or (histograms) bounds that are not finite and strictly increasing.
  std::optional<CounterFamily> add_counter(std::string name, std::string help,
                                           std::vector<std::string> label_names, std::string* error = nullptr);
  std::optional<HistogramFamily> add_histogram(std::string name, std::string help,
                                               std::vector<std::string> label_names, std::vector<double> bounds,
                                               std::string* error = nullptr);
  // A family whose samples a callback produces at scrape time (e.g. engine
  // counters that already live elsewhere). The callback runs on the scraping
  // thread and must be safe to call from it. kHistogram is not accepted.
  bool add_callback(std::string name, std::string help, MetricType type, std::vector<std::string> label_names,
                    SampleCallback callback, std::string* error = nullptr);

  // A new shard, owned by the registry (valid as long as it is). One per
  // writing thread.
  MetricsShard& add_shard();

  // The whole registry in the text exposition format (0.0.4).
  std::string render() const;

  // Updates dropped: the registry was full or the label count was wrong.
  uint64_t dropped_updates() const { return dropped_.load(std::memory_order_relaxed); }
  uint32_t slots_used() const;

 private:
  friend class MetricsShard;

  std::optional<std::string> check_new_family(const std::string& name, const std::vector<std::string>& labels) const;
  const detail::Family* add_family(std::unique_ptr<detail::Family> f);
  // Registry-wide interning (takes the mutex): the first slot of the label
  // set `key` encodes, made if new and there is room; kNone otherwise.
  uint32_t intern(const detail::Family* family, std::span<const std::string_view> values, std::string_view key);
  void count_dropped() { dropped_.fetch_add(1, std::memory_order_relaxed); }

  MetricsRegistryOptions options_;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<detail::Family>> families_;                  // guarded by mu_
  struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, uint32_t, KeyHash, std::equal_to<>> interned_;  // guarded by mu_
  std::vector<std::unique_ptr<MetricsShard>> shards_;                      // guarded by mu_
  uint32_t next_slot_ = 0;                                                 // guarded by mu_
  std::atomic<uint64_t> dropped_{0};
};

// The encoding of a (family, label values) key used by the interning maps:
// family id, then each value length-prefixed, so no two label sets collide
// whatever bytes the values contain. Exposed for tests.
void encode_series_key(std::string& out, uint32_t family_id, std::span<const std::string_view> values);

}  // namespace sluice::admin
