#include "userspace-proxy/admin/metrics_registry.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <new>

#include "userspace-proxy/admin/prometheus_text.h"

namespace sluice::admin {

namespace detail {

struct Series {
  std::vector<std::string> values;
  uint32_t slot;
};

struct Family {
  uint32_t id = 0;
  std::string name;
  std::string help;
  MetricType type = MetricType::kCounter;
  std::vector<std::string> label_names;
  std::vector<double> bounds;  // histograms: finite, strictly increasing; +Inf is implicit
  uint32_t width = 1;          // value slots per series
  SampleCallback callback;     // callback families only
  // Appended to by interning, read by render(): guarded by the registry's
  // mutex. Everything above is immutable once registered, so workers read it
  // without the lock.
  mutable std::vector<std::unique_ptr<Series>> series;
};

}  // namespace detail

using detail::Family;
using detail::Series;

namespace {

constexpr uint32_t kNone = UINT32_MAX;
constexpr std::size_t kMaxBuckets = 256;

void append_labels(std::string& out, const std::vector<std::string>& names, std::span<const std::string> values,
                   std::string_view le = {}) {
  if (names.empty() && le.empty()) return;
  out += '{';
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ',';
    out += names[i];
    out += "=\"";
    append_label_value(out, values[i]);
    out += '"';
  }
  if (!le.empty()) {
    if (!names.empty()) out += ',';
    out += "le=\"";
    out += le;
    out += '"';
  }
  out += '}';
}

void append_header(std::string& out, const Family& f) {
  out += "# HELP ";
  out += f.name;
  out += ' ';
  append_help_text(out, f.help);
  out += "\n# TYPE ";
  out += f.name;
  out += ' ';
  out += to_string(f.type);
  out += '\n';
}

// Collects a callback family's samples so they can be sorted like the rest.
class CollectingWriter : public SampleWriter {
 public:
  explicit CollectingWriter(std::size_t label_count) : label_count_(label_count) {}
  void sample(std::span<const std::string_view> label_values, double value) override {
    if (label_values.size() != label_count_) return;
    std::vector<std::string> v;
    v.reserve(label_values.size());
    for (std::string_view s : label_values) v.push_back(valid_utf8(s) ? std::string(s) : sanitize_utf8(s));
    samples.emplace_back(std::move(v), value);
  }
  std::vector<std::pair<std::vector<std::string>, double>> samples;

 private:
  std::size_t label_count_;
};

}  // namespace

std::string_view to_string(MetricType type) {
  switch (type) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kHistogram: return "histogram";
  }
  return "untyped";
}

const std::string& CounterFamily::name() const { return f_->name; }
std::size_t CounterFamily::label_count() const { return f_->label_names.size(); }
const std::string& HistogramFamily::name() const { return f_->name; }
std::size_t HistogramFamily::label_count() const { return f_->label_names.size(); }
std::span<const double> HistogramFamily::bounds() const { return f_->bounds; }

void encode_series_key(std::string& out, uint32_t family_id, std::span<const std::string_view> values) {
  auto put32 = [&out](uint32_t v) {
    char b[4] = {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16),
                 static_cast<char>(v >> 24)};
    out.append(b, 4);
  };
  put32(family_id);
  for (std::string_view v : values) {
    put32(static_cast<uint32_t>(v.size()));
    out.append(v);
  }
}

// ---------------------------------------------------------------- shard

MetricsShard::MetricsShard(MetricsRegistry& registry, uint32_t directory_size)
    : registry_(registry),
      directory_(new std::atomic<Chunk*>[directory_size]),
      directory_size_(directory_size) {
  for (uint32_t i = 0; i < directory_size_; ++i) directory_[i].store(nullptr, std::memory_order_relaxed);
}

MetricsShard::~MetricsShard() {
  for (uint32_t i = 0; i < directory_size_; ++i) delete directory_[i].load(std::memory_order_relaxed);
}

