// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Sluice's kernel side: redirect outbound TCP connect() to the local proxy
 * with Istio's include/exclude precedence, and answer the proxy's
 * getsockopt(SO_ORIGINAL_DST) from what connect() saw.
 *
 *   cgroup/connect4|6  decide; on redirect record the original destination
 *                      by socket cookie and rewrite the destination.
 *   sockops            client ESTABLISHED: move the record to a map keyed by
 *                      the 4-tuple (the only key the proxy's accepted socket
 *                      shares with the client's); proxy side: forget it when
 *                      the accepted socket closes.
 *   cgroup/getsockopt  SO_ORIGINAL_DST on the accepted socket.
 *   sk_msg             with SLUICE_F_SOCKET_REDIRECT: the redirected hop's two
 *                      sockets (both on this host; sockops put them in
 *                      sluice_socks) hand each other their bytes at sendmsg()
 *                      instead of going through loopback TCP/IP, until the
 *                      receiver falls sock_queue_limit bytes behind (then
 *                      TCP and its flow control, for good).
 *
 * Every decision here is a map lookup; the rules themselves are compiled by
 * core/decision (the same code `sluicectl explain` runs).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "bpf/sluice_maps.h"

#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define SOL_IP 0
#define SOL_TCP 6
#define SOL_IPV6 41
#define ENOENT 2

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sluice_config);
} sluice_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLUICE_CTR_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} sluice_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SLUICE_MAX_RANGES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sluice_lpm_v4);
	__type(value, struct sluice_rule_ref);
} sluice_incl_v4 SEC(".maps"), sluice_excl_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SLUICE_MAX_RANGES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sluice_lpm_v6);
	__type(value, struct sluice_rule_ref);
} sluice_incl_v6 SEC(".maps"), sluice_excl_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_MAX_PORTS);
	__type(key, struct sluice_port_key);
	__type(value, struct sluice_rule_ref);
} sluice_incl_pt SEC(".maps"), sluice_excl_pt SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLUICE_MAX_PENDING);
	__type(key, __u64); /* socket cookie */
	__type(value, struct sluice_orig_dst);
} sluice_orig_ck SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLUICE_MAX_TUPLES);
	__type(key, struct sluice_tuple_key);
	__type(value, struct sluice_orig_dst);
} sluice_orig_4t SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, SLUICE_MAX_SOCKS);
	__type(key, struct sluice_sock_key);
	__type(value, __u64);
} sluice_socks SEC(".maps");

/* Kernel address of each socket in sluice_socks, written before the socket
 * is added: its peer reads it once, at its first send, to check later how
 * many bytes it has handed over unread (sk_msg programs cannot look a socket
 * up in the SOCKHASH: they have no bpf_sk_release). LRU: a closed socket's
 * entry is only ever read by a socket that found it in sluice_socks, i.e.
 * after its key was written again; the proxy side's close deletes both. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLUICE_MAX_SOCKS);
	__type(key, struct sluice_sock_key);
	__type(value, __u64);
} sluice_sock_addr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sluice_sk_path);
} sluice_sk_path SEC(".maps");

static __always_inline void count(__u32 counter)
{
	__u64 *value = bpf_map_lookup_elem(&sluice_counters, &counter);

	/* Per-CPU, but sockops and sk_msg run preemptible (only migration
	 * is disabled): an atomic add loses no count. */
	if (value)
		__sync_fetch_and_add(value, 1);
}

static __always_inline struct sluice_config *config(void)
{
	__u32 zero = 0;
	struct sluice_config *cfg = bpf_map_lookup_elem(&sluice_config, &zero);

	if (!cfg || !(cfg->flags & SLUICE_F_ENABLED))
		return 0;
	return cfg;
}

static __always_inline __u32 counter_of(__u32 rule)
{
	switch (rule) {
	case SLUICE_RULE_EXCLUDED_PORT: return SLUICE_CTR_EXCLUDED_PORT;
	case SLUICE_RULE_OWN_MARK:
	case SLUICE_RULE_OWN_UID:
	case SLUICE_RULE_OWN_GID: return SLUICE_CTR_OWN_TRAFFIC;
	case SLUICE_RULE_LOOPBACK: return SLUICE_CTR_LOOPBACK;
	case SLUICE_RULE_PROXY_ADDRESS: return SLUICE_CTR_PROXY_ADDRESS;
	case SLUICE_RULE_EXCLUDED_RANGE: return SLUICE_CTR_EXCLUDED_RANGE;
	case SLUICE_RULE_INCLUDED_PORT:
	case SLUICE_RULE_INCLUDED_RANGE: return SLUICE_CTR_INTERCEPTED;
	case SLUICE_RULE_NO_PROXY_FAMILY: return SLUICE_CTR_NO_PROXY_FAMILY;
	default: return SLUICE_CTR_NOT_INCLUDED;
	}
}

