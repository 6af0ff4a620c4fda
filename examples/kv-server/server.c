/* kv-server: a small line-protocol key-value server on 127.0.0.1, built against an
 * installed allocshim to show the API in a real program (STATS, PROFILE). */
#define _GNU_SOURCE
#include <allocshim.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Commands, one per line:  SET key value | GET key | DEL key | COUNT | STATS |
 * PROFILE | QUIT.  Replies are one line each. */

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
  } else if (strcmp(cmd, "PROFILE") == 0) {
    int st = alloc_profile_dump(NULL);
    st == ALLOC_OK ? reply(out, "OK profile written") : reply(out, "ERR %s", alloc_strerror(st));
  } else if (strcmp(cmd, "QUIT") == 0) {
    return -1;
  } else {
    reply(out, "ERR unknown command");
  }
  return 0;
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 7070;
  int srv = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(srv, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(srv, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(srv, 16) != 0) {
    perror("kv-server: bind/listen");
    return 1;
  }
  printf("kv-server: listening on 127.0.0.1:%d, allocator %s %s\n", port, alloc_backend(),
         alloc_backend_version());
  fflush(stdout);

  struct pollfd fds[MAX_CLIENTS + 1] = {{.fd = srv, .events = POLLIN}};
  FILE *streams[MAX_CLIENTS + 1] = {0};
  int n = 1;
  for (;;) {
    if (poll(fds, (nfds_t)n, -1) < 0 && errno != EINTR)
      return 1;
    if ((fds[0].revents & POLLIN) && n <= MAX_CLIENTS) {
      int c = accept(srv, NULL, NULL);
      if (c >= 0) {
        fds[n] = (struct pollfd){.fd = c, .events = POLLIN};
        streams[n++] = fdopen(c, "r+");
      }
    }
    for (int i = 1; i < n; i++) {
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
