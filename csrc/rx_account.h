/* rx_account.h - a receiver's per-packet accounting of the wire header: the trust checks,
 * sequence tracking (flows.h), one-way latency into the slot's histograms, and the tally
 * published into the stats slot. Not part of the contract.
 *
 * Shared by the recvmmsg receiver (recv.c) and the AF_XDP receiver (xsk_recv.c), so both
 * count a UDP payload the same way. Everything is static and inline: each loop compiles
 * its own copy, as if it were written in its own file. The includer defines RX_RECEIVER as
 * its receiver type, a struct with these members:
 *   struct pps_recv_params p;   what the run's packets can be, and what to record
 *   struct flow_table flows;    with p.track only
 *   uint64_t stale_before;      a stamp older than this is stale (see pps.h)
 */
#ifndef PPS_RX_ACCOUNT_H
#define PPS_RX_ACCOUNT_H

#include <endian.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pps.h"
#include "internal.h"
#include "flows.h"

#ifndef RX_RECEIVER
#error "define RX_RECEIVER (the receiver type: members p, flows, stale_before) first"
#endif

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

static inline int stamp_trusted(const RX_RECEIVER *r, uint64_t tx, uint64_t rx_ns)
{
    return !stamp_future(tx, rx_ns) && tx >= r->stale_before;
}

/* The pending run of one-way latencies, received at rx_ns, into the histogram, unless
 * its stamp is not to be believed. */
static void flush_one_way(const RX_RECEIVER *r, struct pps_stats *st, struct tally *t,
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
segment(RX_RECEIVER *r, struct pps_stats *st, const char *data, uint32_t len,
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

#endif
