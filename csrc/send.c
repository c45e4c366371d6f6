/* send.c - the sender loop: sendmmsg in batches, one connected socket per flow,
 * optional UDP GSO, optional pacing by a token bucket at batch granularity. */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "pps.h"
#include "internal.h"

struct sender {
    struct mmsghdr *msgs;
    struct iovec *iov;
    char *bufs;
    size_t msg_bytes;     /* payload * segments */
    uint32_t segs;        /* wire packets per message */
};

static int sender_init(struct sender *s, const struct pps_send_params *p)
{
    s->segs = p->gso_segments ? p->gso_segments : 1;
    s->msg_bytes = (size_t)p->payload * s->segs;
    s->msgs = calloc(p->batch, sizeof(*s->msgs));
    s->iov = calloc(p->batch, sizeof(*s->iov));
    /* One buffer per message: each carries its own sequence numbers. */
    s->bufs = calloc(p->batch, s->msg_bytes ? s->msg_bytes : 1);
    if (!s->msgs || !s->iov || !s->bufs)
        return -1;
    for (uint32_t i = 0; i < p->batch; i++) {
        s->iov[i].iov_base = s->bufs + i * s->msg_bytes;
        s->iov[i].iov_len = s->msg_bytes;
        s->msgs[i].msg_hdr.msg_iov = &s->iov[i];
        s->msgs[i].msg_hdr.msg_iovlen = 1;
    }
    return 0;
}

static void sender_free(struct sender *s)
{
    free(s->msgs);
    free(s->iov);
    free(s->bufs);
}

/* Stamp `count` messages of the flow whose id on the wire is `wire_flow`, starting at
 * sequence `seq`. */
static void stamp(struct sender *s, uint32_t count, uint32_t payload, uint32_t wire_flow,
                  uint64_t seq, uint64_t tx_ns)
{
    struct pps_wire w = {htole32(PPS_MAGIC), htole32(wire_flow), 0, htole64(tx_ns)};
    for (uint32_t i = 0; i < count; i++) {
        char *msg = s->bufs + i * s->msg_bytes;
        for (uint32_t k = 0; k < s->segs; k++) {
            w.seq = htole64(seq++);
            memcpy(msg + (size_t)k * payload, &w, sizeof(w));
        }
    }
}

/* The longest a paced sender sleeps in one go. It then publishes its heartbeat (the
 * orchestrator takes a loop silent for a second as stalled) and looks at the stop word,
 * so a slow rate (20 pps in batches of 64 is one send every 3 s) still stops in time. */
#define SLEEP_SLICE_NS 50000000ull

/* Sleep until `target` (CLOCK_MONOTONIC ns): the kernel for the long part, a spin for
 * the last stretch, because a timer wake-up can be late by tens of microseconds.
 * Returns 1 if the stop word was set meanwhile. */
