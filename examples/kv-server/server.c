/* kv-server: a small line-protocol key-value server on 127.0.0.1, built against an
 * installed allocshim to show the API in a real program (STATS, PROFILE, /metrics).
 * usage: kv-server [PORT [METRICS_PORT]]   (0: any free port; both are printed) */
#define _GNU_SOURCE
#include <allocshim.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* Commands, one per line:  SET key value | GET key | DEL key | COUNT | STATS |
 * PROFILE [pprof] | QUIT.  Replies are one line each. PROFILE dumps in jeprof's format
 * under the default name; PROFILE pprof writes a gzipped pprof profile in the current
 * directory and replies with its path, for go tool pprof. */

#define MAX_CLIENTS 64
#define BUCKETS     4096

struct entry {
  struct entry *next;
  char *key, *value;
};
static struct entry *table[BUCKETS];
static size_t entries;

static size_t hash(const char *s) {
  size_t h = 5381;
  while (*s)
    h = h * 33 + (unsigned char)*s++;
  return h % BUCKETS;
}

static struct entry **find(const char *key) {
  struct entry **e = &table[hash(key)];
  while (*e && strcmp((*e)->key, key) != 0)
    e = &(*e)->next;
  return e;
}

static void reply(FILE *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(FILE *out, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(out, fmt, ap);
  va_end(ap);
  fputc('\n', out);
}

/* Returns 0 to keep the connection, -1 to close it. */
static int command(char *line, FILE *out) {
  char *cmd = strtok(line, " \r\n"), *key = strtok(NULL, " \r\n"), *val = strtok(NULL, "\r\n");
  if (cmd == NULL)
    return 0;
  if (strcmp(cmd, "SET") == 0 && key && val) {
    struct entry **e = find(key);
    char *copy = strdup(val);
    if (copy == NULL)
      return reply(out, "ERR out of memory"), 0;
    if (*e) {
      free((*e)->value);
      (*e)->value = copy;
    } else {
      struct entry *n = malloc(sizeof *n);
      char *k = strdup(key);
      if (n == NULL || k == NULL) {
        free(n), free(k), free(copy);
        return reply(out, "ERR out of memory"), 0;
      }
      *n = (struct entry){NULL, k, copy};
      *e = n;
      entries++;
    }
    reply(out, "OK");
  } else if (strcmp(cmd, "GET") == 0 && key) {
    struct entry *e = *find(key);
    e ? reply(out, "VALUE %s", e->value) : reply(out, "NOTFOUND");
  } else if (strcmp(cmd, "DEL") == 0 && key) {
    struct entry **e = find(key), *gone = *e;
    if (gone == NULL)
      return reply(out, "NOTFOUND"), 0;
    *e = gone->next;
    free(gone->key), free(gone->value), free(gone);
    entries--;
    reply(out, "OK");
  } else if (strcmp(cmd, "COUNT") == 0) {
    reply(out, "COUNT %zu", entries);
  } else if (strcmp(cmd, "STATS") == 0) {
    fputs("STATS ", out);
    alloc_stats_print(out, ALLOC_FORMAT_JSON); /* one JSON object and a newline */
  } else if (strcmp(cmd, "PROFILE") == 0 && key == NULL) {
    int st = alloc_profile_dump(NULL);
    st == ALLOC_OK ? reply(out, "OK profile written") : reply(out, "ERR %s", alloc_strerror(st));
  } else if (strcmp(cmd, "PROFILE") == 0 && strcmp(key, "pprof") == 0) {
    /* The name's ending picks pprof's format; the number keeps each dump. */
    static unsigned seq;
    char path[4096], cwd[4000];
    if (getcwd(cwd, sizeof cwd) == NULL)
      return reply(out, "ERR %s", strerror(errno)), 0;
    /* A name cut short would lose the ending that asks for pprof's format. */
    if ((size_t)snprintf(path, sizeof path, "%s/kv-server.%ld.%u.pb.gz", cwd, (long)getpid(),
                         seq++) >= sizeof path)
      return reply(out, "ERR %s", strerror(ENAMETOOLONG)), 0;
    int st = alloc_profile_dump(path);
    st == ALLOC_OK ? reply(out, "OK %s", path)
                   : reply(out, "ERR %s (%s)", alloc_strerror(st), strerror(errno));
  } else if (strcmp(cmd, "QUIT") == 0) {
    return -1;
  } else {
    reply(out, "ERR unknown command");
  }
  return 0;
}

/* A listening socket on 127.0.0.1:*port; with 0 the kernel picks, and *port says which. */
static int listen_on(int *port) {
  int srv = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(srv, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)*port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (srv < 0 || bind(srv, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(srv, 16) != 0 ||
      getsockname(srv, (struct sockaddr *)&addr, &len) != 0) {
    perror("kv-server: bind/listen");
    exit(1);
  }
  *port = ntohs(addr.sin_port);
  return srv;
}

static void send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL); /* a scraper that hung up is no reason to die */
    if (w <= 0 && errno != EINTR)
      return;
    if (w > 0)
      p += w, n -= (size_t)w;
  }
}

