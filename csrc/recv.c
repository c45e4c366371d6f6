/* recv.c - the receiver loop: recvmmsg in batches, optional UDP GRO, per-flow
 * sequence tracking in a bounded table (flows.c), one-way latency into a histogram, and
 * with kernel RX timestamps that latency split in two more: stack and app. Nothing on the
 * wire is trusted: see the wire contract in pps.h. */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <linux/errqueue.h> /* struct scm_timestamping */

#include "pps.h"
#include "internal.h"
#include "flows.h"

#ifndef UDP_GRO
#define UDP_GRO 104
#endif

/* Control space per message: a UDP_GRO cmsg (an int) and an SCM_TIMESTAMPING cmsg (three
 * timespecs) both fit, with room to spare for the kernel's alignment. */
#define CTRL_BYTES 128
_Static_assert(CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct scm_timestamping)) <= CTRL_BYTES,
               "control buffer too small for UDP_GRO + SCM_TIMESTAMPING");

struct pps_receiver {
    struct pps_recv_params p;
    struct mmsghdr *msgs;
    struct iovec *iov;
    char *bufs;            /* batch buffers, `stride` bytes apart (see buffer_stride) */
    char *ctrl;
    struct flow_table flows; /* with track only */
    uint64_t stale_before;   /* a stamp older than this is stale (see pps.h) */
};

/* Distance between receive buffers: bufsize rounded up to whole cache lines, made an
 * odd number of lines. With a power-of-two stride (2048, 65536) every buffer's first
 * line maps to the same one or two L1 sets, so in a batch of 64 the header lines the
 * kernel just wrote evict each other. An odd number of lines steps through all 64 sets,
 * so they no longer do (the kernel's own work still can: see the prefetch in the loop). */
static size_t buffer_stride(uint32_t bufsize)
{
    return (((size_t)bufsize + 63) & ~(size_t)63) | 64;
}

static int valid_params(const struct pps_recv_params *p)
{
    return p && p->batch >= 1 && p->batch <= 1024 && p->bufsize >= 1 &&
           p->max_flows >= 1 && p->max_flows <= PPS_MAX_FLOWS &&
           p->n_senders <= PPS_MAX_SENDERS && p->flows_per_sender <= PPS_MAX_FLOWS_PER_SENDER &&
           (!p->timestamps || p->clock_id == CLOCK_REALTIME); /* kernel stamps are realtime */
}

struct pps_receiver *pps_recv_new(const struct pps_recv_params *p)
{
    if (!valid_params(p)) {
        errno = EINVAL;
        return NULL;
    }
    struct pps_receiver *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->p = *p;
    if (p->run_start_ns > PPS_STAMP_SLACK_NS)
        r->stale_before = p->run_start_ns - PPS_STAMP_SLACK_NS;
    r->msgs = calloc(p->batch, sizeof(*r->msgs));
    r->iov = calloc(p->batch, sizeof(*r->iov));
    const size_t stride = buffer_stride(p->bufsize);
    if (posix_memalign((void **)&r->bufs, 64, (size_t)p->batch * stride) != 0)
        r->bufs = NULL;
    r->ctrl = calloc(p->batch, CTRL_BYTES);
    int table_failed = p->track && flow_table_init(&r->flows, p) != 0;
    if (!r->msgs || !r->iov || !r->bufs || !r->ctrl || table_failed) {
        pps_recv_free(r);
        errno = ENOMEM;
        return NULL;
    }
    for (uint32_t i = 0; i < p->batch; i++) {
        r->iov[i].iov_base = r->bufs + (size_t)i * stride;
        r->iov[i].iov_len = p->bufsize;
        r->msgs[i].msg_hdr.msg_iov = &r->iov[i];
        r->msgs[i].msg_hdr.msg_iovlen = 1;
        if (p->gro || p->timestamps) {
            r->msgs[i].msg_hdr.msg_control = r->ctrl + (size_t)i * CTRL_BYTES;
            r->msgs[i].msg_hdr.msg_controllen = CTRL_BYTES;
        }
    }
    return r;
}

void pps_recv_free(struct pps_receiver *r)
{
    if (!r)
        return;
    free(r->msgs);
    free(r->iov);
    free(r->bufs);
    free(r->ctrl);
    flow_table_free(&r->flows);
    free(r);
}

