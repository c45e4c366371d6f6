/* pps.h - the C contract: wire header, shared stats block, loop parameters.
 *
 * Python (pps/native.py) opens and configures the sockets, then hands their file
 * descriptors to these loops. The loops never allocate per packet, never call into
 * Python, and publish their counters into a shared-memory slot with relaxed atomic
 * stores once per syscall, so the orchestrator can read them while they run.
 * Every function returns a count or 0 on success, or -1 with errno set.
 */
#ifndef PPS_H
#define PPS_H

#include <stdint.h>

#define PPS_MAGIC 0x31535050u           /* "PPS1" little-endian */
#define PPS_WIRE_BYTES 24
#define PPS_SHM_MAGIC 0x314d485353505050ull /* "PPPSSHM1" */
#define PPS_SHM_VERSION 3 /* 2: stack and app histograms; 3: counters of untrusted packets */

/* The wire contract (docs/wire.md says the same at more length).
 *
 * Header at payload offset 0, 24 bytes, little-endian: struct pps_wire below.
 *   magic  0x31535050 ("PPS1").
 *   flow   the run's flow id under the run key: pps_wire_flow(run_key, id), where
 *          id = (sender index << 16) | flow index. The key is a random 32-bit number drawn
 *          once per run and given to every sender and receiver of it. pps_wire_flow(k, .)
 *          is a bijection of the 32-bit ids and its own inverse (so one function encodes
 *          and decodes), and the identity for k = 0 (tools and tests that craft packets).
 *   seq    per flow, from 0, +1 per wire packet the kernel took.
 *   tx_ns  the sender's clock when it handed the batch to the kernel.
 *
 * What the receiver does not trust, in the order it checks; each such packet is counted
 * in `foreign` (and the finer counter named), never as received, and never changes a flow:
 *   - shorter than the header: short_pkts (not foreign: it may be anyone's runt);
 *   - another magic: foreign only;
 *   - a decoded id this run cannot have (sender index >= n_senders or flow index >=
 *     flows_per_sender): foreign_flow. Another run's packets (another key) and forgers who
 *     do not know the key land here, bar a chance of n_senders * flows_per_sender / 2^32;
 *   - a seq more than PPS_SEQ_JUMP_MAX ahead of its flow's next, or at or above
 *     PPS_SEQ_LIMIT: seq_jump. No sender gets there honestly (2^32 packets of one flow
 *     lost in a row is 7 minutes of 10 Mpps dropped).
 * A tracked packet's stamp is then checked against the receiver's clock at receive time
 * rx: later than rx + PPS_STAMP_SLACK_NS is stamp_future, earlier than the run's start
 * (pps_recv_params.run_start_ns) - PPS_STAMP_SLACK_NS is stamp_stale. Such a packet counts
 * as received but stays out of every latency figure that uses tx_ns (histogram, count,
 * sum, max); a stamp later than rx by less than the slack is lat_skew, as before.
 *
 * Loss is kept per flow, so nothing one flow receives (a straggler, a replay) can change
 * another flow's numbers; the totals saturate at 2^64 - 1 and then stay there. */
#define PPS_SEQ_JUMP_MAX (1ull << 32)
#define PPS_SEQ_LIMIT (1ull << 63)
#define PPS_STAMP_SLACK_NS 1000000000ull
/* Bounds of the receiver's parameters (pps_recv_new refuses more with EINVAL). The flow
 * table is 2 * max_flows entries of 192 bytes, mapped lazily; PPS_MAX_FLOWS is what the
 * largest config can have (256 senders x 4096 flows). */
#define PPS_MAX_FLOWS (1u << 20)
#define PPS_MAX_SENDERS (1u << 16)
#define PPS_MAX_FLOWS_PER_SENDER (1u << 16)

/* Latency histogram: HDR-style log-linear buckets, 16 per power of two (~6% wide),
 * covering 0 ns .. 2^63 ns. Index of v: v itself below 32, else
 * (msb(v) - 3) * 16 + (v >> (msb(v) - 4)) - 16 ... see pps_hist_index(). */
