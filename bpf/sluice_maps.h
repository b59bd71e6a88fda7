/* The one definition of every BPF map key and value, and of the constants the
 * BPF programs and the C++ side (decision core, agent, sluicectl) agree on.
 * Plain C with fixed-width kernel types so that it compiles unchanged as BPF C
 * (clang -target bpf) and as C++20: never keep a second copy of these structs.
 *
 * Byte order: addresses are stored as bytes in network order (so bpftool
 * prints them as dotted bytes), ports in host order (bpftool prints numbers).
 */
#pragma once

#include <linux/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Istio's defaults: the proxy marks its sockets 0x539 (1337) and runs as
 * uid/gid 1337; outbound traffic is redirected to port 15001. */
#define SLUICE_DEFAULT_MARK 0x539
#define SLUICE_DEFAULT_UID 1337
#define SLUICE_DEFAULT_GID 1337
#define SLUICE_DEFAULT_PROXY_PORT 15001

/* getsockopt(SOL_IP, SO_ORIGINAL_DST) and getsockopt(SOL_IPV6,
 * IP6T_SO_ORIGINAL_DST) share the option number 80. */
#define SLUICE_SO_ORIGINAL_DST 80
/* Sluice's own way to ask the same: getsockopt(IPPROTO_TCP, this) answers
 * sockaddr_in or sockaddr_in6 by the destination's family. No kernel code
 * handles it (TCP says ENOPROTOOPT at once), whereas SO_ORIGINAL_DST first
 * makes the kernel look the socket up in conntrack when nf_conntrack is
 * loaded (a wasted hash lookup per connection). */
#define SLUICE_TCP_ORIGINAL_DST 0x51CE

/* Address families as the kernel numbers them (AF_INET, AF_INET6). */
#define SLUICE_AF_INET 2
#define SLUICE_AF_INET6 10

/* Capacities. Ranges have no limit besides these; raising them needs an
 * uninstall (the pinned maps keep the size they were created with). */
#define SLUICE_MAX_RANGES 16384
#define SLUICE_MAX_PORTS 4096
/* Connections between connect() and the client's ESTABLISHED callback. */
#define SLUICE_MAX_PENDING 65536
/* Connections established to the proxy and not yet closed by it. */
#define SLUICE_MAX_TUPLES 262144
/* Sockets of redirected connections in sluice_socks (two per connection);
 * a full map only means the bytes of further ones take the TCP path. */
#define SLUICE_MAX_SOCKS 131072

/* sluice_config.flags */
enum sluice_config_flag {
	/* Set last, after every other map is filled: until then the programs
	 * leave every connection alone. */
	SLUICE_F_ENABLED = 1u << 0,
	SLUICE_F_PROXY4 = 1u << 1,           /* proxy_ip4 is set: intercept IPv4 */
	SLUICE_F_PROXY6 = 1u << 2,           /* proxy_ip6 is set: intercept IPv6 */
	SLUICE_F_INCLUDE_ALL_PORTS = 1u << 3, /* includeOutboundPorts contains "*" */
	SLUICE_F_EXCLUDE_ALL_PORTS = 1u << 4, /* excludeOutboundPorts contains "*" */
	SLUICE_F_MATCH_MARK = 1u << 5,       /* sockets with SO_MARK == mark are the proxy's */
	SLUICE_F_MATCH_UID = 1u << 6,        /* processes with uid == uid are the proxy */
	SLUICE_F_MATCH_GID = 1u << 7,        /* processes with gid == gid are the proxy */
	/* The redirected hop (the workload's socket <-> the proxy's accepted
	 * socket, both on this host) skips the TCP/IP stack: each side's
	 * sendmsg() puts the bytes straight into the other's receive queue
	 * (sk_msg program on the sluice_socks SOCKHASH). */
	SLUICE_F_SOCKET_REDIRECT = 1u << 8,
};

/* The single entry (key 0) of the `config` ARRAY map. */
struct sluice_config {
	__u32 flags;      /* enum sluice_config_flag */
	__u32 mark;
	__u32 uid;
	__u32 gid;
	__u8 proxy_ip4[4];
	__u16 proxy_port4;
	__u16 proxy_port6;
	__u8 proxy_ip6[16];
	/* With SLUICE_F_SOCKET_REDIRECT: a sending socket whose peer already
	 * holds this many bytes handed over and not yet read leaves the shortcut
	 * for TCP (for good), whose socket buffers then hold the sender back.
	 * 0: the shortcut is never used. */
	__u32 sock_queue_limit;
	__u32 pad;
};

/* Keys of the LPM_TRIE maps include_v4 / exclude_v4 and include_v6 /
 * exclude_v6 (prefixlen first, as the trie requires). IPv4-mapped IPv6
 * ranges (::ffff:a.b.c.d/n, n >= 96) are stored in the v4 tries. */
struct sluice_lpm_v4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct sluice_lpm_v6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Keys of the HASH maps include_ports / exclude_ports. */
struct sluice_port_key {
	__u16 port;
};

/* Value of the range and port maps: which configured entry put it there
 * (0-based position in includeIPRanges etc.), for explaining decisions. */
struct sluice_rule_ref {
	__u32 index;
};

/* Why connect() was or was not redirected: the precedence of Istio's
 * istio-iptables, in order. The C++ decision core returns the same values. */