/* One latency figure's scalars; its buckets live in the shared slot. */
struct lat {
    uint64_t count, sum, max, skew;
};

/* Counters for one loop, kept in registers and published once per syscall. */
struct tally {
    uint64_t packets, foreign, short_pkts, untracked, foreign_flow;
    uint64_t ts_missing, stamp_future, stamp_stale;
    struct seq_tally seq;
    struct lat one_way, stack, app;
    /* One-way latencies not yet in the histogram: run_n packets sent at run_tx. A sender
     * stamps a whole sendmmsg batch (and every GSO segment of it) with one send time, and
     * a receive batch has one receive time, so they are one figure, recorded once. */
    uint64_t run_tx, run_n;
};

/* n packets' interval from `from` to `to` into a histogram; a negative one is a clock
 * skew. */
static inline void record_n(uint64_t *hist, struct lat *l, uint64_t from, uint64_t to,
                            uint64_t n)
{
    if (from > to) {
        l->skew += n;
        return;
    }
    uint64_t v = to - from, total;
    int idx = hist_index(v);
    /* One writer: a plain read-modify-write published with a relaxed store. */
    PUBLISH(hist[idx], hist[idx] + n);
    l->count += n;
    if (__builtin_mul_overflow(v, n, &total))
        total = UINT64_MAX;
    sat_add(&l->sum, total);
    if (v > l->max)
        l->max = v;
}

static inline void record(uint64_t *hist, struct lat *l, uint64_t from, uint64_t to)
{
    record_n(hist, l, from, to, 1);
}

/* A send stamp to believe: not later than the receive time by more than the slack (a
 * little later is clock skew between hosts, counted as such), not older than the run. */
static inline int stamp_future(uint64_t tx, uint64_t rx_ns)
{
    return tx > rx_ns && tx - rx_ns > PPS_STAMP_SLACK_NS;
}

static inline int stamp_trusted(const struct pps_receiver *r, uint64_t tx, uint64_t rx_ns)
{
    return !stamp_future(tx, rx_ns) && tx >= r->stale_before;
}

/* The pending run of one-way latencies, received at rx_ns, into the histogram, unless
 * its stamp is not to be believed. */
static void flush_one_way(const struct pps_receiver *r, struct pps_stats *st, struct tally *t,
                          uint64_t rx_ns)
{
    if (!t->run_n)
        return;
    if (stamp_future(t->run_tx, rx_ns))
        t->stamp_future += t->run_n;
    else if (t->run_tx < r->stale_before)
        t->stamp_stale += t->run_n;
    else
        record_n(st->hist, &t->one_way, t->run_tx, rx_ns, t->run_n);
    t->run_n = 0;
}

/* One field of the wire header, loaded straight from the packet (payloads are not
 * aligned). Not a copy of the whole header to the stack: gcc stores that as one 16-byte
 * vector and reads the fields back in 4- and 8-byte pieces, which the CPU cannot forward
 * from the store; the stall cost ~3 ns a packet here (bench/recv_cost.py). */
#define WIRE_FIELD(data, field)                                                            \
    ({                                                                                     \
        __typeof__(((struct pps_wire *)0)->field) v_;                                      \
        memcpy(&v_, (data) + offsetof(struct pps_wire, field), sizeof(v_));                \
        v_;                                                                                \
    })

/* kernel_ns: the message's kernel RX stamp (0: none, or timestamps off). */
static inline __attribute__((always_inline)) void
segment(struct pps_receiver *r, struct pps_stats *st, const char *data, uint32_t len,
        uint64_t rx_ns, uint64_t kernel_ns, struct tally *t)
{
    t->packets++;
    if (!r->p.track)
        return;
    if (len < PPS_WIRE_BYTES) {
        t->short_pkts++;
        return;
    }
    if (le32toh(WIRE_FIELD(data, magic)) != PPS_MAGIC) {
        t->foreign++;
        return;
    }
    const uint64_t seq = le64toh(WIRE_FIELD(data, seq));
    struct flow *f = find_flow(&r->flows, le32toh(WIRE_FIELD(data, flow)), seq);
    if (__builtin_expect(!f, 0)) {
        if (r->flows.miss != MISS_FULL) { /* not this run's: no entry, no latency */
            t->foreign++;
            if (r->flows.miss == MISS_FOREIGN)
                t->foreign_flow++;
            else
                t->seq.jumps++;
            return;
        }
        t->untracked++; /* ours, but the table is full */
    } else if (__builtin_expect(!track(f, seq, &t->seq), 0)) {
        t->foreign++; /* a seq jump: counted in t->seq.jumps */
        return;
    }
    if (r->p.latency) {
        uint64_t tx = le64toh(WIRE_FIELD(data, tx_ns));
        if (tx != t->run_tx || !t->run_n) {
            flush_one_way(r, st, t, rx_ns);
            t->run_tx = tx;
        }
        t->run_n++;
        if (r->p.timestamps) {
            if (!kernel_ns) {
                t->ts_missing++;
            } else {
                /* app does not use the wire's stamp: it stands whatever tx_ns says */
                if (stamp_trusted(r, tx, rx_ns))
                    record(st->stack_hist, &t->stack, tx, kernel_ns);
                record(st->app_hist, &t->app, kernel_ns, rx_ns);
            }
        }
    }
}

