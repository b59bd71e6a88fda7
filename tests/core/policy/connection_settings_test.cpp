// A plan's upstream connection settings: the mesh config's defaults, the
// DestinationRule's connectionPool over them (keep-alive field by field, as
// Istio's applyTCPKeepalive), and what `sluicectl explain` says of them.
#include "core/policy/connection_settings.h"

#include <gtest/gtest.h>

namespace sluice::policy {
namespace {

using config::Duration;

TEST(ConnectionSettingsTest, NothingSetIsAllDefaults) {
  ConnectionSettings s = connection_settings(config::MeshConfig{}, EffectivePolicy{});
  EXPECT_FALSE(s.connect_timeout);
  EXPECT_FALSE(s.keepalive);
  EXPECT_FALSE(s.idle_timeout);
  EXPECT_FALSE(s.has_circuit_breakers());
  EXPECT_EQ(s.describe(true), "");
}

TEST(ConnectionSettingsTest, TheMeshConfigIsEveryClustersDefault) {
  config::MeshConfig mesh;
  mesh.connect_timeout = Duration(10'000);
  mesh.tcp_keepalive = config::TCPSettings::KeepAlive{5, Duration(600'000), std::nullopt};
  ConnectionSettings s = connection_settings(mesh, EffectivePolicy{});
  ASSERT_TRUE(s.connect_timeout);
  EXPECT_EQ(s.connect_timeout->count(), 10'000);
  EXPECT_FALSE(s.connect_timeout_from_rule);
  EXPECT_TRUE(s.keepalive);
  EXPECT_EQ(s.keepalive_probes, 5u);
  EXPECT_EQ(s.keepalive_time_s, 600u);
  EXPECT_EQ(s.keepalive_interval_s, 0u) << "unset: the kernel's";
  EXPECT_EQ(s.describe(true),
            "connect timeout 10000 ms (mesh connectTimeout); TCP keep-alive probes 5, time 600 s, interval kernel "
            "default");
}

TEST(ConnectionSettingsTest, TheDestinationRuleReplacesFieldByField) {
  config::MeshConfig mesh;
  mesh.connect_timeout = Duration(10'000);
  mesh.tcp_keepalive = config::TCPSettings::KeepAlive{5, Duration(600'000), Duration(60'000)};
  config::ConnectionPoolSettings pool;
  pool.tcp = config::TCPSettings{};
  pool.tcp->connect_timeout = Duration(250);
  pool.tcp->tcp_keepalive = config::TCPSettings::KeepAlive{0, Duration(1'500), std::nullopt};
  pool.tcp->max_connections = 2;
  pool.http = config::HTTPSettings{};
  pool.http->http1_max_pending_requests = 3;
  pool.http->http2_max_requests = 4;
  pool.http->max_retries = -1;  // invalid (validation says so): none
  pool.http->max_requests_per_connection = 1;
  pool.http->idle_timeout = Duration(30'000);
  EffectivePolicy p;
  p.connection_pool = &pool;
  ConnectionSettings s = connection_settings(mesh, p);
  EXPECT_EQ(s.connect_timeout->count(), 250);
  EXPECT_TRUE(s.connect_timeout_from_rule);
  EXPECT_EQ(s.keepalive_probes, 5u) << "the mesh's, the rule sets none";
  EXPECT_EQ(s.keepalive_time_s, 1u) << "whole seconds";
  EXPECT_EQ(s.keepalive_interval_s, 60u);
  EXPECT_EQ(s.max_connections, 2);
  EXPECT_EQ(s.max_pending_requests, 3);
  EXPECT_EQ(s.max_requests, 4);
  EXPECT_EQ(s.max_retries, 0);
  EXPECT_TRUE(s.has_circuit_breakers());
  EXPECT_EQ(s.describe(true),
            "connect timeout 250 ms (DestinationRule); TCP keep-alive probes 5, time 1 s, interval 60 s; pooled "
            "connections idle up to 30000 ms; one request per upstream connection (no keep-alive); at most 2 upstream "
            "connection(s) in use, other requests wait (at most 3 pending, connecting ones included, then 503 UO); at most 4 "
            "requests under way (then "
            "503 UO)");
  // TCP: no pool, no queue, no request or retry limits.
  EXPECT_EQ(s.describe(false),
            "connect timeout 250 ms (DestinationRule); TCP keep-alive probes 5, time 1 s, interval 60 s; at most 2 "
            "upstream connection(s), more are closed at once (UO)");
}

// connectionPool.tcp.idleTimeout: a TCP proxy connection's idle timeout, and
// the pool's when http.idleTimeout is unset (Istio fills the cluster's HTTP
// idle_timeout from it); maxConnectionDuration bounds both kinds.
TEST(ConnectionSettingsTest, TcpIdleTimeoutAndMaxConnectionDuration) {
  config::ConnectionPoolSettings pool;
  pool.tcp = config::TCPSettings{};
  pool.tcp->idle_timeout = Duration(5'000);
  pool.tcp->max_connection_duration = Duration(60'000);
  EffectivePolicy p;
  p.connection_pool = &pool;
  ConnectionSettings s = connection_settings(config::MeshConfig{}, p);
  EXPECT_EQ(s.tcp_idle_timeout, Duration(5'000));
  EXPECT_EQ(s.idle_timeout, Duration(5'000)) << "the pool's too, without http.idleTimeout";
  EXPECT_EQ(s.max_connection_duration, Duration(60'000));
  EXPECT_EQ(s.describe(false), "idle timeout 5000 ms; closed 60000 ms after it was accepted (DT)");
  EXPECT_EQ(s.describe(true),
            "pooled connections idle up to 5000 ms; an upstream connection carries no request after 60000 ms");

  pool.http = config::HTTPSettings{};
  pool.http->idle_timeout = Duration(1'000);
  s = connection_settings(config::MeshConfig{}, p);
  EXPECT_EQ(s.idle_timeout, Duration(1'000)) << "http.idleTimeout wins for the pool";
  EXPECT_EQ(s.tcp_idle_timeout, Duration(5'000));

  pool.http.reset();
  pool.tcp->idle_timeout = Duration(0);
  pool.tcp->max_connection_duration.reset();
  s = connection_settings(config::MeshConfig{}, p);
  EXPECT_EQ(s.describe(false), "no idle timeout");
  EXPECT_EQ(s.describe(true), "pooled connections idle without bound");
}

}  // namespace
}  // namespace sluice::policy
