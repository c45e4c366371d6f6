/* pacer.h - the sender's pacing: two token buckets and a sleep that watches the stop word.
 * Not part of the contract.
 *
 * Both senders (send.c's sendmmsg loop and xsk_send.c's AF_XDP loop) pace with it, so
 * they hold a rate the same way. */
#ifndef PPS_PACER_H
#define PPS_PACER_H

#include <errno.h>
#include <stdint.h>
#include <time.h>

#include "pps.h"
#include "internal.h"

/* The longest a paced sender sleeps in one go. It then publishes its heartbeat (the
 * orchestrator takes a loop silent for a second as stalled) and looks at the stop word,
 * so a slow rate (20 pps in batches of 64 is one send every 3 s) still stops in time. */
#define PACE_SLEEP_SLICE_NS 50000000ull

/* Sleep until `target` (CLOCK_MONOTONIC ns): the kernel for the long part, a spin for
 * the last stretch, because a timer wake-up can be late by tens of microseconds.
 * Returns 1 if the stop word was set meanwhile. */
static inline int pace_wait_until(uint64_t target, uint64_t *sleeps, struct pps_shm *shm,
                                  struct pps_stats *st)
{
    const uint64_t spin_ns = 60000;
    uint64_t now = pps_now_ns(CLOCK_MONOTONIC);
    while (target > now + spin_ns) {
        uint64_t wake = target - spin_ns;
        if (wake > now + PACE_SLEEP_SLICE_NS)
            wake = now + PACE_SLEEP_SLICE_NS;
        struct timespec ts = {(time_t)(wake / 1000000000ull), (long)(wake % 1000000000ull)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        (*sleeps)++;
        now = pps_now_ns(CLOCK_MONOTONIC);
        PUBLISH(st->heartbeat_ns, now);
        if (STOPPED(shm, PPS_ROLE_SENDER))
            return 1;
    }
    while (pps_now_ns(CLOCK_MONOTONIC) < target)
        cpu_relax();
    return 0;
}

/* Pacing is two token buckets, as in a policer with a peak rate (RFC 4115, tc tbf
 * peakrate). The average bucket holds the offered rate over the run: after a stall
 * (a scheduler slice on a shared CPU, a late timer) the packets not sent are owed, up
 * to PACE_CATCHUP_NS worth; without that debt a bucket of one batch lost 2-8% of the
 * rate at 100 kpps here. The peak bucket bounds how the debt is paid: at most
 * PACE_PEAK_FACTOR times the rate, and at most `burst` packets back to back, because a
 * catch-up sent as one train overflows a default receive buffer (~280 small packets)
 * and turns a sender stall into receiver drops. */
#define PACE_CATCHUP_NS 20000000.0
#define PACE_PEAK_FACTOR 1.25

struct pacer {
    double ns_per_pkt;   /* average: 1e9 / rate */
    double peak_ns;      /* peak: ns_per_pkt / PACE_PEAK_FACTOR */
    uint64_t t0;
    uint64_t credited;   /* packets the average schedule has released and we sent */
    uint64_t debt_cap;   /* most packets owed; older debt is forgiven */
    uint64_t depth;      /* peak bucket depth in packets: the longest back-to-back train */
    double tat;          /* peak bucket: theoretical arrival time (GCRA), ns */
};

/* one_call: the most packets one send hands over (it must fit in the bucket, or it never
 * goes). */
static inline void pacer_init(struct pacer *pc, double rate_pps, uint64_t burst,
                              uint64_t one_call, uint64_t now)
{
    pc->ns_per_pkt = 1e9 / rate_pps;
    pc->peak_ns = pc->ns_per_pkt / PACE_PEAK_FACTOR;
    pc->t0 = now;
    pc->credited = 0;
    pc->depth = burst > one_call ? burst : one_call;
    pc->debt_cap = (uint64_t)(PACE_CATCHUP_NS / pc->ns_per_pkt);
    if (pc->debt_cap < pc->depth)
        pc->debt_cap = pc->depth;
    pc->tat = (double)now;
}

/* Earliest time `want` packets may go, given both buckets. */
static inline uint64_t pacer_due(struct pacer *pc, uint64_t now, uint64_t want)
{
    uint64_t due = (uint64_t)((double)(now - pc->t0) / pc->ns_per_pkt);
    if (due > pc->credited + pc->debt_cap) /* owed too long: forgive the excess */
        pc->credited = due - pc->debt_cap;
    double avg = (double)pc->t0 + (double)(pc->credited + want) * pc->ns_per_pkt;
    double peak = pc->tat - (double)(pc->depth - want) * pc->peak_ns;
    double at = avg > peak ? avg : peak;
    return at > (double)now ? (uint64_t)at : now;
}

static inline void pacer_sent(struct pacer *pc, uint64_t now, uint64_t packets)
{
    pc->credited += packets;
    pc->tat = (pc->tat > (double)now ? pc->tat : (double)now) + (double)packets * pc->peak_ns;
}

#endif