/* What the control messages of message m say: the size of its GRO segments (0 when the
 * kernel did not coalesce) and its kernel software RX stamp (0 when it has none). */
static void read_cmsgs(struct mmsghdr *m, uint32_t *gro_seg, uint64_t *kernel_ns)
{
    *gro_seg = 0;
    *kernel_ns = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m->msg_hdr); c; c = CMSG_NXTHDR(&m->msg_hdr, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int size;
            memcpy(&size, CMSG_DATA(c), sizeof(size));
            *gro_seg = size > 0 ? (uint32_t)size : 0;
        } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPING) {
            /* ts[0] is the software stamp; ts[2] would be the NIC's (not asked for). */
            struct scm_timestamping ts;
            memcpy(&ts, CMSG_DATA(c), sizeof(ts));
            *kernel_ns = (uint64_t)ts.ts[0].tv_sec * 1000000000ull + (uint64_t)ts.ts[0].tv_nsec;
        }
    }
}

static void publish_lat(uint64_t *count, uint64_t *sum, uint64_t *max, uint64_t *skew,
                        const struct lat *l)
{
    PUBLISH(*count, l->count);
    PUBLISH(*sum, l->sum);
    PUBLISH(*max, l->max);
    PUBLISH(*skew, l->skew);
}

static void publish(struct pps_stats *st, const struct tally *t, uint32_t flows,
                    uint64_t datagrams, uint64_t bytes, uint64_t syscalls, uint64_t idle,
                    uint64_t errors, uint64_t now, int timestamps)
{
    PUBLISH(st->packets, t->packets);
    PUBLISH(st->datagrams, datagrams);
    PUBLISH(st->bytes, bytes);
    PUBLISH(st->syscalls, syscalls);
    PUBLISH(st->eagain, idle);
    PUBLISH(st->errors, errors);
    PUBLISH(st->foreign, t->foreign);
    PUBLISH(st->short_pkts, t->short_pkts);
    PUBLISH(st->untracked, t->untracked);
    PUBLISH(st->lost, t->seq.lost);
    PUBLISH(st->reordered, t->seq.reordered);
    PUBLISH(st->duplicate, t->seq.duplicate);
    PUBLISH(st->late, t->seq.late);
    PUBLISH(st->flows, (uint64_t)flows);
    PUBLISH(st->foreign_flow, t->foreign_flow);
    PUBLISH(st->seq_jump, t->seq.jumps);
    PUBLISH(st->stamp_future, t->stamp_future);
    PUBLISH(st->stamp_stale, t->stamp_stale);
    publish_lat(&st->lat_count, &st->lat_sum_ns, &st->lat_max_ns, &st->lat_skew, &t->one_way);
    if (timestamps) {
        publish_lat(&st->stack_count, &st->stack_sum_ns, &st->stack_max_ns, &st->stack_skew,
                    &t->stack);
        publish_lat(&st->app_count, &st->app_sum_ns, &st->app_max_ns, &st->app_skew, &t->app);
        PUBLISH(st->ts_missing, t->ts_missing);
    }
    PUBLISH(st->heartbeat_ns, now);
}

/* How many messages ahead of the one in hand the loop asks for their lines. */
#define PREFETCH_AHEAD 8

static inline void prefetch_message(const struct pps_receiver *r, int i)
{
    __builtin_prefetch(&r->msgs[i].msg_len);
    __builtin_prefetch(r->iov[i].iov_base);
}