#define PPS_HIST_SUB_BITS 4
#define PPS_HIST_BUCKETS 976

#define PPS_ROLE_SENDER 0
#define PPS_ROLE_RECEIVER 1

/* Worker states, written by the worker into its slot. */
#define PPS_STATE_INIT 0
#define PPS_STATE_READY 1
#define PPS_STATE_RUNNING 2
#define PPS_STATE_DONE 3
#define PPS_STATE_FAILED 4

/* Wire header at payload offset 0, little-endian on the wire. */
struct pps_wire {
    uint32_t magic;
    uint32_t flow;   /* pps_wire_flow(run_key, (sender index << 16) | flow index) */
    uint64_t seq;    /* per-flow, from 0 */
    uint64_t tx_ns;  /* sender's clock when the batch was handed to the kernel */
};

/* One worker's counters. Written only by that worker's loop; 64-byte aligned so
 * two workers never share a cache line. "packets" are wire packets (segments);
 * "datagrams" are what each syscall moved (they differ under GSO/GRO). */
struct pps_stats {
    uint64_t state;
    uint64_t heartbeat_ns;
    uint64_t packets;
    uint64_t datagrams;
    uint64_t bytes;
    uint64_t syscalls;
    uint64_t eagain;       /* sender: EAGAIN; receiver: empty polls / timeouts */
    uint64_t enobufs;
    uint64_t refused;      /* ECONNREFUSED: an ICMP port unreachable came back */
    uint64_t errors;       /* any other errno */
    uint64_t last_errno;
    uint64_t foreign;      /* receiver: not this run's: wrong magic, foreign_flow, seq_jump */
    uint64_t short_pkts;   /* receiver: shorter than the wire header */
    uint64_t untracked;    /* receiver: valid, but the flow table was full */
    uint64_t lost;         /* receiver: sequence gaps not (yet) filled */
    uint64_t reordered;
    uint64_t duplicate;
    uint64_t late;         /* older than the reorder window; assumed reordered */
    uint64_t flows;        /* flows seen */
    uint64_t lat_count;
    uint64_t lat_sum_ns;
    uint64_t lat_max_ns;
    uint64_t lat_skew;     /* tx_ns after rx time: clocks not shared */
    uint64_t pace_sleeps;  /* sender: sleeps taken to hold the rate */
    /* Receiver with kernel RX timestamps (pps_recv_params.timestamps): one-way latency
     * split at the kernel's software receive stamp. stack = stamp - tx_ns (sender to
     * the receive path); app = clock after recvmmsg - stamp (backlog, UDP, socket
     * queue and the syscall). Skew counts as lat_skew does: a negative difference. */
    uint64_t stack_count;
    uint64_t stack_sum_ns;
    uint64_t stack_max_ns;
    uint64_t stack_skew;
    uint64_t app_count;
    uint64_t app_sum_ns;
    uint64_t app_max_ns;
    uint64_t app_skew;
    uint64_t ts_missing;   /* packets whose message carried no kernel stamp */
    /* Receiver: what it did not trust (see the wire contract above). */
    uint64_t foreign_flow; /* right magic, a flow id this run cannot have */
    uint64_t seq_jump;     /* a seq too far ahead of its flow to be true */
    uint64_t stamp_future; /* tx_ns later than the receive time by more than the slack */
    uint64_t stamp_stale;  /* tx_ns before the run started, by more than the slack */
    uint64_t reserved[3];  /* keeps the histograms on a cache-line boundary */
    uint64_t hist[PPS_HIST_BUCKETS];       /* one-way: clock after recvmmsg - tx_ns */
    uint64_t stack_hist[PPS_HIST_BUCKETS];
    uint64_t app_hist[PPS_HIST_BUCKETS];
} __attribute__((aligned(64)));