static int wait_until(uint64_t target, uint64_t *sleeps, struct pps_shm *shm,
                      struct pps_stats *st)
{
    const uint64_t spin_ns = 60000;
    uint64_t now = pps_now_ns(CLOCK_MONOTONIC);
    while (target > now + spin_ns) {
        uint64_t wake = target - spin_ns;
        if (wake > now + SLEEP_SLICE_NS)
            wake = now + SLEEP_SLICE_NS;
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
 * to CATCHUP_NS worth; without that debt a bucket of one batch lost 2-8% of the rate at
 * 100 kpps here. The peak bucket bounds how the debt is paid: at most PEAK_FACTOR times
 * the rate, and at most `burst` packets back to back, because a catch-up sent as one
 * train overflows a default receive buffer (~280 small packets) and turns a sender
 * stall into receiver drops. */
#define CATCHUP_NS 20000000.0
#define PEAK_FACTOR 1.25

struct pacer {
    double ns_per_pkt;   /* average: 1e9 / rate */
    double peak_ns;      /* peak: ns_per_pkt / PEAK_FACTOR */
    uint64_t t0;
    uint64_t credited;   /* packets the average schedule has released and we sent */
    uint64_t debt_cap;   /* most packets owed; older debt is forgiven */
    uint64_t depth;      /* peak bucket depth in packets: the longest back-to-back train */
    double tat;          /* peak bucket: theoretical arrival time (GCRA), ns */
};

static void pacer_init(struct pacer *pc, const struct pps_send_params *p, uint32_t segs,
                       uint64_t now)
{
    uint64_t one_call = (uint64_t)p->batch * segs; /* a call must fit, or it never goes */
    pc->ns_per_pkt = 1e9 / p->rate_pps;
    pc->peak_ns = pc->ns_per_pkt / PEAK_FACTOR;
    pc->t0 = now;
    pc->credited = 0;
    pc->depth = p->burst > one_call ? p->burst : one_call;
    pc->debt_cap = (uint64_t)(CATCHUP_NS / pc->ns_per_pkt);
    if (pc->debt_cap < pc->depth)
        pc->debt_cap = pc->depth;
    pc->tat = (double)now;
}

/* Earliest time `want` packets may go, given both buckets. */
static uint64_t pacer_due(struct pacer *pc, uint64_t now, uint64_t want)
{
    uint64_t due = (uint64_t)((double)(now - pc->t0) / pc->ns_per_pkt);
    if (due > pc->credited + pc->debt_cap) /* owed too long: forgive the excess */
        pc->credited = due - pc->debt_cap;
    double avg = (double)pc->t0 + (double)(pc->credited + want) * pc->ns_per_pkt;
    double peak = pc->tat - (double)(pc->depth - want) * pc->peak_ns;
    double at = avg > peak ? avg : peak;
    return at > (double)now ? (uint64_t)at : now;
}

static void pacer_sent(struct pacer *pc, uint64_t now, uint64_t packets)
{
    pc->credited += packets;
    pc->tat = (pc->tat > (double)now ? pc->tat : (double)now) + (double)packets * pc->peak_ns;
}

/* Errors that no retry can cure: the socket or the parameters are wrong. */
static int is_fatal(int err)
{
    return err == EBADF || err == ENOTSOCK || err == EINVAL || err == EFAULT ||
           err == EDESTADDRREQ || err == EMSGSIZE || err == EAFNOSUPPORT || err == EIO;
}

static void count_error(struct pps_stats *st, int err, uint64_t *eagain, uint64_t *enobufs,
                        uint64_t *refused, uint64_t *errors)
{
    if (err == EAGAIN || err == EWOULDBLOCK)
        (*eagain)++;
    else if (err == ENOBUFS)
        (*enobufs)++;
    else if (err == ECONNREFUSED)
        (*refused)++;
    else if (err != EINTR) {
        (*errors)++;
        PUBLISH(st->last_errno, (uint64_t)err);
    }
}

int pps_send_loop(const struct pps_send_params *p, struct pps_shm *shm, uint32_t slot,
                  uint64_t *flow_seq)
{
    if (!p || !p->fds || !flow_seq || p->nflows == 0 || p->batch == 0 || p->batch > 1024 ||
        (!p->raw && p->payload < PPS_WIRE_BYTES) || !valid_slot(shm, slot)) {
        errno = EINVAL;
        return -1;
    }
    struct sender s = {0};
    if (sender_init(&s, p) < 0) {
        sender_free(&s);
        errno = ENOMEM;
        return -1;
    }
    struct pps_stats *st = &shm->slots[slot];
    uint64_t packets = 0, datagrams = 0, bytes = 0, syscalls = 0;
    uint64_t eagain = 0, enobufs = 0, refused = 0, errors = 0, sleeps = 0;

    const int paced = p->rate_pps > 0;
    struct pacer pc = {0};
    if (paced)
        pacer_init(&pc, p, s.segs, pps_now_ns(CLOCK_MONOTONIC));

    PUBLISH(st->state, PPS_STATE_RUNNING);
    uint32_t flow = 0;
    int fatal = 0;
    while (!STOPPED(shm, PPS_ROLE_SENDER)) {
        uint32_t count = p->batch;
        uint64_t now = pps_now_ns(CLOCK_MONOTONIC);
        if (p->deadline_ns && now >= p->deadline_ns)
            break;
        if (p->max_packets) {
            if (packets >= p->max_packets)
                break;
            uint64_t left = (p->max_packets - packets + s.segs - 1) / s.segs;
            if (left < count)
                count = (uint32_t)left;
        }
        if (paced) {
            uint64_t at = pacer_due(&pc, now, (uint64_t)count * s.segs);
            if (at > now) {
                if (wait_until(at, &sleeps, shm, st))
                    break;
                now = pps_now_ns(CLOCK_MONOTONIC);
            }
        }
        uint64_t tx_ns = p->clock_id == CLOCK_MONOTONIC ? now : pps_now_ns(p->clock_id);
        if (!p->raw)
            stamp(&s, count, p->payload, pps_wire_flow(p->run_key, p->flow_base + flow),
                  flow_seq[flow], tx_ns);
        int r = sendmmsg(p->fds[flow], s.msgs, count, 0);
        syscalls++;
        if (r > 0) {
            /* Only what the kernel took gets a sequence number, so the receiver's
             * count of gaps is exact even when a batch is cut short. */
            uint64_t pk = (uint64_t)r * s.segs;
            flow_seq[flow] += pk;
            packets += pk;
            datagrams += (uint64_t)r;
            bytes += (uint64_t)r * s.msg_bytes;
            if (paced)
                pacer_sent(&pc, now, pk);
        } else {
            fatal = is_fatal(errno) ? errno : 0;
            count_error(st, errno, &eagain, &enobufs, &refused, &errors);
        }
        if (++flow == p->nflows)
            flow = 0;
        PUBLISH(st->packets, packets);
        PUBLISH(st->datagrams, datagrams);
        PUBLISH(st->bytes, bytes);
        PUBLISH(st->syscalls, syscalls);
        PUBLISH(st->eagain, eagain);
        PUBLISH(st->enobufs, enobufs);
        PUBLISH(st->refused, refused);
        PUBLISH(st->errors, errors);
        PUBLISH(st->pace_sleeps, sleeps);
        PUBLISH(st->heartbeat_ns, now);
        if (fatal)
            break;
    }
    PUBLISH(st->state, fatal ? PPS_STATE_FAILED : PPS_STATE_DONE);
    sender_free(&s);
    if (fatal) {
        errno = fatal;
        return -1;
    }
    return 0;
}