int pps_recv_loop(struct pps_receiver *r, struct pps_shm *shm, uint32_t slot)
{
    if (!r || !valid_slot(shm, slot)) {
        errno = EINVAL;
        return -1;
    }
    const struct pps_recv_params *p = &r->p;
    struct pps_stats *st = &shm->slots[slot];
    struct tally t = {0};
    uint64_t datagrams = 0, bytes = 0, syscalls = 0, idle = 0, errors = 0;
    const int block_flags = p->busy_poll ? MSG_DONTWAIT : MSG_WAITFORONE;
    const int cmsgs = p->gro || p->timestamps;
    uint64_t spin_until = 0; /* block mode: poll, don't sleep, until then (clock_id time) */
    uint64_t now = pps_now_ns(p->clock_id);
    int fatal = 0;

    PUBLISH(st->state, PPS_STATE_RUNNING);
    while (!STOPPED(shm, PPS_ROLE_RECEIVER)) {
        const int polling = p->busy_poll || now < spin_until;
        int n = recvmmsg(p->fd, r->msgs, p->batch, polling ? MSG_DONTWAIT : block_flags, NULL);
        now = pps_now_ns(p->clock_id);
        syscalls++;
        if (n > 0 && p->spin_ns)
            spin_until = now + p->spin_ns;
        if (n > 0) {
            datagrams += (uint64_t)n;
            /* By the time recvmmsg returns, the kernel's own work for the later messages
             * has pushed the first ones' headers and message lengths out of L1 (and our
             * flow entry with them). Ask for them PREFETCH_AHEAD messages ahead of use:
             * the misses overlap the work, and a few in flight do not fill the CPU's
             * miss buffers the way a whole batch asked for at once did. */
            for (int i = 0; i < n && i < PREFETCH_AHEAD; i++)
                prefetch_message(r, i);
            if (r->flows.last) /* the flow most likely next */
                __builtin_prefetch(r->flows.last, 1);
            for (int i = 0; i < n; i++) {
                if (i + PREFETCH_AHEAD < n)
                    prefetch_message(r, i + PREFETCH_AHEAD);
                const char *data = r->iov[i].iov_base;
                uint32_t len = r->msgs[i].msg_len;
                uint32_t seg = 0;
                uint64_t kernel_ns = 0;
                if (cmsgs) {
                    read_cmsgs(&r->msgs[i], &seg, &kernel_ns);
                    if (!p->gro) /* only a receiver that asked for GRO splits */
                        seg = 0;
                    /* The kernel shrank this one's controllen; the others are untouched. */
                    r->msgs[i].msg_hdr.msg_controllen = CTRL_BYTES;
                }
                bytes += len;
                /* Under GRO every segment of the message shares the message's stamp. */
                if (!seg || seg >= len) {
                    segment(r, st, data, len, now, kernel_ns, &t);
                    continue;
                }
                for (uint32_t off = 0; off < len; off += seg)
                    segment(r, st, data + off, len - off < seg ? len - off : seg, now,
                            kernel_ns, &t);
            }
        } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            idle++;
        } else {
            errors++;
            PUBLISH(st->last_errno, (uint64_t)errno);
            if (errno == EBADF || errno == ENOTSOCK || errno == EINVAL || errno == EFAULT)
                fatal = errno;
        }
        seq_flush(&t.seq);
        flush_one_way(r, st, &t, now); /* the run's receive time is this batch's */
        publish(st, &t, r->flows.used, datagrams, bytes, syscalls, idle, errors, now,
                (int)p->timestamps);
        if (fatal)
            break;
        if (p->deadline_ns &&
            (p->clock_id == CLOCK_MONOTONIC ? now : pps_now_ns(CLOCK_MONOTONIC)) >= p->deadline_ns)
            break;
    }
    PUBLISH(st->state, fatal ? PPS_STATE_FAILED : PPS_STATE_DONE);
    if (fatal) {
        errno = fatal;
        return -1;
    }
    return 0;
}

int pps_recv_flows(const struct pps_receiver *r, struct pps_flow_result *out, uint32_t cap)
{
    if (!r || (!out && cap)) {
        errno = EINVAL;
        return -1;
    }
    return flow_table_results(&r->flows, out, cap);
}
