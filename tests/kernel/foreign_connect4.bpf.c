// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Another tool's program on the same hook as Sluice (think Cilium): it only
 * counts connect() calls and allows them. The kernel tests prove that it
 * keeps running next to Sluice and after Sluice's uninstall. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} foreign_hits SEC(".maps");

SEC("cgroup/connect4")
int foreign_connect4(struct bpf_sock_addr *ctx)
{
	__u32 zero = 0;
	__u64 *hits = bpf_map_lookup_elem(&foreign_hits, &zero);

	(void)ctx;
	if (hits)
		__sync_fetch_and_add(hits, 1);
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