/* The metrics port: one HTTP request per connection, answered, then closed. The
 * request is read to its blank line, since closing with unread bytes makes the kernel
 * reset the connection, which can destroy the response before the client reads it. A
 * client that sends nothing holds the (single-threaded) server up for 2 s; one that
 * trickles bytes, 2 s per read: an example, not a server to face the internet with. */
static void serve_metrics(int srv) {
  int c = accept4(srv, NULL, NULL, SOCK_CLOEXEC);
  if (c < 0)
    return;
  struct timeval timeout = {.tv_sec = 2};
  setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  char req[4096];
  size_t got = 0;
  ssize_t r;
  req[0] = '\0';
  while (got < sizeof req - 1 && strstr(req, "\r\n\r\n") == NULL &&
         (r = read(c, req + got, sizeof req - 1 - got)) > 0) {
    got += (size_t)r;
    req[got] = '\0';
  }
  bool metrics = strncmp(req, "GET /metrics ", 13) == 0 || strncmp(req, "GET /metrics?", 13) == 0;
  char *body = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&body, &len);
  if (m != NULL) {
    metrics ? alloc_stats_print(m, ALLOC_FORMAT_PROMETHEUS) : fputs("not found\n", m);
    fclose(m);
  }
  char head[256];
  int h = snprintf(head, sizeof head,
                   "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n",
                   metrics ? "200 OK" : "404 Not Found",
                   metrics ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain", len);
  send_all(c, head, (size_t)h);
  send_all(c, body, len);
  free(body);
  close(c);
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 7070;
  int srv = listen_on(&port);
  printf("kv-server: listening on 127.0.0.1:%d, allocator %s %s\n", port, alloc_backend(),
         alloc_backend_version());
  int metrics_port = argc > 2 ? atoi(argv[2]) : -1, metrics = -1; /* -1 in poll: ignored */
  if (metrics_port >= 0) {
    metrics = listen_on(&metrics_port);
    printf("kv-server: metrics on http://127.0.0.1:%d/metrics\n", metrics_port);
  }
  fflush(stdout);

  /* fds[0] takes clients, fds[1] scrapes, fds[2...] are the clients. */
  struct pollfd fds[MAX_CLIENTS + 2] = {{.fd = srv, .events = POLLIN},
                                        {.fd = metrics, .events = POLLIN}};
  FILE *streams[MAX_CLIENTS + 2] = {0};
  int n = 2;
  for (;;) {
    if (poll(fds, (nfds_t)n, -1) < 0 && errno != EINTR)
      return 1;
    if ((fds[0].revents & POLLIN) && n < MAX_CLIENTS + 2) {
      int c = accept(srv, NULL, NULL);
      if (c >= 0) {
        fds[n] = (struct pollfd){.fd = c, .events = POLLIN};
        streams[n++] = fdopen(c, "r+");
      }
    }
    if (fds[1].revents & POLLIN)
      serve_metrics(metrics);
    for (int i = 2; i < n; i++) {
      if (!(fds[i].revents & (POLLIN | POLLHUP)))
        continue;
      char line[4096];
      /* One command per wake-up keeps every client served in turn. */
      if (fgets(line, sizeof line, streams[i]) == NULL || command(line, streams[i]) < 0) {
        fclose(streams[i]);
        fds[i] = fds[--n];
        streams[i] = streams[n];
        i--;
        continue;
      }
      fflush(streams[i]);
    }
  }
}