enum sluice_rule {
	SLUICE_RULE_EXCLUDED_PORT = 0,  /* excludeOutboundPorts */
	SLUICE_RULE_OWN_MARK = 1,       /* the socket carries the proxy's mark */
	SLUICE_RULE_OWN_UID = 2,        /* opened by the proxy's uid */
	SLUICE_RULE_OWN_GID = 3,        /* opened by the proxy's gid */
	SLUICE_RULE_LOOPBACK = 4,       /* 127.0.0.0/8, ::1 */
	SLUICE_RULE_PROXY_ADDRESS = 5,  /* straight to the proxy's own address:port */
	SLUICE_RULE_EXCLUDED_RANGE = 6, /* excludeIPRanges */
	SLUICE_RULE_INCLUDED_PORT = 7,  /* includeOutboundPorts: redirected */
	SLUICE_RULE_INCLUDED_RANGE = 8, /* includeIPRanges: redirected */
	SLUICE_RULE_NOT_INCLUDED = 9,   /* in no include list */
	SLUICE_RULE_NO_PROXY_FAMILY = 10, /* would be redirected, but no proxy address of that family */
	SLUICE_RULE_COUNT = 11,
};

/* Index of the per-CPU `counters` ARRAY map (__u64 per CPU). */
enum sluice_counter {
	SLUICE_CTR_INTERCEPTED = 0,      /* connect() redirected to the proxy */
	SLUICE_CTR_EXCLUDED_PORT = 1,
	SLUICE_CTR_OWN_TRAFFIC = 2,      /* mark, uid or gid of the proxy */
	SLUICE_CTR_LOOPBACK = 3,
	SLUICE_CTR_EXCLUDED_RANGE = 4,
	SLUICE_CTR_NOT_INCLUDED = 5,
	SLUICE_CTR_ORIGDST_ANSWERED = 6, /* SO_ORIGINAL_DST answered from a record */
	SLUICE_CTR_ORIGDST_MISS = 7,     /* SO_ORIGINAL_DST asked, no record: refused */
	SLUICE_CTR_PROXY_ADDRESS = 8,
	SLUICE_CTR_NO_PROXY_FAMILY = 9,
	SLUICE_CTR_RECORD_FAILED = 10,   /* could not store the original destination: connect() refused */
	SLUICE_CTR_TUPLE_FAILED = 11,    /* could not store the 4-tuple record at ESTABLISHED */
	/* Socket redirection (SLUICE_F_SOCKET_REDIRECT): */
	SLUICE_CTR_SOCK_ADDED = 12,      /* a socket of a redirected connection put in sluice_socks */
	SLUICE_CTR_SOCK_ADD_FAILED = 13, /* could not: that side's bytes take the TCP path */
	SLUICE_CTR_SOCK_SHORTCUT = 14,   /* a sending side found its peer: its bytes skip TCP/IP */
	SLUICE_CTR_SOCK_TCP_PATH = 15,   /* a sending side did not find its peer at its first send */
	SLUICE_CTR_MSG_REDIRECTED = 16,  /* sk_msg verdicts (a sendmsg() or a chunk of a large one) sent socket to socket */
	SLUICE_CTR_SOCK_QUEUE_FULL = 17, /* a sender left the shortcut for TCP: its peer's unread bytes reached sock_queue_limit */
	SLUICE_CTR_COUNT = 18,
};

/* A connection's destination before it was rewritten. Value of the
 * orig_by_cookie and orig_by_tuple LRU maps. v4 addresses use addr[0..3]. */
struct sluice_orig_dst {
	__u16 family;     /* SLUICE_AF_INET or SLUICE_AF_INET6 */
	__u16 port;
	__u8 addr[16];
	__u32 rule;       /* enum sluice_rule that redirected it */
	__u32 pid;        /* tgid that called connect() */
	__u32 uid;
};

/* Key of orig_by_tuple: the client socket's view of the redirected
 * connection, which is the accepted socket's view mirrored. IPv4 (also
 * IPv4-mapped IPv6) uses addr[0..3], the rest zero. netns is the network
 * namespace cookie when the proxy address is loopback (sidecar placement:
 * identical loopback 4-tuples exist in every pod), else 0. */
struct sluice_tuple_key {
	__u16 family;
	__u16 client_port;
	__u16 proxy_port;
	__u16 pad;
	__u8 client_addr[16];
	__u8 proxy_addr[16];
	__u64 netns;
};

/* Key of the sluice_socks SOCKHASH: a redirected connection's tuple (as in
 * sluice_orig_4t) and which of its two sockets. */
enum sluice_sock_side {
	SLUICE_SIDE_CLIENT = 0, /* the workload's socket (local = client) */
	SLUICE_SIDE_PROXY = 1,  /* the proxy's accepted socket (local = proxy) */
};

struct sluice_sock_key {
	struct sluice_tuple_key tuple;
	__u32 side;       /* enum sluice_sock_side */
	__u32 pad;
};

/* Per-socket storage (SK_STORAGE map sluice_sk_path) of a socket in
 * sluice_socks. The path is chosen at the socket's first send; the only
 * change afterwards is SHORTCUT -> TCP when the peer falls behind, which
 * keeps the bytes in order (the receiver reads every redirected byte before
 * any TCP-delivered one, and no redirected byte follows a TCP one). */
enum sluice_sock_path {
	SLUICE_PATH_UNDECIDED = 0,
	SLUICE_PATH_SHORTCUT = 1, /* socket to socket */
	SLUICE_PATH_TCP = 2,      /* the peer was not there at the first send, or fell behind */
};

struct sluice_sk_path {
	__u32 path;       /* enum sluice_sock_path */
	__u32 pad;
	struct sluice_sock_key peer; /* the other socket's key in sluice_socks */
	/* The peer socket's kernel address (from sluice_sock_addr at the first
	 * send), only ever read through bpf_probe_read_kernel to learn how far
	 * behind it is; 0: unknown (the next send takes TCP). */
	__u64 peer_sk;
};

#ifdef __cplusplus
}
#endif