/* Segment layout: header line, then control line, then one slot per worker. */
struct pps_shm {
    uint64_t magic;
    uint64_t version;
    uint64_t nslots;
    uint64_t slot_bytes;
    uint64_t pad0[4];
    uint64_t go;                 /* set to 1 by the orchestrator: senders may start */
    uint64_t stop[2];            /* per role: loops end within one batch when set */
    uint64_t pad1[5];
    struct pps_stats slots[];
} __attribute__((aligned(64)));

struct pps_send_params {
    const int *fds;        /* one connected UDP socket per flow */
    uint32_t nflows;
    uint32_t flow_base;    /* flow id of fds[0]; flow i is flow_base + i */
    uint32_t batch;        /* 1..1024 messages per sendmmsg */
    uint32_t payload;      /* bytes per wire packet */
    uint32_t gso_segments; /* 0: off; else packets per message (UDP_SEGMENT set on fds) */
    uint32_t raw;          /* 1: no wire header, only counts */
    double rate_pps;       /* 0: unpaced */
    uint64_t burst;        /* most packets back to back when paced (>= batch) */
    uint64_t deadline_ns;  /* CLOCK_MONOTONIC; 0: none */
    uint64_t max_packets;  /* stop after this many packets in all; 0: no limit */
    int clock_id;          /* clock for tx_ns */
    uint32_t run_key;      /* wire flow ids are pps_wire_flow(run_key, flow id) */
};

struct pps_recv_params {
    int fd;
    uint32_t batch;
    uint32_t bufsize;      /* bytes per message buffer */
    uint32_t busy_poll;    /* 1: MSG_DONTWAIT spin; 0: MSG_WAITFORONE with SO_RCVTIMEO */
    uint32_t gro;          /* 1: parse UDP_GRO cmsg, split into segments */
    uint32_t track;        /* 1: parse wire headers, track flows */
    uint32_t latency;      /* 1: sender shares our clock: record one-way latency */
    uint32_t timestamps;   /* 1: SO_TIMESTAMPING is set on fd: read the stamp cmsg and
                            * record stack and app latency (needs latency, and clock_id
                            * CLOCK_REALTIME at both ends: kernel stamps are realtime) */
    uint32_t max_flows;    /* bound on the flow table: 1..PPS_MAX_FLOWS */
    uint64_t deadline_ns;
    int clock_id;          /* clock for rx time; CLOCK_REALTIME when timestamps is set */
    /* Block mode: after a read that returned packets, keep polling (MSG_DONTWAIT) this long
     * before sleeping again. A sleeping receiver must be woken by the sender's CPU, and on
     * loopback that wake-up is the sender's largest single cost (bare loop here: 312k
     * pps sleeping, 393k with 50 us of spin, as busy-poll); 0: always sleep. */
    uint64_t spin_ns;
    /* What this run's packets can be (the wire contract above). */
    uint32_t run_key;
    uint32_t n_senders;        /* sender indexes 0..n_senders-1; at most PPS_MAX_SENDERS */
    uint32_t flows_per_sender; /* flow indexes 0..flows_per_sender-1; at most 2^16 */
    uint64_t run_start_ns;     /* clock_id time the run began; older stamps are stale */
};

/* Per-flow outcome at the receiver, copied out after the loop. */
struct pps_flow_result {
    uint64_t flow;
    uint64_t received;     /* every datagram of the flow, duplicates included */
    uint64_t unique;
    uint64_t next_seq;     /* highest seq seen + 1 */
    uint64_t reordered;
    uint64_t duplicate;
    uint64_t late;
};

uint64_t pps_now_ns(int clock_id);
/* A flow id on the wire from the run's id, and back (the same function both ways). */
uint32_t pps_wire_flow(uint32_t run_key, uint32_t flow);
int pps_hist_index(uint64_t value);
uint64_t pps_hist_low(int index);
uint64_t pps_shm_bytes(uint32_t nslots);
int pps_shm_init(struct pps_shm *shm, uint32_t nslots);

/* Runs until stop[role], the deadline, or a fatal error. flow_seq[i] holds the next
 * sequence number of flow i on entry and on return, so it counts what the kernel took. */
