#include "zmqx.h"

#include "util.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

void *zmqx_socket(void *ctx, int type, int linger_ms, int64_t maxmsg)
{
    void *s = zmq_socket(ctx, type);
    if (!s)
        return NULL;
    zmq_setsockopt(s, ZMQ_LINGER, &linger_ms, sizeof linger_ms);
    if (maxmsg > 0)
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    return s;
}

int zmqx_send(void *sock, const void *data, size_t len, int flags)
{
    /* zmq_send copies the buffer into a message and consumes it. */
    for (;;) {
        int rc = zmq_send(sock, data, len, flags);
        if (rc >= 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/* zmqx_send_take's message free function: hint says whether the buffer
   is still ours to free (a send that failed gives it back). Runs on
   libzmq's I/O thread once the message is written, or on ours at close. */
typedef struct {
    /* Release-stored before the send, acquire-loaded by the free: the
       edge that orders our writes to the buffer before libzmq's thread
       frees it, which ThreadSanitizer cannot see through libzmq. */
    atomic_bool keep;
} s_take_hint_t;

static void s_take_free(void *data, void *hint)
{
    s_take_hint_t *h = hint;
    if (!atomic_load_explicit(&h->keep, memory_order_acquire))
        free(data);
    free(h);
}

int zmqx_send_take(void *sock, char **data, size_t len, int flags)
{
    /* Small messages are copied (libzmq keeps them inline anyway). */
    if (len < 4096) {
        if (zmqx_send(sock, *data, len, flags) != 0)
            return -1;
        free(*data);
        *data = NULL;
        return 0;
    }
    s_take_hint_t *h = xcalloc(1, sizeof *h);
    atomic_store_explicit(&h->keep, false, memory_order_release);
    zmq_msg_t m;
    if (zmq_msg_init_data(&m, *data, len, s_take_free, h) != 0) {
        free(h);
        if (zmqx_send(sock, *data, len, flags) != 0)
            return -1;
        free(*data);
        *data = NULL;
        return 0;
    }
    for (;;) {
        if (zmq_msg_send(&m, sock, flags) >= 0) {
            *data = NULL;        /* libzmq frees it once written */
            return 0;
        }
        if (errno != EINTR)
            break;
    }
    int e = errno;
    atomic_store_explicit(&h->keep, true, memory_order_relaxed);   /* not sent: still ours */
    zmq_msg_close(&m);
    errno = e;
    return -1;
}

static void s_drain_more(void *sock)
{
    int more = 1;
    size_t sz = sizeof more;
    while (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) == 0 && more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, 0) < 0) {
            zmq_msg_close(&m);
            if (errno == EINTR)
                continue;
            break;
        }
        zmq_msg_close(&m);
    }
}

char *zmqx_recv(void *sock, size_t *len, int flags)
{
    return zmqx_recv_from(sock, len, flags, NULL);
}

char *zmqx_recv_from(void *sock, size_t *len, int flags, char *user_id)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, sock, flags) < 0) {
        int e = errno;
        zmq_msg_close(&m);
        errno = e;
        return NULL;
    }
    if (zmq_msg_more(&m)) {
        zmq_msg_close(&m);
        s_drain_more(sock);
        errno = EPROTO;
        return NULL;
    }
    size_t n = zmq_msg_size(&m);
    char *buf = xmalloc(n + 1);
    memcpy(buf, zmq_msg_data(&m), n);
    buf[n] = '\0';
    if (user_id) {
        const char *uid = zmq_msg_gets(&m, "User-Id");
        snprintf(user_id, ZMQX_USER_ID_MAX, "%s", uid ? uid : "");
    }
    zmq_msg_close(&m);
    if (len)
        *len = n;
    return buf;
}

int zmqx_recv_frames(void *sock, zmqx_frames_t *out, int max_frames, int flags)
{
    memset(out, 0, sizeof *out);
    out->frames = xcalloc((size_t) max_frames, sizeof(char *));
    out->sizes = xcalloc((size_t) max_frames, sizeof(size_t));
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        int rc = zmq_msg_recv(&m, sock, out->count == 0 ? flags : 0);
        if (rc < 0) {
            int e = errno;
            zmq_msg_close(&m);
            if (e == EINTR && out->count > 0)
                continue;
            zmqx_frames_free(out);
            errno = e;
            return -1;
        }
        int more = zmq_msg_more(&m);
        if (out->count == max_frames) {
            zmq_msg_close(&m);
            if (more)
                s_drain_more(sock);
            zmqx_frames_free(out);
            errno = EPROTO;
            return -1;
        }
        size_t n = zmq_msg_size(&m);
        char *buf = xmalloc(n + 1);
        memcpy(buf, zmq_msg_data(&m), n);
        buf[n] = '\0';
        out->frames[out->count] = buf;
        out->sizes[out->count] = n;
        out->count++;
        if (!more) {
            const char *uid = zmq_msg_gets(&m, "User-Id");
            if (uid)
                snprintf(out->user_id, sizeof out->user_id, "%s", uid);
        }
        zmq_msg_close(&m);
        if (!more)
            return 0;
    }
}

void zmqx_frames_free(zmqx_frames_t *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->count; i++)
        free(f->frames[i]);
    free(f->frames);
    free(f->sizes);
    memset(f, 0, sizeof *f);
}

void zmqx_frames_copy(zmqx_frames_t *dst, const zmqx_frames_t *src)
{
    memset(dst, 0, sizeof *dst);
    dst->count = src->count;
    dst->frames = xcalloc((size_t) src->count + 1, sizeof(char *));
    dst->sizes = xcalloc((size_t) src->count + 1, sizeof(size_t));
    for (int i = 0; i < src->count; i++) {
        dst->frames[i] = xstrndup(src->frames[i], src->sizes[i]);
        dst->sizes[i] = src->sizes[i];
    }
    memcpy(dst->user_id, src->user_id, sizeof dst->user_id);
}

bool zmqx_ipc(const char *addr)
{
    return addr && strncmp(addr, "ipc://", 6) == 0 && addr[6] == '/' && addr[7] != '\0';
}

void zmqx_endpoint(char *buf, size_t size, const char *addr, int port)
{
    if (zmqx_ipc(addr)) {
        assert(port > 0);
        snprintf(buf, size, "%s/%d", addr, port);
        return;
    }
    bool v6 = strchr(addr, ':') != NULL && addr[0] != '[';
    char p[16] = "*";
    if (port > 0)
        snprintf(p, sizeof p, "%d", port);
    snprintf(buf, size, v6 ? "tcp://[%s]:%s" : "tcp://%s:%s", addr, p);
}

int zmqx_bind(void *sock, const char *addr, int port, int *bound, char *ep, size_t eplen)
{
    zmqx_endpoint(ep, eplen, addr, port);
    if (zmq_bind(sock, ep) != 0)
        return -1;
    if (zmqx_ipc(addr)) {
        if (chmod(ep + 6, 0660) != 0) {
            int e = errno;
            zmq_unbind(sock, ep);
            errno = e;
            return -1;
        }
        *bound = port;
        return 0;
    }
    *bound = zmqx_bound_port(sock);
    return *bound > 0 ? 0 : -1;
}

int zmqx_bound_port(void *sock)
{
    char ep[256];
    size_t sz = sizeof ep;
    if (zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, ep, &sz) != 0)
        return -1;
    const char *colon = strrchr(ep, ':');
    if (!colon)
        return -1;
    int64_t port;
    if (parse_int64(colon + 1, 1, 65535, &port) != 0)
        return -1;
    return (int) port;
}
