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

#define RX_RECEIVER struct pps_receiver
#include "rx_account.h"

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