int pps_send_loop(const struct pps_send_params *p, struct pps_shm *shm, uint32_t slot,
                  uint64_t *flow_seq);

/* Runs until stop[role] or the deadline. The flow table lives in the receiver's own
 * memory; call pps_recv_flows() afterwards (same handle) and then pps_recv_free(). */
struct pps_receiver;
struct pps_receiver *pps_recv_new(const struct pps_recv_params *p);
int pps_recv_loop(struct pps_receiver *r, struct pps_shm *shm, uint32_t slot);
int pps_recv_flows(const struct pps_receiver *r, struct pps_flow_result *out, uint32_t cap);
void pps_recv_free(struct pps_receiver *r);

/* Kill this process when its parent dies, so no worker outlives the orchestrator. */
int pps_die_with_parent(void);

/* ---- AF_XDP (csrc/xsk.c, xsk_send.c, xsk_recv.c, xdp_prog.c) ----
 * Raw syscalls only: no libbpf, no libxdp, no BTF. An XSK socket lives in the network
 * namespace of the thread that opened it, and binds to a device queue there. */
#define PPS_XSK_COPY 0     /* XDP_COPY: every device */
#define PPS_XSK_ZEROCOPY 1 /* XDP_ZEROCOPY: drivers with AF_XDP zero-copy; else EOPNOTSUPP */
#define PPS_XSK_AUTO 2     /* zero-copy, else (EOPNOTSUPP or EINVAL) copy */

struct pps_xsk_params {
    int ifindex;
    uint32_t queue_id;
    uint32_t frames;       /* UMEM frames; 0: 4096. With rx and tx, half for each */
    uint32_t frame_size;   /* a power of two, 2048 .. page size; 0: 2048 */
    uint32_t rx_size;      /* RX and fill ring entries, a power of two; 0: 2048 */
    uint32_t tx_size;      /* TX and completion ring entries, a power of two; 0: 2048 */
    uint32_t mode;         /* PPS_XSK_COPY, PPS_XSK_ZEROCOPY or PPS_XSK_AUTO */
    uint32_t rx;           /* 1: an RX ring (and the fill ring filled) */
    uint32_t tx;           /* 1: a TX ring (and the completion ring used) */
};

/* XDP_STATISTICS. A kernel before 5.9 fills the first three only: `fields` is how many
 * the kernel filled (3 or 6), the rest are 0. */
struct pps_xsk_stats {
    uint64_t rx_dropped;
    uint64_t rx_invalid_descs;
    uint64_t tx_invalid_descs;
    uint64_t rx_ring_full;
    uint64_t rx_fill_ring_empty_descs;
    uint64_t tx_ring_empty_descs;
    uint32_t fields;
};

struct pps_xsk;
/* Bound to (ifindex, queue_id), with XDP_USE_NEED_WAKEUP where the kernel has it. A queue
 * still held by a socket being closed (the kernel releases it asynchronously) is waited
 * for up to a second, then EBUSY. NULL with errno on failure. */
struct pps_xsk *pps_xsk_open(const struct pps_xsk_params *p);
int pps_xsk_fd(const struct pps_xsk *x);
int pps_xsk_zerocopy(const struct pps_xsk *x);   /* 1: bound zero-copy, 0: copy */
int pps_xsk_need_wakeup(const struct pps_xsk *x); /* 1: bound with XDP_USE_NEED_WAKEUP */
int pps_xsk_statistics(const struct pps_xsk *x, struct pps_xsk_stats *out); /* fields */
void pps_xsk_close(struct pps_xsk *x);