static __always_inline int redirects(__u32 rule)
{
	return rule == SLUICE_RULE_INCLUDED_PORT || rule == SLUICE_RULE_INCLUDED_RANGE;
}

/* The part of the precedence that does not depend on the address family:
 * excluded ports, then the proxy's own sockets. Returns SLUICE_RULE_COUNT
 * when undecided. */
static __always_inline __u32 decide_port_and_owner(const struct sluice_config *cfg,
						  struct bpf_sock_addr *ctx, __u16 port)
{
	struct sluice_port_key pk = { .port = port };

	if ((cfg->flags & SLUICE_F_EXCLUDE_ALL_PORTS) ||
	    bpf_map_lookup_elem(&sluice_excl_pt, &pk))
		return SLUICE_RULE_EXCLUDED_PORT;

	if (cfg->flags & SLUICE_F_MATCH_MARK) {
		struct bpf_sock *sk = ctx->sk;

		if (sk && sk->mark == cfg->mark)
			return SLUICE_RULE_OWN_MARK;
	}
	if (cfg->flags & (SLUICE_F_MATCH_UID | SLUICE_F_MATCH_GID)) {
		__u64 ugid = bpf_get_current_uid_gid();

		if ((cfg->flags & SLUICE_F_MATCH_UID) && (__u32)ugid == cfg->uid)
			return SLUICE_RULE_OWN_UID;
		if ((cfg->flags & SLUICE_F_MATCH_GID) && (__u32)(ugid >> 32) == cfg->gid)
			return SLUICE_RULE_OWN_GID;
	}
	return SLUICE_RULE_COUNT;
}

static __always_inline __u32 included_by_port(const struct sluice_config *cfg, __u16 port)
{
	struct sluice_port_key pk = { .port = port };

	if ((cfg->flags & SLUICE_F_INCLUDE_ALL_PORTS) ||
	    bpf_map_lookup_elem(&sluice_incl_pt, &pk))
		return 1;
	return 0;
}

/* ip4 in network byte order. */
static __always_inline __u32 decide_v4(const struct sluice_config *cfg,
				       struct bpf_sock_addr *ctx, __u32 ip4, __u16 port)
{
	struct sluice_lpm_v4 key = { .prefixlen = 32 };
	__u32 rule = decide_port_and_owner(cfg, ctx, port);

	if (rule != SLUICE_RULE_COUNT)
		return rule;
	if ((bpf_ntohl(ip4) >> 24) == 127)
		return SLUICE_RULE_LOOPBACK;
	if ((cfg->flags & SLUICE_F_PROXY4) && port == cfg->proxy_port4 &&
	    ip4 == *(const __u32 *)cfg->proxy_ip4)
		return SLUICE_RULE_PROXY_ADDRESS;

	__builtin_memcpy(key.addr, &ip4, 4);
	if (bpf_map_lookup_elem(&sluice_excl_v4, &key))
		return SLUICE_RULE_EXCLUDED_RANGE;
	if (included_by_port(cfg, port))
		rule = SLUICE_RULE_INCLUDED_PORT;
	else if (bpf_map_lookup_elem(&sluice_incl_v4, &key))
		rule = SLUICE_RULE_INCLUDED_RANGE;
	else
		return SLUICE_RULE_NOT_INCLUDED;
	if (!(cfg->flags & SLUICE_F_PROXY4))
		return SLUICE_RULE_NO_PROXY_FAMILY;
	return rule;
}

/* ip6 as four network-order words, not IPv4-mapped. */
static __always_inline __u32 decide_v6(const struct sluice_config *cfg,
				       struct bpf_sock_addr *ctx, const __u32 ip6[4], __u16 port)
{
	struct sluice_lpm_v6 key = { .prefixlen = 128 };
	const __u32 *proxy = (const __u32 *)cfg->proxy_ip6;
	__u32 rule = decide_port_and_owner(cfg, ctx, port);

