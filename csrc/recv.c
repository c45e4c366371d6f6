/* recv.c - the receiver loop: recvmmsg in batches, optional UDP GRO, per-flow
 * sequence tracking in a bounded table, one-way latency into a histogram, and with
 * kernel RX timestamps that latency split in two more: stack and app. */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <linux/errqueue.h> /* struct scm_timestamping */

#include "pps.h"
#include "internal.h"

#ifndef UDP_GRO
#define UDP_GRO 104
#endif

/* Reorder window: the last WINDOW sequence numbers of a flow, one bit each, indexed
 * by seq mod WINDOW. It tells a late packet (bit clear) from a duplicate (bit set). */
#define WINDOW 1024
#define WINDOW_WORDS (WINDOW / 64)
/* Control space per message: a UDP_GRO cmsg (an int) and an SCM_TIMESTAMPING cmsg (three
 * timespecs) both fit, with room to spare for the kernel's alignment. */
#define CTRL_BYTES 128
_Static_assert(CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct scm_timestamping)) <= CTRL_BYTES,
               "control buffer too small for UDP_GRO + SCM_TIMESTAMPING");

struct flow {
    uint64_t key;          /* flow id + 1; 0 marks an empty slot */
    uint64_t next;         /* highest seq + 1 */
    uint64_t received, unique, reordered, duplicate, late;
    uint64_t window[WINDOW_WORDS];
};

