/* Idle return: how much memory an allocator gives back to the system once a program
 * has freed everything and stopped calling it, with its threads idle or gone.
 * usage: idle_return [--exit] [--mib N] [--seconds T] [--max-mib M]
 *   Two threads allocate N MiB (default 512) of 16-1300-byte blocks and free them all;
 *   the resident set is read right after the frees and T seconds later (default 30),
 *   with the threads waiting (default) or exited (--exit). --max-mib fails the run when
 *   more than M MiB is resident after T seconds: the check for an idle-return feature. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Nothing from here on may call the allocator between the frees and the last reading,
 * or the program would measure itself: /proc is read with open/read into the stack. */
static long proc_read(const char *path, char *buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  long got = 0, n;
  while (got < (long)size - 1 && (n = read(fd, buf + got, size - 1 - got)) > 0)
    got += n;
  close(fd);
  buf[got > 0 ? got : 0] = '\0';
  return got;
}

/* Resident MiB, statm's second field (pages). */
static double resident_mib(void) {
  char buf[256];
  if (proc_read("/proc/self/statm", buf, sizeof buf) <= 0)
    return -1;
  char *p = strchr(buf, ' ');
  return p ? (double)strtoll(p + 1, NULL, 10) * sysconf(_SC_PAGESIZE) / 1048576.0 : -1;
}

/* Peak resident MiB, VmHWM in status (kB). */
static double peak_mib(void) {
  char buf[8192];
  if (proc_read("/proc/self/status", buf, sizeof buf) <= 0)
    return -1;
  char *p = strstr(buf, "VmHWM:");
  return p ? (double)strtoll(p + 6, NULL, 10) / 1024.0 : -1;
}

static size_t share;                      /* bytes each worker allocates */
static pthread_barrier_t freed, measured; /* alive variant: workers wait here */
static int threads_exit;

struct worker {
  uint64_t seed, blocks, bad;
};

/* Blocks are chained through their first word, so keeping 800,000 of them needs no
 * array from the allocator; the size and a tag at the end are checked before free. */
static void *worker(void *arg) {
  struct worker *w = arg;
  void *head = NULL;
  for (size_t total = 0; total < share;) {
    w->seed ^= w->seed << 13, w->seed ^= w->seed >> 7, w->seed ^= w->seed << 17;
    size_t n = 16 + w->seed % 1285;
    unsigned char *p = malloc(n);
    if (!p) {
      w->bad++;
      break;
    }
    memcpy(p, &head, sizeof head);
    uint32_t n32 = (uint32_t)n;
    memcpy(p + 8, &n32, sizeof n32);
    p[n - 1] = (unsigned char)(n * 7);
    head = p, total += n, w->blocks++;
  }
  while (head) {
    unsigned char *p = head;
    uint32_t n;
    memcpy(&head, p, sizeof head);
    memcpy(&n, p + 8, sizeof n);
    w->bad += n < 16 || n > 1300 || p[n - 1] != (unsigned char)(n * 7);
    free(p);
  }
  if (!threads_exit) {
    pthread_barrier_wait(&freed);
    pthread_barrier_wait(&measured); /* idle, alive, until main has its numbers */
  }
  return NULL;
}

int main(int argc, char **argv) {
  double mib = 512, seconds = 30, max_mib = -1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--exit") == 0)
      threads_exit = 1;
    else if (i + 1 < argc && strcmp(argv[i], "--mib") == 0)
      mib = atof(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "--seconds") == 0)
      seconds = atof(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "--max-mib") == 0)
      max_mib = atof(argv[++i]);
    else {
      fprintf(stderr, "usage: idle_return [--exit] [--mib N] [--seconds T] [--max-mib M]\n");
      return 2;
    }
  }
  const char *name = threads_exit ? "idle-exit" : "idle-alive";
  /* stdout's buffer is allocated by its first use: here, not after the frees */
  printf("%s: %g MiB from 2 threads, then %g s idle\n", name, mib, seconds);
  fflush(stdout);
  share = (size_t)(mib * 1048576.0 / 2);
  pthread_barrier_init(&freed, NULL, 3);
  pthread_barrier_init(&measured, NULL, 3);
  struct worker w[2] = {{0x9E3779B97F4A7C15u, 0, 0}, {0xD1B54A32D192ED03u, 0, 0}};
  pthread_t t[2];
  for (int i = 0; i < 2; i++)
    if (pthread_create(&t[i], NULL, worker, &w[i]) != 0) {
      fprintf(stderr, "%s: pthread_create failed\n", name);
      return 1;
    }
  if (threads_exit)
    for (int i = 0; i < 2; i++)
      pthread_join(t[i], NULL);
  else
    pthread_barrier_wait(&freed);
  double after_free = resident_mib();
  struct timespec left = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
  while (nanosleep(&left, &left) != 0)
    ;
  double after_idle = resident_mib(), peak = peak_mib();
  if (!threads_exit) {
    pthread_barrier_wait(&measured);
    for (int i = 0; i < 2; i++)
      pthread_join(t[i], NULL);
  }
  uint64_t blocks = w[0].blocks + w[1].blocks, bad = w[0].bad + w[1].bad;
  printf("%s: %llu operations, check %s\n", name, (unsigned long long)blocks * 2,
         bad ? "FAILED" : "ok");
  printf("%s: resident MiB %.1f after frees, %.1f after %g s, peak %.1f\n", name, after_free,
         after_idle, seconds, peak);
  if (max_mib >= 0 && after_idle > max_mib) {
    fprintf(stderr, "%s: FAILED: %.1f MiB resident after %g s idle, limit %g\n", name, after_idle,
            seconds, max_mib);
    return 1;
  }
  return bad ? 1 : 0;
}