	if (rule != SLUICE_RULE_COUNT)
		return rule;
	if (ip6[0] == 0 && ip6[1] == 0 && ip6[2] == 0 && ip6[3] == bpf_htonl(1))
		return SLUICE_RULE_LOOPBACK;
	if ((cfg->flags & SLUICE_F_PROXY6) && port == cfg->proxy_port6 &&
	    ip6[0] == proxy[0] && ip6[1] == proxy[1] && ip6[2] == proxy[2] && ip6[3] == proxy[3])
		return SLUICE_RULE_PROXY_ADDRESS;

	__builtin_memcpy(key.addr, ip6, 16);
	if (bpf_map_lookup_elem(&sluice_excl_v6, &key))
		return SLUICE_RULE_EXCLUDED_RANGE;
	if (included_by_port(cfg, port))
		rule = SLUICE_RULE_INCLUDED_PORT;
	else if (bpf_map_lookup_elem(&sluice_incl_v6, &key))
		rule = SLUICE_RULE_INCLUDED_RANGE;
	else
		return SLUICE_RULE_NOT_INCLUDED;
	if (!(cfg->flags & SLUICE_F_PROXY6))
		return SLUICE_RULE_NO_PROXY_FAMILY;
	return rule;
}

/* Stores the original destination under the socket's cookie. Returns 0 on
 * failure: the caller then refuses connect() rather than sending a
 * connection to the proxy that the proxy could not route. */
static __always_inline int record(struct bpf_sock_addr *ctx, __u16 family,
				  const void *addr, __u32 addr_len, __u16 port, __u32 rule)
{
	struct sluice_orig_dst orig = {};
	__u64 cookie = bpf_get_socket_cookie(ctx);
	__u64 ugid = bpf_get_current_uid_gid();

	orig.family = family;
	orig.port = port;
	if (addr_len == 4)
		__builtin_memcpy(orig.addr, addr, 4);
	else
		__builtin_memcpy(orig.addr, addr, 16);
	orig.rule = rule;
	orig.pid = bpf_get_current_pid_tgid() >> 32;
	orig.uid = (__u32)ugid;
	if (bpf_map_update_elem(&sluice_orig_ck, &cookie, &orig, BPF_ANY)) {
		count(SLUICE_CTR_RECORD_FAILED);
		return 0;
	}
	return 1;
}

static __always_inline int tcp(struct bpf_sock_addr *ctx)
{
	return ctx->type == SOCK_STREAM && ctx->protocol == IPPROTO_TCP;
}

SEC("cgroup/connect4")
int sluice_connect4(struct bpf_sock_addr *ctx)
{
	struct sluice_config *cfg = config();
	__u32 ip4, rule;
	__u16 port;

	if (!cfg || !tcp(ctx))
		return 1;
	ip4 = ctx->user_ip4;
	port = bpf_ntohs((__u16)ctx->user_port);
	rule = decide_v4(cfg, ctx, ip4, port);
	count(counter_of(rule));
	if (!redirects(rule))
		return 1;
	if (!record(ctx, SLUICE_AF_INET, &ip4, 4, port, rule))
		return 0;
	ctx->user_ip4 = *(const __u32 *)cfg->proxy_ip4;
	ctx->user_port = bpf_htons(cfg->proxy_port4);
	return 1;
}

SEC("cgroup/connect6")
int sluice_connect6(struct bpf_sock_addr *ctx)
{
	struct sluice_config *cfg = config();
	__u32 ip6[4], rule;
	__u16 port;

	if (!cfg || !tcp(ctx))
		return 1;
	ip6[0] = ctx->user_ip6[0];
	ip6[1] = ctx->user_ip6[1];
	ip6[2] = ctx->user_ip6[2];
	ip6[3] = ctx->user_ip6[3];
	port = bpf_ntohs((__u16)ctx->user_port);

	if (ip6[0] == 0 && ip6[1] == 0 && ip6[2] == bpf_htonl(0xffff)) {
		/* ::ffff:a.b.c.d on a dual-stack socket is IPv4 on the wire:
		 * the IPv4 rules decide, the IPv4 proxy receives it. */
		rule = decide_v4(cfg, ctx, ip6[3], port);
		count(counter_of(rule));
		if (!redirects(rule))
			return 1;
		if (!record(ctx, SLUICE_AF_INET, &ip6[3], 4, port, rule))
			return 0;
		ctx->user_ip6[3] = *(const __u32 *)cfg->proxy_ip4;
		ctx->user_port = bpf_htons(cfg->proxy_port4);
		return 1;
	}

	rule = decide_v6(cfg, ctx, ip6, port);
	count(counter_of(rule));
	if (!redirects(rule))
		return 1;
	if (!record(ctx, SLUICE_AF_INET6, ip6, 16, port, rule))
		return 0;
	ctx->user_ip6[0] = ((const __u32 *)cfg->proxy_ip6)[0];
	ctx->user_ip6[1] = ((const __u32 *)cfg->proxy_ip6)[1];
	ctx->user_ip6[2] = ((const __u32 *)cfg->proxy_ip6)[2];
	ctx->user_ip6[3] = ((const __u32 *)cfg->proxy_ip6)[3];
	ctx->user_port = bpf_htons(cfg->proxy_port6);
	return 1;
}

