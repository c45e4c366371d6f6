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
#include "pacer.h"

struct sender {
    struct mmsghdr *msgs;
    struct iovec *iov;
    char *bufs;
    size_t msg_bytes;     /* payload * segments */
    uint32_t segs;        /* wire packets per message */
};

/* Counters for one loop, kept in registers and published once per syscall. */
struct tally {
    uint64_t packets, datagrams, bytes, syscalls;
    uint64_t eagain, enobufs, refused, errors, sleeps;
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

/* Errors that no retry can cure: the socket or the parameters are wrong. */
static int is_fatal(int err)
{
    return err == EBADF || err == ENOTSOCK || err == EINVAL || err == EFAULT ||
           err == EDESTADDRREQ || err == EMSGSIZE || err == EAFNOSUPPORT || err == EIO;
}

static void count_error(struct pps_stats *st, int err, struct tally *t)
{
    if (err == EAGAIN || err == EWOULDBLOCK)
        t->eagain++;
    else if (err == ENOBUFS)
        t->enobufs++;
    else if (err == ECONNREFUSED)
        t->refused++;
    else if (err != EINTR) {
        t->errors++;
        PUBLISH(st->last_errno, (uint64_t)err);
    }
}

static void publish(struct pps_stats *st, const struct tally *t, uint64_t now)
{
    PUBLISH(st->packets, t->packets);
    PUBLISH(st->datagrams, t->datagrams);
    PUBLISH(st->bytes, t->bytes);
    PUBLISH(st->syscalls, t->syscalls);
    PUBLISH(st->eagain, t->eagain);
    PUBLISH(st->enobufs, t->enobufs);
    PUBLISH(st->refused, t->refused);
    PUBLISH(st->errors, t->errors);
    PUBLISH(st->pace_sleeps, t->sleeps);
    PUBLISH(st->heartbeat_ns, now);
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
    struct tally t = {0};

    const int paced = p->rate_pps > 0;
    struct pacer pc = {0};
    if (paced) /* a call must fit in the bucket, or it never goes */
        pacer_init(&pc, p->rate_pps, p->burst, (uint64_t)p->batch * s.segs,
                   pps_now_ns(CLOCK_MONOTONIC));

    PUBLISH(st->state, PPS_STATE_RUNNING);
    uint32_t flow = 0;
    int fatal = 0;
    while (!STOPPED(shm, PPS_ROLE_SENDER)) {
        uint32_t count = p->batch;
        uint64_t now = pps_now_ns(CLOCK_MONOTONIC);
        if (p->deadline_ns && now >= p->deadline_ns)
            break;
        if (p->max_packets) {
            if (t.packets >= p->max_packets)
                break;
            uint64_t left = (p->max_packets - t.packets + s.segs - 1) / s.segs;
            if (left < count)
                count = (uint32_t)left;
        }
        if (paced) {
            uint64_t at = pacer_due(&pc, now, (uint64_t)count * s.segs);
            if (at > now) {
                if (pace_wait_until(at, &t.sleeps, shm, st))
                    break;
                now = pps_now_ns(CLOCK_MONOTONIC);
            }
        }
        uint64_t tx_ns = p->clock_id == CLOCK_MONOTONIC ? now : pps_now_ns(p->clock_id);
        if (!p->raw)
            stamp(&s, count, p->payload, pps_wire_flow(p->run_key, p->flow_base + flow),
                  flow_seq[flow], tx_ns);
        int r = sendmmsg(p->fds[flow], s.msgs, count, 0);
        t.syscalls++;
        if (r > 0) {
            /* Only what the kernel took gets a sequence number, so the receiver's
             * count of gaps is exact even when a batch is cut short. */
            uint64_t pk = (uint64_t)r * s.segs;
            flow_seq[flow] += pk;
            t.packets += pk;
            t.datagrams += (uint64_t)r;
            t.bytes += (uint64_t)r * s.msg_bytes;
            if (paced)
                pacer_sent(&pc, now, pk);
        } else {
            fatal = is_fatal(errno) ? errno : 0;
            count_error(st, errno, &t);
        }
        if (++flow == p->nflows)
            flow = 0;
        publish(st, &t, now);
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
