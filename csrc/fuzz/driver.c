/* driver.c - the C loops as a small program, for builds the Python module cannot load:
 * under AddressSanitizer and UndefinedBehaviorSanitizer (tests/test_wire_trust.py builds
 * it with the sources of csrc/ and feeds it hostile datagrams).
 *
 *   driver recv shm_fd=N nslots=N slot=N [batch= max_flows= run_key= n_senders=
 *               flows_per_sender= run_start_ns= deadline_ns= gro=0|1 bufsize=]
 *       binds UDP on 127.0.0.1, port chosen by the kernel, prints "port P", runs the
 *       receiver loop on the shared stats segment (a memfd the caller passes) until its
 *       stop word or the deadline, then prints one "flow" line per flow table entry.
 *   driver send shm_fd=N nslots=N slot=N port=P [flows= flow_base= run_key= packets=
 *               rate= gso=]
 *       one connected socket per flow to 127.0.0.1:P, runs the sender loop, prints one
 *       "sent FLOW SEQ" line per flow.
 *
 * Exit 0 on success, 1 when a loop fails (errno printed), 2 on bad arguments. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pps.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

/* The value of name=... among the arguments, or fallback. */
static uint64_t arg(int argc, char **argv, const char *name, uint64_t fallback)
{
    size_t n = strlen(name);
    for (int i = 2; i < argc; i++)
        if (strncmp(argv[i], name, n) == 0 && argv[i][n] == '=')
            return strtoull(argv[i] + n + 1, NULL, 0);
    return fallback;
}

static int fail(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, strerror(errno));
    return 1;
}

static struct pps_shm *attach(int argc, char **argv)
{
    int fd = (int)arg(argc, argv, "shm_fd", (uint64_t)-1);
    uint32_t nslots = (uint32_t)arg(argc, argv, "nslots", 0);
    if (fd < 0 || nslots == 0)
        return NULL;
    void *m = mmap(NULL, pps_shm_bytes(nslots), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return m == MAP_FAILED ? NULL : m;
}

static struct sockaddr_in loopback(uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static int open_receiver(int gro, uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int one = 1, rcvbuf = 1 << 23;
    struct timeval tv = {0, 50000}; /* the loop looks at its stop word this often */
    struct sockaddr_in a = loopback(0);
    socklen_t len = sizeof(a);
    /* Room for every packet a test sends: past rmem_max when privileged. */
    if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)))
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
        (gro && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one))) ||
        bind(fd, (struct sockaddr *)&a, sizeof(a)) || getsockname(fd, (struct sockaddr *)&a, &len))
        return -1;
    *port = ntohs(a.sin_port);
    return fd;
}

static int run_recv(int argc, char **argv, struct pps_shm *shm, uint32_t slot)
{
    uint16_t port;
    int gro = (int)arg(argc, argv, "gro", 0);
    int fd = open_receiver(gro, &port);
    if (fd < 0)
        return fail("socket");
    struct pps_recv_params p = {
        .fd = fd, .batch = (uint32_t)arg(argc, argv, "batch", 32),
        .bufsize = (uint32_t)arg(argc, argv, "bufsize", gro ? 65536 : 2048), .gro = (uint32_t)gro,
        .track = 1, .latency = 1, .max_flows = (uint32_t)arg(argc, argv, "max_flows", 64),
        .deadline_ns = arg(argc, argv, "deadline_ns", 0), .clock_id = CLOCK_MONOTONIC,
        .run_key = (uint32_t)arg(argc, argv, "run_key", 0),
        .n_senders = (uint32_t)arg(argc, argv, "n_senders", 1),
        .flows_per_sender = (uint32_t)arg(argc, argv, "flows_per_sender", 1),
        .run_start_ns = arg(argc, argv, "run_start_ns", 0),
    };
    struct pps_receiver *r = pps_recv_new(&p);
    if (!r)
        return fail("pps_recv_new");
    printf("port %u\n", port);
    fflush(stdout);
    if (pps_recv_loop(r, shm, slot) != 0)
        return fail("pps_recv_loop");
    struct pps_flow_result *out = calloc(p.max_flows, sizeof(*out));
    int n = out ? pps_recv_flows(r, out, p.max_flows) : -1;
    if (n < 0)
        return fail("pps_recv_flows");
    for (int i = 0; i < n; i++)
        printf("flow %llu received %llu unique %llu next_seq %llu reordered %llu "
               "duplicate %llu late %llu\n", (unsigned long long)out[i].flow,
               (unsigned long long)out[i].received, (unsigned long long)out[i].unique,
               (unsigned long long)out[i].next_seq, (unsigned long long)out[i].reordered,
               (unsigned long long)out[i].duplicate, (unsigned long long)out[i].late);
    free(out);
    pps_recv_free(r);
    close(fd);
    return 0;
}

static int run_send(int argc, char **argv, struct pps_shm *shm, uint32_t slot)
{
    uint32_t nflows = (uint32_t)arg(argc, argv, "flows", 1);
    uint32_t gso = (uint32_t)arg(argc, argv, "gso", 0);
    struct sockaddr_in to = loopback((uint16_t)arg(argc, argv, "port", 0));
    int *fds = calloc(nflows, sizeof(int));
    uint64_t *seqs = calloc(nflows, sizeof(uint64_t));
    if (!fds || !seqs || nflows == 0)
        return fail("flows");
    for (uint32_t i = 0; i < nflows; i++) {
        int size = 32;
        fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
        if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&to, sizeof(to)) ||
            (gso && setsockopt(fds[i], SOL_UDP, UDP_SEGMENT, &size, sizeof(size))))
            return fail("socket");
    }
    struct pps_send_params p = {
        .fds = fds, .nflows = nflows, .flow_base = (uint32_t)arg(argc, argv, "flow_base", 0),
        .batch = 16, .payload = 32, .gso_segments = gso,
        .rate_pps = (double)arg(argc, argv, "rate", 20000), .burst = 64,
        .max_packets = arg(argc, argv, "packets", 1000), .clock_id = CLOCK_MONOTONIC,
        .run_key = (uint32_t)arg(argc, argv, "run_key", 0),
    };
    if (pps_send_loop(&p, shm, slot, seqs) != 0)
        return fail("pps_send_loop");
    for (uint32_t i = 0; i < nflows; i++) {
        printf("sent %u %llu\n", p.flow_base + i, (unsigned long long)seqs[i]);
        close(fds[i]);
    }
    free(fds);
    free(seqs);
    return 0;
}

int main(int argc, char **argv)
{
    struct pps_shm *shm = argc >= 2 ? attach(argc, argv) : NULL;
    if (!shm || shm->magic != PPS_SHM_MAGIC) {
        fprintf(stderr, "usage: driver recv|send shm_fd=N nslots=N slot=N [name=value...]\n");
        return 2;
    }
    uint32_t slot = (uint32_t)arg(argc, argv, "slot", 0);
    int rc = strcmp(argv[1], "recv") == 0   ? run_recv(argc, argv, shm, slot)
             : strcmp(argv[1], "send") == 0 ? run_send(argc, argv, shm, slot)
                                            : 2;
    munmap(shm, pps_shm_bytes((uint32_t)arg(argc, argv, "nslots", 0)));
    return rc;
}