static __always_inline int is_v4_mapped(const __u32 a[4])
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff);
}

/* Fills the addresses of a tuple key from a socket's (family, local, remote)
 * where IPv4-mapped IPv6 collapses to IPv4, so that a dual-stack client and
 * an IPv4 proxy socket (or the reverse) produce the same key. */
static __always_inline void tuple_addrs(struct sluice_tuple_key *key, __u32 family,
					__u32 client4, const __u32 client6[4],
					__u32 proxy4, const __u32 proxy6[4])
{
	__u32 *c = (__u32 *)key->client_addr;
	__u32 *p = (__u32 *)key->proxy_addr;

	if (family == SLUICE_AF_INET6 && !(is_v4_mapped(client6) && is_v4_mapped(proxy6))) {
		key->family = SLUICE_AF_INET6;
		c[0] = client6[0]; c[1] = client6[1]; c[2] = client6[2]; c[3] = client6[3];
		p[0] = proxy6[0]; p[1] = proxy6[1]; p[2] = proxy6[2]; p[3] = proxy6[3];
		return;
	}
	key->family = SLUICE_AF_INET;
	if (family == SLUICE_AF_INET6) {
		c[0] = client6[3];
		p[0] = proxy6[3];
	} else {
		c[0] = client4;
		p[0] = proxy4;
	}
}

static __always_inline int proxy_is_loopback(const struct sluice_tuple_key *key)
{
	const __u32 *p = (const __u32 *)key->proxy_addr;

	if (key->family == SLUICE_AF_INET)
		return (bpf_ntohl(p[0]) >> 24) == 127;
	return p[0] == 0 && p[1] == 0 && p[2] == 0 && p[3] == bpf_htonl(1);
}

/* Builds the tuple key of a sockops socket. `client_side`: the socket is the
 * workload's (local = client); otherwise the proxy's accepted one. */
static __always_inline void tuple_of_sockops(struct bpf_sock_ops *skops,
					     struct sluice_tuple_key *key, int client_side)
{
	__u32 local6[4] = { skops->local_ip6[0], skops->local_ip6[1],
			    skops->local_ip6[2], skops->local_ip6[3] };
	__u32 remote6[4] = { skops->remote_ip6[0], skops->remote_ip6[1],
			     skops->remote_ip6[2], skops->remote_ip6[3] };
	__u16 local_port = (__u16)skops->local_port;
	/* remote_port holds the network-order port in its upper 16 bits on
	 * little-endian hosts (the lower ones on big-endian): ntohl of the
	 * word is the port in host order either way. */
	__u16 remote_port = (__u16)bpf_ntohl(skops->remote_port);
	if (client_side) {
		tuple_addrs(key, skops->family, skops->local_ip4, local6,
			    skops->remote_ip4, remote6);
		key->client_port = local_port;
		key->proxy_port = remote_port;
	} else {
		tuple_addrs(key, skops->family, skops->remote_ip4, remote6,
			    skops->local_ip4, local6);
		key->client_port = remote_port;
		key->proxy_port = local_port;
	}
	if (proxy_is_loopback(key))
		key->netns = bpf_get_netns_cookie(skops);
}

/* Puts one socket of a redirected connection (its tuple key already built)
 * into sluice_socks, with its peer's key in the socket's storage. Any failure
 * leaves the socket out: its bytes then take the TCP path, as without the
 * feature. */
