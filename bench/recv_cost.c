/* recv_cost.c - the receiver loop's own CPU time per packet, without the kernel.
 *
 * recvmmsg is replaced by a stand-in (this executable's definition wins over libc's for
 * calls from recv.c) that hands back a full batch at once: `flows` flows in order, one
 * run of batch / flows messages each, every message's header written as a sender would
 * (one stamp per call). What is left is the loop itself: headers, flow lookup, sequence
 * tracking, latency, publishing. On a shared, noisy host the kernel's receive path
 * dominates bench/modes.py's CPU per packet and moves by more than the loop costs; this
 * figure does not. bench/recv_cost.py builds it against two revisions of csrc/.
 *
 *   recv_cost CALLS FLOWS   ->  prints "ns_per_packet X packets N"
 */
#define _GNU_SOURCE
#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "pps.h"

#define BATCH 64
#define PAYLOAD 32

static struct pps_shm *shm;
static uint64_t calls, max_calls, nflows;
static uint64_t seqs[BATCH];
static uint32_t wire_ids[BATCH];

int recvmmsg(int fd, struct mmsghdr *msgs, unsigned int vlen, int flags, struct timespec *tmo)
{
    (void)fd, (void)flags, (void)tmo;
    if (++calls >= max_calls)
        __atomic_store_n(&shm->stop[PPS_ROLE_RECEIVER], 1, __ATOMIC_RELAXED);
    struct pps_wire w = {htole32(PPS_MAGIC), 0, 0, htole64(pps_now_ns(CLOCK_MONOTONIC))};
    unsigned int run = vlen / nflows;
    for (unsigned int i = 0; i < vlen; i++) {
        uint64_t flow = (i / run) % nflows;
        w.flow = htole32(wire_ids[flow]);
        w.seq = htole64(seqs[flow]++);
        memcpy(msgs[i].msg_hdr.msg_iov->iov_base, &w, sizeof(w));
        msgs[i].msg_len = PAYLOAD;
    }
    return (int)vlen;
}

int main(int argc, char **argv)
{
    max_calls = argc > 1 ? strtoull(argv[1], NULL, 0) : 200000;
    nflows = argc > 2 ? strtoull(argv[2], NULL, 0) : 1;
    if (nflows < 1 || nflows > BATCH)
        return 2;
    shm = aligned_alloc(64, (pps_shm_bytes(1) + 63) & ~63ull);
    if (!shm || pps_shm_init(shm, 1) != 0)
        return 1;
    struct pps_recv_params p = {
        .fd = -1, .batch = BATCH, .bufsize = 2048, .busy_poll = 1, .track = 1, .latency = 1,
        .max_flows = 16384, .clock_id = CLOCK_MONOTONIC,
    };
    for (uint32_t f = 0; f < nflows; f++)
        wire_ids[f] = f;
#ifdef PPS_SEQ_JUMP_MAX /* a csrc/ with the keyed wire (docs/wire.md) */
    p.run_key = 0x5eed15u;
    p.n_senders = 1;
    p.flows_per_sender = (uint32_t)nflows;
    p.run_start_ns = pps_now_ns(CLOCK_MONOTONIC);
    for (uint32_t f = 0; f < nflows; f++)
        wire_ids[f] = pps_wire_flow(p.run_key, f);
#endif
    struct pps_receiver *r = pps_recv_new(&p);
    if (!r)
        return 1;
    uint64_t t0 = pps_now_ns(CLOCK_PROCESS_CPUTIME_ID);
    if (pps_recv_loop(r, shm, 0) != 0)
        return 1;
    uint64_t spent = pps_now_ns(CLOCK_PROCESS_CPUTIME_ID) - t0;
    uint64_t packets = shm->slots[0].packets;
    if (shm->slots[0].lost || packets != calls * BATCH)
        return 3; /* the loop must have seen every packet, in order */
    printf("ns_per_packet %.3f packets %llu\n", (double)spent / (double)packets,
           (unsigned long long)packets);
    pps_recv_free(r);
    free(shm);
    return 0;
}