struct pps_receiver {
    struct pps_recv_params p;
    struct mmsghdr *msgs;
    struct iovec *iov;
    char *bufs;            /* batch buffers, `stride` bytes apart (see buffer_stride) */
    char *ctrl;
    struct flow *table;    /* open addressing, capacity a power of two, never grows */
    uint32_t mask;
    uint32_t used;
    struct flow *last;     /* the flow of the previous packet (find_flow) */
    uint64_t last_key;
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

struct pps_receiver *pps_recv_new(const struct pps_recv_params *p)
{
    if (!p || p->batch == 0 || p->batch > 1024 || p->bufsize == 0 || p->max_flows == 0 ||
        (p->timestamps && p->clock_id != CLOCK_REALTIME)) { /* kernel stamps are realtime */
        errno = EINVAL;
        return NULL;
    }
    struct pps_receiver *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->p = *p;
    uint32_t cap = 2;
    while (cap < 2 * p->max_flows) /* load factor <= 1/2 keeps probes short */
        cap <<= 1;
    r->mask = cap - 1;
    r->msgs = calloc(p->batch, sizeof(*r->msgs));
    r->iov = calloc(p->batch, sizeof(*r->iov));
    const size_t stride = buffer_stride(p->bufsize);
    if (posix_memalign((void **)&r->bufs, 64, (size_t)p->batch * stride) != 0)
        r->bufs = NULL;
    r->ctrl = calloc(p->batch, CTRL_BYTES);
    r->table = p->track ? calloc(cap, sizeof(struct flow)) : NULL;
    if (!r->msgs || !r->iov || !r->bufs || !r->ctrl || (p->track && !r->table)) {
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
    free(r->table);
    free(r);
}

static __attribute__((noinline)) struct flow *lookup_flow(struct pps_receiver *r,
                                                          uint64_t key, struct pps_stats *st)
{
    uint32_t i = (uint32_t)(key * 0x9E3779B97F4A7C15ull >> 32) & r->mask;
    for (;;) {
        struct flow *f = &r->table[i];
        if (f->key == key)
            break;
        if (f->key == 0) {
            if (r->used >= r->p.max_flows)
                return NULL; /* bounded: a flood of new flows cannot grow memory */
            f->key = key;
            r->used++;
            PUBLISH(st->flows, r->used);
            break;
        }
        i = (i + 1) & r->mask;
    }
    r->last = &r->table[i];
    r->last_key = key;
    return r->last;
}

/* Most flows arrive in runs (a batch from one sender socket): skip the hash on repeats. */
static inline struct flow *find_flow(struct pps_receiver *r, uint64_t key, struct pps_stats *st)
{
    return key == r->last_key ? r->last : lookup_flow(r, key, st);
}

static inline int window_test_set(struct flow *f, uint64_t seq)
{
    uint64_t bit = 1ull << (seq % 64);
    uint64_t *word = &f->window[(seq % WINDOW) / 64];
    int was = (*word & bit) != 0;
    *word |= bit;
    return was;
}

/* Set (or clear) the slots of [from, to) a word at a time: a burst of drops skips
 * hundreds of numbers and a run in order covers thousands, and a bit at a time cost more
 * than the packet did. A range of WINDOW or more covers every slot. */
static inline void window_fill(struct flow *f, uint64_t from, uint64_t to, int set)
{
    if (to - from >= WINDOW) {
        memset(f->window, set ? 0xff : 0, sizeof(f->window));
        return;
    }
    while (from < to) {
        uint32_t bit = from % 64;
        uint64_t n = 64 - bit;
        if (n > to - from)
            n = to - from;
        uint64_t mask = (n == 64 ? ~0ull : (1ull << n) - 1) << bit;
        uint64_t *word = &f->window[(from % WINDOW) / 64];
        *word = set ? *word | mask : *word & ~mask;
        from += n;
    }
}

/* One latency figure's scalars; its buckets live in the shared slot. */
struct lat {
    uint64_t count, sum, max, skew;
};

/* Counters for one loop, kept in registers and published once per syscall. */
struct tally {
    uint64_t packets, foreign, short_pkts, untracked, lost, reordered, duplicate, late;
    uint64_t ts_missing;
    struct lat one_way, stack, app;
    /* One-way latencies not yet in the histogram: run_n packets sent at run_tx. A sender
     * stamps a whole sendmmsg batch (and every GSO segment of it) with one send time, and
     * a receive batch has one receive time, so they are one figure, recorded once. */
    uint64_t run_tx, run_n;
    /* Sequence numbers [seq_from, seq_to) of seq_flow, next in order, not yet in its
     * entry: a packet that continues the run costs one compare. Flushed before any other
     * use of a flow entry and at the end of every batch. */
    struct flow *seq_flow;
    uint64_t seq_from, seq_to;
};

/* Everything but the next number in order: a gap, a straggler, a repeat. */
static __attribute__((noinline)) void track_out_of_order(struct flow *f, uint64_t seq,
                                                         struct tally *t)
{
    if (seq > f->next) {
        uint64_t gap = seq - f->next;
        /* Slots of the skipped sequence numbers now belong to them, not to numbers
         * WINDOW older: clear them. */
        window_fill(f, f->next, seq, 0);
        t->lost += gap;
        window_test_set(f, seq);
        f->next = seq + 1;
        f->unique++;
    } else if (f->next - seq > WINDOW) {
        /* Too old to tell from a duplicate; a late arrival is far more likely. */
        f->late++;
        f->reordered++;
        f->unique++;
        t->late++;
        t->reordered++;
        if (t->lost) /* a hostile duplicate this old must not wrap the count */
            t->lost--;
    } else if (window_test_set(f, seq)) {
        f->duplicate++;
        t->duplicate++;
    } else {
        f->reordered++;
        f->unique++;
        t->reordered++;
        t->lost--;
    }
}

/* The pending run in order into its flow's entry. Setting the run's slots is the whole
 * window update: each held a number WINDOW older, long settled. */
static void flush_run(struct tally *t)
{
    struct flow *f = t->seq_flow;
    if (!f)
        return;
    uint64_t n = t->seq_to - t->seq_from;
    window_fill(f, t->seq_from, t->seq_to, 1);
    f->next = t->seq_to;
    f->received += n;
    f->unique += n;
    t->seq_flow = NULL;
}

static inline void track(struct flow *f, uint64_t seq, struct tally *t)
{
    if (__builtin_expect(f == t->seq_flow && seq == t->seq_to, 1)) {
        t->seq_to++;
        return;
    }
    flush_run(t);
    if (seq == f->next) {
        t->seq_flow = f;
        t->seq_from = seq;
        t->seq_to = seq + 1;
        return;
    }
    f->received++;
    track_out_of_order(f, seq, t);
}

/* n packets' interval from `from` to `to` into a histogram; a negative one is a clock
 * skew. */
static inline void record_n(uint64_t *hist, struct lat *l, uint64_t from, uint64_t to,
                            uint64_t n)
{
    if (from > to) {
        l->skew += n;
        return;
    }
    uint64_t v = to - from;
    int idx = hist_index(v);
    /* One writer: a plain read-modify-write published with a relaxed store. */
    PUBLISH(hist[idx], hist[idx] + n);
    l->count += n;
    l->sum += v * n;
    if (v > l->max)
        l->max = v;
}

static inline void record(uint64_t *hist, struct lat *l, uint64_t from, uint64_t to)
{
    record_n(hist, l, from, to, 1);
}

/* The pending run of one-way latencies, received at rx_ns, into the histogram. */
static void flush_one_way(struct pps_stats *st, struct tally *t, uint64_t rx_ns)
{
    if (t->run_n) {
        record_n(st->hist, &t->one_way, t->run_tx, rx_ns, t->run_n);
        t->run_n = 0;
    }
}

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
    struct pps_wire w;
    memcpy(&w, data, sizeof(w)); /* payloads are not aligned */
    if (le32toh(w.magic) != PPS_MAGIC) {
        t->foreign++;
        return;
    }
    struct flow *f = find_flow(r, (uint64_t)le32toh(w.flow) + 1, st);
    if (!f)
        t->untracked++;
    else
        track(f, le64toh(w.seq), t);
    if (r->p.latency) {
        uint64_t tx = le64toh(w.tx_ns);
        if (tx != t->run_tx || !t->run_n) {
            flush_one_way(st, t, rx_ns);
            t->run_tx = tx;
        }
        t->run_n++;
        if (r->p.timestamps) {
            if (!kernel_ns) {
                t->ts_missing++;
            } else {
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

static void publish(struct pps_stats *st, const struct tally *t, uint64_t datagrams,
                    uint64_t bytes, uint64_t syscalls, uint64_t idle, uint64_t errors,
                    uint64_t now, int timestamps)
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
    PUBLISH(st->lost, t->lost);
    PUBLISH(st->reordered, t->reordered);
    PUBLISH(st->duplicate, t->duplicate);
    PUBLISH(st->late, t->late);
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
            if (r->last) /* the flow most likely next */
                __builtin_prefetch(r->last, 1);
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
        flush_run(&t);
        flush_one_way(st, &t, now); /* the run's receive time is this batch's */
        publish(st, &t, datagrams, bytes, syscalls, idle, errors, now, (int)p->timestamps);
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
    uint32_t n = 0;
    if (!r->table)
        return 0;
    for (uint32_t i = 0; i <= r->mask && n < cap; i++) {
        const struct flow *f = &r->table[i];
        if (!f->key)
            continue;
        out[n++] = (struct pps_flow_result){f->key - 1, f->received, f->unique, f->next,
                                            f->reordered, f->duplicate, f->late};
    }
    return (int)n;
}