static __always_inline void add_socket(struct bpf_sock_ops *skops,
				       const struct sluice_tuple_key *tuple, __u32 side)
{
	struct sluice_config *cfg = config();
	struct sluice_sock_key key = {};
	struct sluice_sk_path *path;
	struct bpf_sock *sk;
	__u64 addr;

	if (!cfg || !(cfg->flags & SLUICE_F_SOCKET_REDIRECT))
		return;
	sk = skops->sk;
	if (!sk)
		return;
	path = bpf_sk_storage_get(&sluice_sk_path, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!path) {
		count(SLUICE_CTR_SOCK_ADD_FAILED);
		return;
	}
	path->path = SLUICE_PATH_UNDECIDED;
	path->peer.tuple = *tuple;
	path->peer.side = side == SLUICE_SIDE_CLIENT ? SLUICE_SIDE_PROXY : SLUICE_SIDE_CLIENT;
	path->peer_sk = 0;
	key.tuple = *tuple;
	key.side = side;
	/* Before the SOCKHASH: whoever finds this socket there finds its
	 * address too. */
	addr = (__u64)sk;
	if (bpf_map_update_elem(&sluice_sock_addr, &key, &addr, BPF_ANY)) {
		path->path = SLUICE_PATH_TCP;
		count(SLUICE_CTR_SOCK_ADD_FAILED);
		return;
	}
	if (bpf_sock_hash_update(skops, &sluice_socks, &key, BPF_NOEXIST)) {
		path->path = SLUICE_PATH_TCP;
		count(SLUICE_CTR_SOCK_ADD_FAILED);
		return;
	}
	count(SLUICE_CTR_SOCK_ADDED);
}

/* The proxy's socket of a redirected connection closed: both sides'
 * addresses can go (each was read once, at its peer's first send, which has
 * happened by now or never will). */
static __always_inline void forget_socket_addrs(const struct sluice_tuple_key *tuple)
{
	struct sluice_config *cfg = config();
	struct sluice_sock_key key = {};

	if (!cfg || !(cfg->flags & SLUICE_F_SOCKET_REDIRECT))
		return;
	key.tuple = *tuple;
	key.side = SLUICE_SIDE_PROXY;
	bpf_map_delete_elem(&sluice_sock_addr, &key);
	key.side = SLUICE_SIDE_CLIENT;
	bpf_map_delete_elem(&sluice_sock_addr, &key);
}

SEC("sockops")
int sluice_sockops(struct bpf_sock_ops *skops)
{
	struct sluice_tuple_key key = {};
	struct sluice_orig_dst *orig;
	__u64 cookie;

	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		/* The client's SYN-ACK is being processed; its ACK (and so the
		 * proxy's accept()) comes after this returns. */
		cookie = bpf_get_socket_cookie(skops);
		orig = bpf_map_lookup_elem(&sluice_orig_ck, &cookie);
		if (!orig)
			return 1;
		tuple_of_sockops(skops, &key, 1);
		if (bpf_map_update_elem(&sluice_orig_4t, &key, orig, BPF_ANY))
			count(SLUICE_CTR_TUPLE_FAILED);
		bpf_map_delete_elem(&sluice_orig_ck, &cookie);
		add_socket(skops, &key, SLUICE_SIDE_CLIENT);
		return 1;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		/* An accepted socket of a redirected connection: watch its
		 * state so the record goes when the proxy is done with it (not
		 * when the client closes: a client may close before the proxy
		 * has even accepted). */
		tuple_of_sockops(skops, &key, 0);
		if (bpf_map_lookup_elem(&sluice_orig_4t, &key)) {
			bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
							 BPF_SOCK_OPS_STATE_CB_FLAG);
			add_socket(skops, &key, SLUICE_SIDE_PROXY);
		}
		return 1;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] == BPF_TCP_CLOSE) {
			tuple_of_sockops(skops, &key, 0);
			bpf_map_delete_elem(&sluice_orig_4t, &key);
			forget_socket_addrs(&key);
		}
		return 1;
	default:
		return 1;
	}
}