std::atomic<uint64_t>* MetricsShard::slot(uint32_t index) {
  uint32_t c = index / kChunkSlots;
  if (c >= directory_size_) return nullptr;
  Chunk* chunk = directory_[c].load(std::memory_order_relaxed);  // only this thread stores it
  if (chunk == nullptr) {
    chunk = new (std::nothrow) Chunk;
    if (chunk == nullptr) return nullptr;
    for (auto& v : chunk->v) v.store(0, std::memory_order_relaxed);
    // Release: a scraper that sees the pointer sees the zeroed slots.
    directory_[c].store(chunk, std::memory_order_release);
  }
  return &chunk->v[index % kChunkSlots];
}

uint64_t MetricsShard::read(uint32_t index) const {
  uint32_t c = index / kChunkSlots;
  if (c >= directory_size_) return 0;
  const Chunk* chunk = directory_[c].load(std::memory_order_acquire);
  return chunk == nullptr ? 0 : chunk->v[index % kChunkSlots].load(std::memory_order_relaxed);
}

uint32_t MetricsShard::lookup(const Family* family, std::span<const std::string_view> values) {
  if (values.size() != family->label_names.size()) {
    registry_.count_dropped();
    return kNone;
  }
  key_.clear();
  encode_series_key(key_, family->id, values);
  Recent& recent = recent_[family->id % kRecent];
  if (recent.key == key_) return recent.first;  // the key holds the family id: no false hit
  uint32_t first;
  if (auto it = cache_.find(std::string_view(key_)); it != cache_.end()) {
    first = it->second;
  } else {
    first = registry_.intern(family, values, key_);
    if (first == kNone) {
      registry_.count_dropped();
      return kNone;
    }
    cache_.emplace(key_, first);
  }
  recent.key.assign(key_);  // capacity kept: no allocation once warm
  recent.first = first;
  return first;
}

CounterSeries MetricsShard::series(const CounterFamily& family, std::span<const std::string_view> values) {
  return CounterSeries{lookup(family.f_, values)};
}

HistogramSeries MetricsShard::series(const HistogramFamily& family, std::span<const std::string_view> values) {
  uint32_t first = lookup(family.f_, values);
  return first == kNone ? HistogramSeries{} : HistogramSeries{first, family.f_};
}

void MetricsShard::observe(HistogramSeries s, double value) {
  if (!s.valid() || std::isnan(value)) return;
  const std::vector<double>& bounds = s.family->bounds;
  // Prometheus buckets are "less than or equal": the first bound >= value.
  std::size_t bucket = static_cast<std::size_t>(std::lower_bound(bounds.begin(), bounds.end(), value) - bounds.begin());
  if (std::atomic<uint64_t>* b = slot(s.slot + static_cast<uint32_t>(bucket))) bump(*b, 1);
  if (std::atomic<uint64_t>* sum = slot(s.slot + static_cast<uint32_t>(bounds.size()) + 1)) {
    double total = std::bit_cast<double>(sum->load(std::memory_order_relaxed)) + value;
    sum->store(std::bit_cast<uint64_t>(total), std::memory_order_relaxed);
  }
}

// ---------------------------------------------------------------- registry

MetricsRegistry::MetricsRegistry(MetricsRegistryOptions options) : options_(options) {
  if (options_.max_slots == 0) options_.max_slots = MetricsShard::kChunkSlots;
  add_callback("sluice_metrics_dropped_updates_total",
               "Metric updates dropped: the registry was full (too many label sets) or the label count was wrong.",
               MetricType::kCounter, {}, [this](SampleWriter& w) {
                 w.sample({}, static_cast<double>(dropped_updates()));
               });
}

MetricsRegistry::~MetricsRegistry() = default;

std::optional<std::string> MetricsRegistry::check_new_family(const std::string& name,
                                                             const std::vector<std::string>& labels) const {
  if (!valid_metric_name(name)) return "invalid metric name \"" + name + "\"";
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (!valid_label_name(labels[i])) return name + ": invalid label name \"" + labels[i] + "\"";
    for (std::size_t j = 0; j < i; ++j) {
      if (labels[i] == labels[j]) return name + ": label \"" + labels[i] + "\" given twice";
    }
  }
  std::lock_guard lock(mu_);
  for (const auto& f : families_) {
    if (f->name == name) return "metric \"" + name + "\" is already registered";
  }
  return std::nullopt;
}