/* The XSK sender: whole Ethernet/IPv4/UDP frames written into UMEM frames, handed over
 * through the TX ring in batches, the kernel kicked with sendto when the ring asks for it
 * (in copy mode: every batch), and frames taken back from the completion ring. Flows go
 * round robin packet by packet across a batch; packet j of flow i carries the wire header
 * (magic, pps_wire_flow(run_key, flow_base + i), flow_seq[i]++, tx_ns) unless raw. The
 * IPv4 header checksum and the UDP checksum are right (the latter updated per packet from
 * a per-flow sum of everything but seq and tx_ns). Stats slot as pps_send_loop: packets
 * and bytes (UDP payload bytes) count what went into the TX ring, datagrams the frames
 * the kernel completed, syscalls the kicks; eagain counts kicks answered EAGAIN (more
 * left in the ring than one kick sends); enobufs kicks answered EBUSY/ENOBUFS (a frame
 * the qdisc-less direct transmit dropped). A drop further on (a veth peer's full ring)
 * is not seen here: it is in the device's tx_dropped. On return every frame handed
 * over has completed, or a second has passed. */
struct pps_xsk_send_params {
    struct pps_xsk *xsk;       /* opened with tx */
    uint32_t nflows;
    uint32_t flow_base;
    uint32_t batch;            /* 1..1024 frames per kick (and at most the TX ring) */
    uint32_t payload;          /* UDP payload bytes; 42 + payload must fit a frame */
    uint32_t raw;              /* 1: no wire header (the payload is zeros) */
    double rate_pps;           /* 0: unpaced */
    uint64_t burst;
    uint64_t deadline_ns;      /* CLOCK_MONOTONIC; 0: none */
    uint64_t max_packets;      /* 0: no limit */
    int clock_id;              /* clock for tx_ns */
    uint32_t run_key;
    uint8_t src_mac[6];
    uint8_t dst_mac[6];
    uint32_t src_ip;           /* IPv4, network order */
    uint32_t dst_ip;           /* IPv4, network order */
    uint16_t dst_port;         /* host order */
    const uint16_t *src_ports; /* host order, one per flow */
    uint8_t ttl;               /* 0: 64 */
};
int pps_xsk_send_loop(const struct pps_xsk_send_params *p, struct pps_shm *shm,
                      uint32_t slot, uint64_t *flow_seq);

/* The XSK receiver: keeps the fill ring topped up, takes frames from the RX ring, parses
 * Ethernet/IPv4/UDP and counts each UDP payload exactly as pps_recv_loop counts a
 * datagram (the same code: rx_account.h). Of pps_recv_params it uses batch (frames per
 * pass, 1..1024), busy_poll (1: spin on the ring; 0: poll(2), waking at least every
 * 100 ms), spin_ns, track, latency, clock_id, deadline_ns, max_flows, run_key, n_senders,
 * flows_per_sender, run_start_ns; fd, bufsize and gro are ignored, and timestamps must be
 * 0 (no kernel stamp on this path). A frame that is not IPv4/UDP is counted in packets and
 * foreign. The xsk must stay open while the receiver is used. */
struct pps_xsk_receiver;
struct pps_xsk_receiver *pps_xsk_recv_new(const struct pps_recv_params *p, struct pps_xsk *x);
int pps_xsk_recv_loop(struct pps_xsk_receiver *r, struct pps_shm *shm, uint32_t slot);
int pps_xsk_recv_flows(const struct pps_xsk_receiver *r, struct pps_flow_result *out,
                       uint32_t cap);
void pps_xsk_recv_free(struct pps_xsk_receiver *r);

/* The XDP program that feeds XSKs: an IPv4 UDP packet to the port (not a fragment) goes to
 * bpf_redirect_map(xskmap, rx_queue_index, XDP_PASS); everything else passes. Attached by
 * a BPF link (5.9+), so it is detached when the last fd of the link closes, the holder's
 * death included. Set log/log_size first to get the verifier's words (or which step
 * failed) on failure; fds are -1 when not open. */
struct pps_xdp_handle {
    int map_fd;
    int prog_fd;
    int link_fd;
    char *log;             /* caller's buffer, or NULL */
    uint32_t log_size;
};
int pps_xdp_attach(int ifindex, uint16_t udp_port, uint32_t queues, int skb_mode,
                   struct pps_xdp_handle *out);   /* udp_port: host order */
int pps_xskmap_set(int map_fd, uint32_t queue, int xsk_fd);
void pps_xdp_detach(struct pps_xdp_handle *h);

#endif