SEC("cgroup/getsockopt")
int sluice_getsockopt(struct bpf_sockopt *ctx)
{
	struct sluice_tuple_key key = {};
	struct sluice_orig_dst *orig;
	struct bpf_sock *sk;
	__u32 src6[4], dst6[4];
	void *optval, *optval_end;
	int own, as_v4;

	own = ctx->level == SOL_TCP && ctx->optname == SLUICE_TCP_ORIGINAL_DST;
	if (!own && (ctx->optname != SLUICE_SO_ORIGINAL_DST ||
		     (ctx->level != SOL_IP && ctx->level != SOL_IPV6)))
		return 1;
	sk = ctx->sk;
	if (!sk || sk->protocol != IPPROTO_TCP)
		return 1;

	/* Accepted socket: local = proxy, remote = client. */
	src6[0] = sk->src_ip6[0]; src6[1] = sk->src_ip6[1];
	src6[2] = sk->src_ip6[2]; src6[3] = sk->src_ip6[3];
	dst6[0] = sk->dst_ip6[0]; dst6[1] = sk->dst_ip6[1];
	dst6[2] = sk->dst_ip6[2]; dst6[3] = sk->dst_ip6[3];
	tuple_addrs(&key, sk->family, sk->dst_ip4, dst6, sk->src_ip4, src6);
	key.client_port = bpf_ntohs(sk->dst_port);
	key.proxy_port = (__u16)sk->src_port;
	if (proxy_is_loopback(&key))
		key.netns = bpf_get_netns_cookie(ctx);

	orig = bpf_map_lookup_elem(&sluice_orig_4t, &key);
	if (!orig) {
		/* Sluice's own question unanswered (ENOPROTOOPT): the proxy
		 * asks SO_ORIGINAL_DST next, which counts the miss. */
		if (own)
			return 1;
		/* Another mechanism (iptables REDIRECT and conntrack) may have
		 * answered; otherwise make the proxy refuse the connection. */
		if (ctx->retval != 0) {
			ctx->retval = -ENOENT;
			count(SLUICE_CTR_ORIGDST_MISS);
		}
		return 1;
	}

	/* Read once, straight from the context (the verifier refuses a
	 * context pointer the compiler offsets for two branches). */
	optval = ctx->optval;
	optval_end = ctx->optval_end;
	/* Sluice's own question gets the destination's family. */
	as_v4 = own ? orig->family == SLUICE_AF_INET : ctx->level == SOL_IP;
	if (as_v4) {
		struct {
			__u16 family;
			__be16 port;
			__u8 addr[4];
			__u8 zero[8];
		} *sin = optval;

		if (orig->family != SLUICE_AF_INET) {
			/* An IPv6 destination asked the IPv4 way (a proxy trying
			 * IPv4 first): not a miss, the IPv6 question gets it. */
			ctx->retval = -ENOENT;
			return 1;
		}
		if ((void *)(sin + 1) > optval_end) {
			ctx->retval = -ENOENT;
			count(SLUICE_CTR_ORIGDST_MISS);
			return 1;
		}
		sin->family = SLUICE_AF_INET;
		sin->port = bpf_htons(orig->port);
		__builtin_memcpy(sin->addr, orig->addr, 4);
		__builtin_memset(sin->zero, 0, sizeof(sin->zero));
		ctx->optlen = sizeof(*sin);
	} else {
		struct {
			__u16 family;
			__be16 port;
			__u32 flowinfo;
			__u8 addr[16];
			__u32 scope_id;
		} *sin6 = optval;

		if ((void *)(sin6 + 1) > optval_end) {
			ctx->retval = -ENOENT;
			count(SLUICE_CTR_ORIGDST_MISS);
			return 1;
		}
		sin6->family = SLUICE_AF_INET6;
		sin6->port = bpf_htons(orig->port);
		sin6->flowinfo = 0;
		sin6->scope_id = 0;
		if (orig->family == SLUICE_AF_INET) {
			/* Asked the IPv6 way about an IPv4 destination: ::ffff:a.b.c.d */
			__builtin_memset(sin6->addr, 0, 10);
			sin6->addr[10] = 0xff;
			sin6->addr[11] = 0xff;
			__builtin_memcpy(&sin6->addr[12], orig->addr, 4);
		} else {
			__builtin_memcpy(sin6->addr, orig->addr, 16);
		}
		ctx->optlen = sizeof(*sin6);
	}
	ctx->retval = 0;
	count(SLUICE_CTR_ORIGDST_ANSWERED);
	return 1;
}

/* The two kernel fields the shortcut's queue bound reads; CO-RE relocates
 * their offsets to the running kernel's layout. */
struct sock___sluice {
	void *sk_user_data;
} __attribute__((preserve_access_index));

struct sk_psock___sluice {
	__u32 msg_tot_len; /* bytes on the psock's ingress queue (what FIONREAD counts) */
} __attribute__((preserve_access_index));

/* sk_user_data keeps flag bits (SK_USER_DATA_NOCOPY|BPF|PSOCK) below the
 * psock pointer. */