const Family* MetricsRegistry::add_family(std::unique_ptr<Family> f) {
  std::lock_guard lock(mu_);
  for (const auto& g : families_) {
    if (g->name == f->name) return nullptr;  // lost a registration race
  }
  f->id = static_cast<uint32_t>(families_.size());
  families_.push_back(std::move(f));
  return families_.back().get();
}

std::optional<CounterFamily> MetricsRegistry::add_counter(std::string name, std::string help,
                                                          std::vector<std::string> label_names, std::string* error) {
  if (auto err = check_new_family(name, label_names)) {
    if (error) *error = *err;
    return std::nullopt;
  }
  auto f = std::make_unique<Family>();
  f->name = std::move(name);
  f->help = std::move(help);
  f->type = MetricType::kCounter;
  f->label_names = std::move(label_names);
  f->width = 1;
  const Family* added = add_family(std::move(f));
  if (added == nullptr) {
    if (error) *error = "metric is already registered";
    return std::nullopt;
  }
  // An unlabelled counter exists from the start: it reads 0, not "absent".
  if (added->label_names.empty()) {
    std::string key;
    encode_series_key(key, added->id, {});
    intern(added, {}, key);
  }
  return CounterFamily(added);
}

std::optional<HistogramFamily> MetricsRegistry::add_histogram(std::string name, std::string help,
                                                              std::vector<std::string> label_names,
                                                              std::vector<double> bounds, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<HistogramFamily> {
    if (error) *error = std::move(why);
    return std::nullopt;
  };
  if (auto err = check_new_family(name, label_names)) return fail(*err);
  if (std::find(label_names.begin(), label_names.end(), "le") != label_names.end()) {
    return fail(name + ": \"le\" is the bucket label of a histogram");
  }
  if (bounds.empty() || bounds.size() > kMaxBuckets) {
    return fail(name + ": between 1 and " + std::to_string(kMaxBuckets) + " bucket bounds");
  }
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
      return fail(name + ": bucket bounds must be finite and strictly increasing (+Inf is implicit)");
    }
  }
  auto f = std::make_unique<Family>();
  f->name = std::move(name);
  f->help = std::move(help);
  f->type = MetricType::kHistogram;
  f->label_names = std::move(label_names);
  f->bounds = std::move(bounds);
  f->width = static_cast<uint32_t>(f->bounds.size()) + 2;  // buckets, +Inf, sum
  const Family* added = add_family(std::move(f));
  if (added == nullptr) return fail("metric is already registered");
  return HistogramFamily(added);
}

bool MetricsRegistry::add_callback(std::string name, std::string help, MetricType type,
                                   std::vector<std::string> label_names, SampleCallback callback, std::string* error) {
  if (type == MetricType::kHistogram || !callback) {
    if (error) *error = name + ": a callback family is a counter or a gauge, with a callback";
    return false;
  }
  if (auto err = check_new_family(name, label_names)) {
    if (error) *error = *err;
    return false;
  }
  auto f = std::make_unique<Family>();
  f->name = std::move(name);
  f->help = std::move(help);
  f->type = type;
  f->label_names = std::move(label_names);
  f->width = 0;
  f->callback = std::move(callback);
  if (add_family(std::move(f)) == nullptr) {
    if (error) *error = "metric is already registered";
    return false;
  }
  return true;
}

MetricsShard& MetricsRegistry::add_shard() {
  uint32_t directory = (options_.max_slots + MetricsShard::kChunkSlots - 1) / MetricsShard::kChunkSlots;
  std::unique_ptr<MetricsShard> s(new MetricsShard(*this, directory));
  std::lock_guard lock(mu_);
  shards_.push_back(std::move(s));
  return *shards_.back();
}

