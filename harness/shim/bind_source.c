/* libfaultline_bind.so: makes a lab node's outgoing TCP connections start from its own lab
 * address, so that nftables partitions between address groups apply to them.
 *
 * Why: every lab node binds its own 127.0.x.y address, but the kernel sources connections to
 * another 127.x address from 127.0.0.1 unless the socket binds first. Redis has
 * `bind-source-addr`; Cassandra's internode and Kafka's inter-broker connections have no such
 * setting. Loaded with LD_PRELOAD into those JVMs, this wraps connect(): an IPv4 (or v4-mapped
 * IPv6) socket that is not bound yet and connects to a 127.0.0.0/8 address is first bound to
 * $FAULTLINE_BIND_ADDR (port 0: the kernel picks one). Anything else passes through untouched.
 * Built by `cargo xtask deps` (cc -shared -fPIC). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);

static connect_fn real_connect;
static struct in_addr source;
static int have_source;

__attribute__((constructor)) static void init(void) {
    real_connect = (connect_fn)dlsym(RTLD_NEXT, "connect");
    const char *text = getenv("FAULTLINE_BIND_ADDR");
    have_source = text != NULL && inet_pton(AF_INET, text, &source) == 1;
}

static int is_loopback_v4(const struct in_addr *a) {
    return (ntohl(a->s_addr) >> 24) == 127;
}

/* Binds `fd` to the source address if it is not bound yet; errors are ignored on purpose: the
 * connection then goes out from 127.0.0.1 as it would have without the shim. */
static void bind_source(int fd, int family) {
    int saved = errno;
    if (family == AF_INET) {
        struct sockaddr_in cur;
        socklen_t len = sizeof cur;
        if (getsockname(fd, (struct sockaddr *)&cur, &len) == 0 && cur.sin_port == 0) {
            struct sockaddr_in src;
            memset(&src, 0, sizeof src);
            src.sin_family = AF_INET;
            src.sin_addr = source;
            bind(fd, (struct sockaddr *)&src, sizeof src);
        }
    } else {
        struct sockaddr_in6 cur;
        socklen_t len = sizeof cur;
        if (getsockname(fd, (struct sockaddr *)&cur, &len) == 0 && cur.sin6_port == 0) {
            struct sockaddr_in6 src;
            memset(&src, 0, sizeof src);
            src.sin6_family = AF_INET6;
            src.sin6_addr.s6_addr[10] = 0xff;
            src.sin6_addr.s6_addr[11] = 0xff;
            memcpy(&src.sin6_addr.s6_addr[12], &source, 4);
            bind(fd, (struct sockaddr *)&src, sizeof src);
        }
    }
    errno = saved;
}

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    if (real_connect == NULL) {
        init();
    }
    if (have_source && addr != NULL) {
        if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
            const struct sockaddr_in *to = (const struct sockaddr_in *)addr;
            if (is_loopback_v4(&to->sin_addr)) {
                bind_source(fd, AF_INET);
            }
        } else if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
            const struct sockaddr_in6 *to = (const struct sockaddr_in6 *)addr;
            struct in_addr v4;
            if (IN6_IS_ADDR_V4MAPPED(&to->sin6_addr)) {
                memcpy(&v4, &to->sin6_addr.s6_addr[12], 4);
                if (is_loopback_v4(&v4)) {
                    bind_source(fd, AF_INET6);
                }
            }
        }
    }
    return real_connect(fd, addr, len);
}
