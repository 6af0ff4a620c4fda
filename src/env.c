/* Start-up settings and diagnostics: the one reader of ALLOCSHIM_* variables and
 * the one writer to stderr, neither of which may allocate. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

const char *allocshim_env(const char *suffix) {
  char name[64];
  int n = snprintf(name, sizeof name, "ALLOCSHIM_%s", suffix);
  if (n < 0 || (size_t)n >= sizeof name)
    return NULL;
  return secure_getenv(name);
}

bool allocshim_env_flag(const char *suffix) {
  static const char *const yes[] = {"1", "y", "yes", "true", "on"};
  const char *v = allocshim_env(suffix);
  for (size_t i = 0; v != NULL && i < sizeof yes / sizeof yes[0]; i++)
    if (strcasecmp(v, yes[i]) == 0)
      return true;
  return false;
}

int allocshim_purge_setting(void) {
  const char *v = allocshim_env("PURGE");
  if (v == NULL)
    return PURGE_DEFAULT;
  if (strcasecmp(v, "off") == 0)
    return PURGE_OFF;
  /* Whole seconds in decimal digits, at most a day: a longer delay is no idle return. */
  int seconds = 0;
  for (const char *c = v; *c != '\0'; c++) {
    if (*c < '0' || *c > '9' || c - v >= 5)
      return PURGE_INVALID;
    seconds = seconds * 10 + (*c - '0');
  }
  return v[0] != '\0' && seconds <= PURGE_MAX_SECONDS ? seconds : PURGE_INVALID;
}

ssize_t allocshim_read_file(const char *path, char *buf, size_t size) {
  int saved = errno;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd < 0 || size == 0 ? -1 : read(fd, buf, size - 1);
  if (fd >= 0)
    close(fd);
  if (n >= 0)
    buf[n] = '\0';
  errno = saved;
  return n;
}

bool allocshim_under_seccomp(void) {
  /* The calling thread's own filter: a new thread inherits that one, and a thread may
   * have installed it for itself alone. Static, not on a stack that may be a small
   * coroutine's: the callers are serialized by their state's compare-and-swap. */
  static char buf[4096];
  if (allocshim_read_file("/proc/thread-self/status", buf, sizeof buf) <= 0 &&
      allocshim_read_file("/proc/self/status", buf, sizeof buf) <= 0) /* before 3.17 */
    return true;
  const char *at = strstr(buf, "\nSeccomp:");
  return at == NULL || strtol(at + 9, NULL, 10) != 0;
}

void allocshim_say(const char *fmt, ...) {
  int saved = errno;
  char line[1024];
  size_t prefix = (size_t)snprintf(line, sizeof line, "allocshim: ");
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line + prefix, sizeof line - prefix - 1, fmt, ap);
  va_end(ap);
  size_t len = n < 0 ? prefix : prefix + (size_t)n;
  if (len > sizeof line - 2)
    len = sizeof line - 2;
  line[len++] = '\n';
  allocshim_write_all(STDERR_FILENO, line, len);
  errno = saved;
}

void allocshim_write_all(int fd, const char *buf, size_t len) {
  for (size_t off = 0; off < len;) {
    ssize_t w = write(fd, buf + off, len - off);
    if (w <= 0 && errno != EINTR)
      return;
    off += w > 0 ? (size_t)w : 0;
  }
}