uint32_t MetricsRegistry::slots_used() const {
  std::lock_guard lock(mu_);
  return next_slot_;
}

uint32_t MetricsRegistry::intern(const Family* family, std::span<const std::string_view> values,
                                 std::string_view key) {
  std::lock_guard lock(mu_);
  if (auto it = interned_.find(key); it != interned_.end()) return it->second;
  // A series never straddles two chunks, so one chunk lookup serves it all.
  uint32_t first = next_slot_;
  uint32_t room = MetricsShard::kChunkSlots - first % MetricsShard::kChunkSlots;
  if (room < family->width) first += room;
  if (first > options_.max_slots || options_.max_slots - first < family->width) return kNone;
  next_slot_ = first + family->width;

  auto s = std::make_unique<Series>();
  s->values.reserve(values.size());
  for (std::string_view v : values) s->values.push_back(valid_utf8(v) ? std::string(v) : sanitize_utf8(v));
  s->slot = first;
  family->series.push_back(std::move(s));
  interned_.emplace(std::string(key), first);
  return first;
}

std::string MetricsRegistry::render() const {
  struct View {
    const Family* family;
    std::vector<const Series*> series;
  };
  std::vector<View> views;
  std::vector<const MetricsShard*> shards;
  {
    // Only pointers are copied under the lock: series and shards are never
    // freed before the registry, and a series' values never change.
    std::lock_guard lock(mu_);
    views.reserve(families_.size());
    for (const auto& f : families_) {
      View v{f.get(), {}};
      v.series.reserve(f->series.size());
      for (const auto& s : f->series) v.series.push_back(s.get());
      views.push_back(std::move(v));
    }
    shards.reserve(shards_.size());
    for (const auto& s : shards_) shards.push_back(s.get());
  }
  std::sort(views.begin(), views.end(), [](const View& a, const View& b) { return a.family->name < b.family->name; });

  auto sum_slot = [&shards](uint32_t index) {
    uint64_t total = 0;
    for (const MetricsShard* s : shards) total += s->read(index);
    return total;
  };

  std::string out;
  out.reserve(4096);
  for (View& v : views) {
    const Family& f = *v.family;
    append_header(out, f);
    if (f.callback) {
      CollectingWriter w(f.label_names.size());
      f.callback(w);
      std::sort(w.samples.begin(), w.samples.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      for (const auto& [values, value] : w.samples) {
        out += f.name;
        append_labels(out, f.label_names, values);
        out += ' ';
        append_number(out, value);
        out += '\n';
      }
      continue;
    }
    std::sort(v.series.begin(), v.series.end(), [](const Series* a, const Series* b) { return a->values < b->values; });
    for (const Series* s : v.series) {
      if (f.type != MetricType::kHistogram) {
        out += f.name;
        append_labels(out, f.label_names, s->values);
        out += ' ';
        append_number(out, sum_slot(s->slot));
        out += '\n';
        continue;
      }
      uint64_t cumulative = 0;
      std::string le;
      for (std::size_t b = 0; b <= f.bounds.size(); ++b) {
        cumulative += sum_slot(s->slot + static_cast<uint32_t>(b));
        le.clear();
        if (b < f.bounds.size()) {
          append_number(le, f.bounds[b]);
        } else {
          le = "+Inf";
        }
        out += f.name;
        out += "_bucket";
        append_labels(out, f.label_names, s->values, le);
        out += ' ';
        append_number(out, cumulative);
        out += '\n';
      }
      double sum = 0;
      uint32_t sum_index = s->slot + static_cast<uint32_t>(f.bounds.size()) + 1;
      for (const MetricsShard* sh : shards) sum += std::bit_cast<double>(sh->read(sum_index));
      out += f.name;
      out += "_sum";
      append_labels(out, f.label_names, s->values);
      out += ' ';
      append_number(out, sum);
      out += '\n';
      out += f.name;
      out += "_count";
      append_labels(out, f.label_names, s->values);
      out += ' ';
      append_number(out, cumulative);
      out += '\n';
    }
  }
  return out;
}

}  // namespace sluice::admin
