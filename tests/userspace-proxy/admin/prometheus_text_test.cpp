#include "userspace-proxy/admin/prometheus_text.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

namespace sluice::admin {
namespace {

std::string number(double v) {
  std::string s;
  append_number(s, v);
  return s;
}

TEST(PrometheusText, MetricAndLabelNames) {
  EXPECT_TRUE(valid_metric_name("istio_requests_total"));
  EXPECT_TRUE(valid_metric_name(":recording:rule"));
  EXPECT_TRUE(valid_metric_name("_x9"));
  EXPECT_FALSE(valid_metric_name(""));
  EXPECT_FALSE(valid_metric_name("9x"));
  EXPECT_FALSE(valid_metric_name("a-b"));
  EXPECT_FALSE(valid_metric_name("a b"));
  EXPECT_TRUE(valid_label_name("response_code"));
  EXPECT_TRUE(valid_label_name("_x"));
  EXPECT_FALSE(valid_label_name("__name__"));
  EXPECT_FALSE(valid_label_name("a:b"));
  EXPECT_FALSE(valid_label_name("1a"));
  EXPECT_FALSE(valid_label_name(""));
}

TEST(PrometheusText, Escaping) {
  std::string v;
  append_label_value(v, "a\\b\"c\nd\te");
  EXPECT_EQ(v, "a\\\\b\\\"c\\nd\te");
  std::string h;
  append_help_text(h, "a\\b\"c\nd");
  EXPECT_EQ(h, "a\\\\b\"c\\nd");
}

TEST(PrometheusText, Numbers) {
  EXPECT_EQ(number(0), "0");
  EXPECT_EQ(number(0.5), "0.5");
  EXPECT_EQ(number(1), "1");
  EXPECT_EQ(number(600000), "600000");    // not 6e+05
  EXPECT_EQ(number(3600000), "3600000");  // not 3.6e+06
  EXPECT_EQ(number(-3), "-3");
  EXPECT_EQ(number(0.1), "0.1");
  EXPECT_EQ(number(1e300), "1e+300");
  EXPECT_EQ(number(9007199254740992.0), "9007199254740992");  // 2^53: shortest form
  EXPECT_EQ(number(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(number(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(number(std::nan("")), "NaN");
  std::string u;
  append_number(u, UINT64_MAX);
  EXPECT_EQ(u, "18446744073709551615");
  // Shortest round trip.
  EXPECT_EQ(std::stod(number(0.1 + 0.2)), 0.1 + 0.2);
}

TEST(PrometheusText, Utf8) {
  EXPECT_TRUE(valid_utf8(""));
  EXPECT_TRUE(valid_utf8("plain"));
  EXPECT_TRUE(valid_utf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF"));
  EXPECT_FALSE(valid_utf8("\xC0\xAF"));          // overlong
  EXPECT_FALSE(valid_utf8("\xE0\x80\xAF"));      // overlong
  EXPECT_FALSE(valid_utf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(valid_utf8("\xE2\x82"));          // truncated
  EXPECT_FALSE(valid_utf8("\x80"));              // lone continuation
  EXPECT_FALSE(valid_utf8("\xFF"));
  // One U+FFFD per maximal ill-formed subpart.
  EXPECT_EQ(sanitize_utf8("a\xE2\x82" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(sanitize_utf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(sanitize_utf8("\xF0\x9F\x98"), "\xEF\xBF\xBD");
  EXPECT_EQ(sanitize_utf8("ok \xC3\xA9"), "ok \xC3\xA9");
}

}  // namespace
}  // namespace sluice::admin