#define SLUICE_SK_USER_DATA_PTRMASK (~7UL)

/* Bytes handed over to the socket at `peer_sk` and not yet read by it, or -1
 * when that cannot be known: no address, a read that faults (the peer is
 * gone; its sends fail next anyway), or a kernel whose sk_psock has no
 * msg_tot_len (older kernels; the agent refuses --socket-redirect there). */
static __always_inline long peer_queued(__u64 peer_sk)
{
	unsigned long psock = 0;
	__u32 queued = 0;

	if (!bpf_core_field_exists(struct sk_psock___sluice, msg_tot_len) || !peer_sk)
		return -1;
	if (bpf_core_read(&psock, sizeof(psock), &((struct sock___sluice *)peer_sk)->sk_user_data))
		return -1;
	psock &= SLUICE_SK_USER_DATA_PTRMASK;
	if (!psock || bpf_core_read(&queued, sizeof(queued),
				    &((struct sk_psock___sluice *)psock)->msg_tot_len))
		return -1;
	return queued;
}

/* Runs at every sendmsg() of a socket in sluice_socks (sockets leave the map
 * when they close). The first send decides the socket's path: socket to
 * socket if the peer is in the map by then, else TCP for good. The workload's
 * first bytes can race the proxy's accepted socket being added (its
 * ESTABLISHED comes with the client's ACK); those connections stay on TCP
 * rather than ever put a redirected byte after a TCP-delivered one (the
 * receiver reads its redirected bytes first).
 *
 * The redirect itself has no flow control: the bytes land on the peer's
 * queue whatever it holds, and the sender never waits. So before each later
 * send on the shortcut the peer's unread bytes are checked against
 * sock_queue_limit; a peer that far behind moves the sender to TCP for good,
 * where socket buffers hold it back. Order is kept: the peer reads what is
 * queued before anything TCP delivers, and nothing is redirected after. */
SEC("sk_msg")
int sluice_sk_msg(struct sk_msg_md *msg)
{
	struct sluice_sk_path *path;
	struct bpf_sock *sk = msg->sk;
	struct sluice_config *cfg;
	__u64 *peer_sk;
	__u32 zero = 0;
	long verdict;
	long queued;

	if (!sk)
		return SK_PASS;
	path = bpf_sk_storage_get(&sluice_sk_path, sk, 0, 0);
	if (!path || path->path == SLUICE_PATH_TCP)
		return SK_PASS;
	cfg = bpf_map_lookup_elem(&sluice_config, &zero);
	if (!cfg || cfg->sock_queue_limit == 0) {
		path->path = SLUICE_PATH_TCP;
		return SK_PASS;
	}
	if (path->path == SLUICE_PATH_SHORTCUT) {
		queued = peer_queued(path->peer_sk);
		if (queued < 0) {
			/* Most likely the peer has closed (its send would fail
			 * anyway): TCP, which the closed peer answers with a
			 * reset, gives the sender the usual EPIPE/ECONNRESET
			 * instead of the EACCES an SK_DROP would. Nothing can
			 * mix: nothing is redirected after this. */
			path->path = SLUICE_PATH_TCP;
			return SK_PASS;
		}
		if (queued >= cfg->sock_queue_limit) {
			path->path = SLUICE_PATH_TCP;
			count(SLUICE_CTR_SOCK_QUEUE_FULL);
			return SK_PASS;
		}
	}
	verdict = bpf_msg_redirect_hash(msg, &sluice_socks, &path->peer, BPF_F_INGRESS);
	if (path->path == SLUICE_PATH_UNDECIDED) {
		if (verdict != SK_PASS) {
			/* No peer: TCP, now and later. */
			path->path = SLUICE_PATH_TCP;
			count(SLUICE_CTR_SOCK_TCP_PATH);
			return SK_PASS;
		}
		/* Found in the SOCKHASH, so its address was written first. The
		 * peer's queue is empty: nothing went to it before this. */
		peer_sk = bpf_map_lookup_elem(&sluice_sock_addr, &path->peer);
		path->peer_sk = peer_sk ? *peer_sk : 0;
		path->path = SLUICE_PATH_SHORTCUT;
		count(SLUICE_CTR_SOCK_SHORTCUT);
	}
	if (verdict != SK_PASS) {
		/* The peer closed between the check above and here. */
		path->path = SLUICE_PATH_TCP;
		return SK_PASS;
	}
	count(SLUICE_CTR_MSG_REDIRECTED);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
