"""cffi builder (API mode) for pps._native: the C loops in this directory."""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
SOURCES = ["common.c", "send.c", "recv.c", "flows.c",
           "xsk.c", "xsk_send.c", "xsk_recv.c", "xdp_prog.c"]

ffibuilder = FFI()
ffibuilder.cdef((HERE / "pps.cdef").read_text())
ffibuilder.set_source(
    "pps._native",
    """
    #include <netinet/in.h>
    #include <netinet/udp.h>
    #include <sys/socket.h>
    #include <time.h>
    #include <linux/net_tstamp.h>
    #include "pps.h"
    #ifndef SOL_UDP
    #define SOL_UDP 17
    #endif
    /* Old libc headers may lack these; the values are the kernel's ABI. */
    #ifndef UDP_SEGMENT
    #define UDP_SEGMENT 103
    #endif
    #ifndef UDP_GRO
    #define UDP_GRO 104
    #endif
    #ifndef SO_BUSY_POLL
    #define SO_BUSY_POLL 46
    #endif
    #ifndef SO_PREFER_BUSY_POLL
    #define SO_PREFER_BUSY_POLL 69
    #endif
    #ifndef SO_BUSY_POLL_BUDGET
    #define SO_BUSY_POLL_BUDGET 70
    #endif
    #ifndef SO_INCOMING_CPU
    #define SO_INCOMING_CPU 49
    #endif
    #ifndef SO_RXQ_OVFL
    #define SO_RXQ_OVFL 40
    #endif
    """,
    sources=[str(Path("csrc") / s) for s in SOURCES],
    include_dirs=["csrc"],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
