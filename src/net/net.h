/* net.h -- stream transports, servers and their loop integration.
 * (Owned by the networking work, issue 5.  Included by internal.h after
 * Python.h, before the object layouts: only pointers to them here.)
 *
 * Every networking op is an rl_netop: an rl_op plus what the loop needs to
 * know about it while the kernel owns it.  Submitting one through
 * rl_netop_submit() takes a strong reference to its owner (the transport,
 * listener or sock_* request that embeds it) and links it into the loop's
 * list of held ops; the final completion gives the reference back
 * (rl_netop_done()).  So an object whose memory or buffers the kernel may
 * still write to can never be freed, and when the loop closes,
 * net_loop_after_reactor_destroy() walks that list to release what the
 * ops pinned.
 *
 * The one op-ownership model (every transport and sock_* request):
 *  - an op owns its buffer and a strong reference to its owner from its
 *    submission to its final completion (rl_netop_submit/rl_netop_done);
 *  - a completion never runs Python: it records the result and queues a
 *    ready record (rl_netop_queue), which takes over the owner reference;
 *  - a queued delivery blocks re-arming (rl_netop_armable): the buffer
 *    still holds the result (data, sender address) until the record handed
 *    it to Python (rl_netop_delivered), whatever the protocol does
 *    meanwhile (pause_reading() + resume_reading(), issue 9 defect 8);
 *  - closing cancels the armed ops and waits for their final completions
 *    before the fd is closed or the buffers freed;
 *  - when the loop closes, an op the reactor could not take back (left
 *    ARMED/CANCELLING by destroy(), see reactor.h) is leaked with its
 *    owner and what it pins: the kernel may still write there. */
#ifndef RL_NET_H
#define RL_NET_H

#include "reactor.h"

struct RlLoop;
struct RlStream;

typedef struct rl_netop rl_netop;

/* The loop was closed (the reactor destroyed) while the op was armed: no
 * completion will come; release what the op pinned (buffers).  The owner
 * reference is dropped by the caller afterwards. */
typedef void (*rl_netop_forget_fn)(rl_netop *n);

struct rl_netop {
    rl_op op;              /* first: the reactor hands us &op */
    PyObject *owner;           /* PyObject *; strong ref held while `held` */
    rl_netop *next, *prev; /* loop->net.held */
    rl_netop_forget_fn forget;
    uint8_t held;
    /* The result of the op's last completion waits on the ready queue to
     * be handed to Python (rl_netop_queue()): its buffers still hold it,
     * so the op must not be armed again (rl_netop_armable()) until the
     * record took it (rl_netop_delivered()). */
    uint8_t queued;
};

/* Per-module networking state (types, cached objects): the one block for
 * every transport and sock_* (sockops.c and dgram.c included).  Lives
 * inside rl_state as `st->net`; ops.c's traverse/clear mirror it. */
typedef struct rl_net_state {
    PyTypeObject *StreamType;    /* ringloop._core.StreamTransport */
    PyTypeObject *ReadPipeType;  /* ringloop._core._UnixReadPipeTransport */
    PyTypeObject *WritePipeType; /* ringloop._core._UnixWritePipeTransport */
    PyTypeObject *ListenerType;  /* a listening socket's accept machinery */
    /* cached stdlib objects (strong) */
    PyObject *socket_socket;       /* socket.socket */
    PyObject *aio_TransportSocket; /* asyncio.trsock.TransportSocket */
    PyObject *aio_BufferedProtocol;
    PyObject *aio_logger;          /* asyncio.log.logger */
    PyObject *aio_FlowControlMixin; /* base of StreamTransport, or NULL */
    PyObject *ssl_SSLSocket;       /* ssl.SSLSocket, or None without ssl */
    PyObject *socket__socket;      /* _socket.socket */
    PyObject *aio_BaseTransport_extra; /* BaseTransport._extra slot */
    /* interned method names */
    PyObject *str_connection_made;
    PyObject *str_connection_lost;
    PyObject *str_data_received;
    PyObject *str_eof_received;
    PyObject *str_get_buffer;
    PyObject *str_buffer_updated;
    PyObject *str_pause_writing;
    PyObject *str_resume_writing;
    PyObject *str_attach;
    PyObject *str_detach;
    PyObject *str_close;
    PyObject *str_add_done_callback;
    PyObject *str_sock_connect_slow;
    PyObject *str_call_later;
    PyObject *str_warning;
    PyObject *str_debug;
    PyObject *str_transport;
    PyObject *str_protocol;
    PyObject *str_socket;
    PyObject *str_sockname;
    PyObject *str_peername;
    PyObject *str_gettimeout;
    /* sock_* and datagram transports */
    PyObject *str_recv;
    PyObject *str_recv_into;
    PyObject *str_recvfrom;
    PyObject *str_recvfrom_into;
    PyObject *str_send;
    PyObject *str_sendto;
    PyObject *str_family;
    PyObject *str_throw;
    PyObject *str_datagram_received;
    PyObject *str_error_received;
} rl_net_state;

/* Per-loop networking state.  Lives inside RlLoop as `loop->net`. */
typedef struct rl_loop_net {
    rl_netop *held;           /* ops the kernel owns, with their owners */
    struct RlStream **fdmap;  /* fd -> live transport (borrowed) */
    size_t nfdmap;
    size_t ntransports;       /* transports whose fd is still open */
    char *scratch;            /* read buffer of readiness-mode reads */
    char *pipe_scratch;       /* read buffer of pipe reads (256 KiB) */
    /* Ops left ARMED/CANCELLING when the reactor was destroyed (it could
     * not drain the ring): leaked with their owners and buffers, never
     * freed (net_loop_after_reactor_destroy). */
    size_t nleaked;
} rl_loop_net;

/* ops.c: the transports' part of the loop (rl_loop_part, internal.h):
 * its module state (st->net) and loop state (loop->net), the Loop methods
 * of transports and servers.  sockops.c has the sock_* part. */
struct rl_loop_part;
struct rl_state;
extern const struct rl_loop_part rl_net_part;
/* 0, or -1 with RuntimeError if a transport owns fd. */
int rl_net_check_fd_free(struct RlLoop *loop, int fd);

#endif /* RL_NET_H */
