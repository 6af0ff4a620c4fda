/* Idle return (ALLOCSHIM_PURGE) from inside a program: what a burst freed goes back to the
 * OS while the program makes no allocation call, and small programs keep one thread.
 * usage: idle_check small            a few allocations; exit 0 with one thread
 *        idle_check unshare          the same, then unshare(CLONE_NEWUSER) must work
 *        idle_check alive|exited MIB SECONDS LIMIT_MIB
 *                                     MIB allocated in 16-1300-byte blocks by two
 *                                     threads and freed; the threads idle (alive) or
 *                                     end (exited); exit 0 once resident memory is at
 *                                     most LIMIT_MIB within SECONDS, without allocating
 *        idle_check main MIB SECONDS LIMIT_MIB
 *                                     the same from the main thread alone, in blocks
 *                                     of 64 KiB-1 MiB, freed within milliseconds
 *        idle_check spawn MIB ROUNDS LIMIT_MIB
 *                                     as exited, the memory trimmed; then ROUNDS
 *                                     rounds of 10 short-lived threads: exit 0 if
 *                                     resident memory grew by at most LIMIT_MIB
 *        idle_check arenas MIB ROUNDS LIMIT_MIB
 *                                     the same with rounds of 4 threads, each on one
 *                                     of 32 arenas the program made (jemalloc's
 *                                     mallctl; 77 where there is none)
 *        idle_check quiet MIB        as exited, then no thread may wake up more than
 *                                     twice in 3 s once the memory is back
 *        idle_check fork MIB          the burst in the parent, then again in a forked
 *                                     child and in the parent: both give memory back
 *        idle_check fork_unshare MIB  the burst in the parent; a forked child that
 *                                     allocates a little stays single-threaded, and
 *                                     unshare(CLONE_NEWUSER) works in it
 *        idle_check seccomp|plain MIB half the burst on the main thread alone, under
 *                                     an allow-all seccomp filter or not; prints the
 *                                     thread count after it
 *        idle_check seccomp_thread MIB the same on a second thread that installed the
 *                                     filter for itself alone; the count once it ended
 *        idle_check refused MIB [end] the burst, then a filter on every thread that
 *                                     refuses sleeping and another burst: prints the
 *                                     CPU the other threads used in the next 3 s, and
 *                                     the memory resident; with `end`, once the other
 *                                     threads have ended (30 s at most) */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#if __has_include(<linux/seccomp.h>) /* not in musl's own headers */
#include <linux/filter.h>
#include <linux/seccomp.h>
#define HAVE_SECCOMP 1
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* /proc files read without allocating: the allocator must not be woken by the check. */
static long read_number(const char *path, const char *key) {
  char buf[4096];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  buf[n > 0 ? n : 0] = '\0';
  if (key == NULL) /* statm: the second figure, resident pages */
    return strchr(buf, ' ') ? atol(strchr(buf, ' ') + 1) : -1;
  char *p = strstr(buf, key);
  return p ? atol(p + strlen(key)) : -1;
}

static long resident_mib(void) {
  return read_number("/proc/self/statm", NULL) * sysconf(_SC_PAGESIZE) / (1 << 20);
}

static long thread_count(void) { return read_number("/proc/self/status", "Threads:"); }

static size_t burst_bytes;
static int burst_threads = 2;
static bool burst_big; /* blocks of 64 KiB-1 MiB rather than 16-1300 bytes */
static atomic_int burst_done, release;

/* A thread's share of the burst: a checked pattern in every block, so none is
 * optimised away. */
static void *burst(void *arg) {
  size_t target = burst_bytes / (size_t)burst_threads, held = 0, n = 0, cap = 1 << 16;
  void **blocks = malloc(cap * sizeof *blocks);
  uint32_t x = (uint32_t)(uintptr_t)arg * 2654435761u;
  while (blocks && held < target) {
    if (n == cap && !(blocks = realloc(blocks, (cap *= 2) * sizeof *blocks)))
      break;
    x = x * 1103515245u + 12345u;
    size_t size = burst_big ? 65536 + (x >> 8) % (1 << 20) : 16 + (x >> 8) % 1285;
    unsigned char *p = malloc(size);
    if (!p)
      break;
    memset(p, (int)(n & 0xff), size);
    blocks[n++] = p;
    held += size;
  }
  int ok = blocks != NULL && held >= target;
  for (size_t i = 0; i < n; i++) {
    unsigned char *p = blocks[i];
    ok &= p[0] == (unsigned char)(i & 0xff);
    free(p);
  }
  free(blocks);
  if (!ok) {
    fprintf(stderr, "idle_check: the burst failed\n");
    exit(2);
  }
  atomic_fetch_add(&burst_done, 1);
  while (arg != NULL && !atomic_load(&release))
    usleep(50 * 1000); /* alive: idle, with no allocation call */
  return NULL;
}

/* Runs the burst on two threads; `alive` leaves them idling, else they end. */
static void run_burst(bool alive, pthread_t t[2]) {
  atomic_store(&burst_done, 0);
  for (int i = 0; i < 2; i++)
    if (pthread_create(&t[i], NULL, burst, alive ? (void *)(uintptr_t)(i + 1) : NULL) != 0)
      exit(2);
  if (!alive)
    for (int i = 0; i < 2; i++)
      pthread_join(t[i], NULL);
  while (atomic_load(&burst_done) < 2)
    usleep(10 * 1000);
}

/* Polls resident memory every 100 ms: true once it is at most limit MiB. */
static bool returned_within(int seconds, long limit, const char *what) {
  long first = resident_mib();
  for (int i = 0; i <= seconds * 10; i++) {
    long now = resident_mib();
    if (now <= limit) {
      printf("%s: %ld MiB right after the frees, %ld MiB after %.1f s (limit %ld)\n", what, first,
             now, i / 10.0, limit);
      return true;
    }
    usleep(100 * 1000);
  }
  printf("%s: %ld MiB right after the frees, still %ld MiB after %d s (limit %ld)\n", what, first,
         resident_mib(), seconds, limit);
  return false;
}

/* The sum of a figure over every thread of this process but the caller. The directory
 * is read with getdents64 into a stack buffer: opendir() would allocate, and a free
 * wakes the purging thread. */
static long sum_other_threads(long (*of)(const char *tid)) {
  char self[32], buf[4096];
  snprintf(self, sizeof self, "%ld", (long)gettid());
  long total = 0;
  int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  for (long n; fd >= 0 && (n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0;) {
    for (long at = 0; at < n;) {
      struct dirent64 *e = (struct dirent64 *)(buf + at);
      at += e->d_reclen;
      if (e->d_name[0] != '.' && strcmp(e->d_name, self) != 0)
        total += of(e->d_name);
    }
  }
  if (fd >= 0)
    close(fd);
  return total;
}

static long switches_of(const char *tid) {
  char path[300];
  snprintf(path, sizeof path, "/proc/self/task/%s/status", tid);
  long v = read_number(path, "voluntary_ctxt_switches:");
  return v > 0 ? v : 0;
}

/* Voluntary context switches of the other threads (the caller's own sleep is one). */
static long wakeups(void) { return sum_other_threads(switches_of); }

#if HAVE_SECCOMP
/* CPU time in clock ticks: after the command's closing parenthesis, the state is field
 * 3, utime 14 and stime 15. */
static long cpu_ticks_of(const char *tid) {
  char path[300], stat[1024];
  snprintf(path, sizeof path, "/proc/self/task/%s/stat", tid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t got = fd < 0 ? -1 : read(fd, stat, sizeof stat - 1);
  if (fd >= 0)
    close(fd);
  stat[got > 0 ? got : 0] = '\0';
  char *f = strrchr(stat, ')');
  for (int field = 2; f != NULL && field < 14; field++)
    f = strchr(f + 1, ' ');
  long utime = 0, stime = 0;
  return f != NULL && sscanf(f, " %ld %ld", &utime, &stime) == 2 ? utime + stime : 0;
}

/* Every thread, the purger included, gets EPERM for sleeping from now on. */
static bool refuse_sleep(void) {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clock_nanosleep, 2, 0),
#ifdef SYS_nanosleep
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_nanosleep, 1, 0),
#else
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clock_nanosleep, 1, 0),
#endif
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
  };
  struct sock_fprog prog = {sizeof f / sizeof f[0], f};
  return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) == 0;
}

static void *filtered_burst(void *arg) {
  struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  struct sock_fprog filter = {1, &allow};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter) != 0)
    return (void *)1;
  return burst(arg);
}
#endif

/* The burst, its memory back in the parent, then fork(): the child's pid, 0 in the
 * child, or -1 (said) when the parent kept its memory or could not fork. */
static pid_t fork_after_burst(pthread_t t[2]) {
  run_burst(false, t);
  if (!returned_within(30, 64, "parent, before fork"))
    return -1;
  return fork();
}

/* Whether the child ended with status 0. */
static bool child_ok(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* A short-lived thread's work: 64 blocks of 16 B-16 KiB, written at both ends, checked
 * and freed (bench/ "spawn"). */
static void *spawned(void *arg) {
  uint64_t x = (uintptr_t)arg * 0x9e3779b97f4a7c15u;
  unsigned char *p[64];
  size_t n[64];
  bool bad = false;
  for (int k = 0; k < 64; k++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    n[k] = 16 + x % 16369;
    if ((p[k] = malloc(n[k])) == NULL)
      return "malloc failed";
    p[k][0] = (unsigned char)k, p[k][n[k] - 1] = (unsigned char)n[k];
  }
  for (int k = 0; k < 64; k++) {
    bad |= p[k][0] != (unsigned char)k || p[k][n[k] - 1] != (unsigned char)n[k];
    free(p[k]);
  }
  return bad ? "a block changed" : NULL;
}

/* A short-lived thread on an arena the program made (jemalloc's mallctl, where the
 * build has it): 8 MiB in blocks of 16 B-3 KiB and, one in eight, 16-316 KiB, written,
 * checked and freed. */
typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);
static mallctl_fn mallctl_of;
static void *on_arena(void *arg) {
  unsigned arena = (unsigned)(uintptr_t)arg;
  if (mallctl_of("thread.arena", NULL, NULL, &arena, sizeof arena) != 0)
    return "thread.arena failed";
  enum { MAX = 8192 };
  static _Thread_local unsigned char *p[MAX];
  uint64_t x = arena * 7919u + 1;
  size_t held = 0, n = 0;
  bool bad = false;
  while (held < ((size_t)8 << 20) && n < MAX) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    size_t size = n % 8 == 0 ? 16384 + x % 300000 : 16 + x % 3000;
    if ((p[n] = malloc(size)) == NULL)
      return "malloc failed";
    memset(p[n], (int)(n & 0x7f), size);
    held += size, n++;
  }
  for (size_t i = 0; i < n; i++) {
    bad |= p[i][0] != (unsigned char)(i & 0x7f);
    free(p[i]);
  }
  return bad ? "a block changed" : NULL;
}

/* The shim's malloc_trim, where the C library declares none (musl). */
extern int malloc_trim(size_t pad) __attribute__((weak));

/* ROUNDS rounds of `width` (at most 10) short-lived threads, each running fn(arg(r, i)),
 * once the heap has passed idle return's mark (the burst, then trimmed): the peak
 * resident memory over the rounds must stay within limit MiB of what the burst left. */
static int thread_rounds(const char *what, long rounds, long limit, int width, void *(*fn)(void *),
                         void *(*arg)(long r, int i)) {
  pthread_t t[10];
  run_burst(false, t);
  if (malloc_trim != NULL)
    malloc_trim(0);
  long base = resident_mib(), peak = base, threads = thread_count();
  for (long r = 0; r < rounds; r++) {
    for (int i = 0; i < width; i++)
      if (pthread_create(&t[i], NULL, fn, arg(r, i)) != 0)
        return fprintf(stderr, "%s: pthread_create failed\n", what), 1;
    for (int i = 0; i < width; i++) {
      void *failed;
      pthread_join(t[i], &failed);
      if (failed != NULL)
        return fprintf(stderr, "%s: %s\n", what, (char *)failed), 1;
    }
    long now = resident_mib();
    peak = now > peak ? now : peak;
  }
  printf("%s: %ld thread(s) after the burst, %ld MiB resident; %ld rounds: %ld MiB at most\n", what,
         threads, base, rounds, peak);
  return peak - base <= limit ? 0 : 1;
}

/* Short-lived threads: jemalloc 5.3 with its background thread on reused none of an
 * ended thread's pages once they had coalesced into a free extent 64 times a slab's
 * size, and grew by 250 MiB a second. */
static void *spawn_arg(long r, int i) { return (void *)(uintptr_t)(r * 10 + i + 1); }

/* The same, 4 at a time, each bound to one of 32 arenas the program made, in turn:
 * jemalloc with its background thread on purged none at a thread's end, and each kept
 * its last thread's pages (32 x 8 MiB) until the decay. */
static unsigned arena_pool[32];
static void *arena_arg(long r, int i) { return (void *)(uintptr_t)arena_pool[(r * 4 + i) % 32]; }
static int arena_rounds(long rounds, long limit) {
  if ((mallctl_of = (mallctl_fn)dlsym(RTLD_DEFAULT, "mallctl")) == NULL) {
    printf("arenas: no mallctl in this build\n");
    return 77;
  }
  for (int i = 0; i < 32; i++) {
    size_t len = sizeof arena_pool[i];
    if (mallctl_of("arenas.create", &arena_pool[i], &len, NULL, 0) != 0)
      return fprintf(stderr, "arenas: arenas.create failed\n"), 1;
  }
  return thread_rounds("arenas", rounds, limit, 4, on_arena, arena_arg);
}

static int small(void) {
  for (int i = 0; i < 1000; i++)
    free(malloc((size_t)(16 + i)));
  long n = thread_count();
  printf("small: %ld thread(s)\n", n);
  return n == 1 ? 0 : 1;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "small") == 0)
    return small();
  if (strcmp(mode, "unshare") == 0) {
    if (small() != 0)
      return 1;
    if (unshare(CLONE_NEWUSER) != 0) {
      printf("unshare(CLONE_NEWUSER): %s\n", strerror(errno));
      return 1;
    }
    printf("unshare(CLONE_NEWUSER): ok\n");
    return 0;
  }
  burst_bytes = (size_t)(argc > 2 ? atol(argv[2]) : 256) << 20;
  pthread_t t[2];
  if (strcmp(mode, "alive") == 0 || strcmp(mode, "exited") == 0) {
    if (argc != 5)
      return 2;
    bool alive = mode[0] == 'a';
    run_burst(alive, t);
    bool ok = returned_within(atoi(argv[3]), atol(argv[4]), mode);
    atomic_store(&release, 1);
    if (alive)
      for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    return ok ? 0 : 1;
  }
  /* A live thread that frees big blocks quickly and goes idle: mimalloc's last
   * decommits, due a little later, are its own to make, and it makes no more calls. */
  if (strcmp(mode, "main") == 0) {
    if (argc != 5)
      return 2;
    burst_threads = 1;
    burst_big = true;
    burst(NULL);
    return returned_within(atoi(argv[3]), atol(argv[4]), mode) ? 0 : 1;
  }
  if (strcmp(mode, "spawn") == 0)
    return argc == 5 ? thread_rounds("spawn", atol(argv[3]), atol(argv[4]), 10, spawned, spawn_arg)
                     : 2;
  if (strcmp(mode, "arenas") == 0)
    return argc == 5 ? arena_rounds(atol(argv[3]), atol(argv[4])) : 2;
  if (strcmp(mode, "quiet") == 0) {
    run_burst(false, t);
    if (!returned_within(30, 64, "quiet"))
      return 1;
    sleep(3); /* ALLOCSHIM_PURGE=1: the decay's last purges */
    long before = wakeups();
    sleep(3);
    long woke = wakeups() - before;
    printf("quiet: %ld wake-up(s) in 3 s with nothing left to return\n", woke);
    return woke <= 2 ? 0 : 1;
  }
  if (strcmp(mode, "fork") == 0) {
    pid_t pid = fork_after_burst(t);
    if (pid < 0)
      return 1;
    run_burst(false, t);
    bool ok = returned_within(30, 64, pid == 0 ? "child" : "parent, after fork");
    if (pid == 0)
      _exit(ok ? 0 : 1);
    return ok && child_ok(pid) ? 0 : 1;
  }
  if (strcmp(mode, "fork_unshare") == 0) {
    pid_t pid = fork_after_burst(t);
    if (pid < 0)
      return 1;
    if (pid == 0) {
      if (small() != 0)
        _exit(1);
      if (unshare(CLONE_NEWUSER) != 0) {
        printf("child: unshare(CLONE_NEWUSER): %s\n", strerror(errno));
        _exit(1);
      }
      printf("child: unshare(CLONE_NEWUSER): ok\n");
      _exit(0);
    }
    return child_ok(pid) ? 0 : 1;
  }
  if (strcmp(mode, "seccomp") == 0 || strcmp(mode, "plain") == 0) {
#if HAVE_SECCOMP
    /* A filter that allows everything: what counts is that one is installed. */
    struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog filter = {1, &allow};
    if (mode[0] == 's' && (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
                           prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter) != 0)) {
      printf("seccomp: %s\n", strerror(errno));
      return 2;
    }
#else
    if (mode[0] == 's') {
      printf("seccomp: not built in\n");
      return 2;
    }
#endif
    burst(NULL);
    printf("%s: %ld thread(s) after the burst\n", mode, thread_count());
    return 0;
  }
#if HAVE_SECCOMP
  if (strcmp(mode, "seccomp_thread") == 0) {
    pthread_t filtered;
    void *failed = NULL;
    if (pthread_create(&filtered, NULL, filtered_burst, NULL) != 0 ||
        pthread_join(filtered, &failed) != 0 || failed != NULL) {
      printf("seccomp_thread: no filter\n");
      return 2;
    }
    /* The joined thread leaves the kernel's count a little after pthread_join returns
     * (the kernel wakes the joiner before the thread is released): up to a second for
     * that, while a purging thread, once started, would stay. */
    for (int i = 0; i < 100 && thread_count() > 1; i++)
      usleep(10 * 1000);
    printf("%s: %ld thread(s) after the burst\n", mode, thread_count());
    return 0;
  }
  if (strcmp(mode, "refused") == 0) {
    burst(NULL);
    long before = thread_count();
    if (!refuse_sleep()) {
      printf("refused: no filter: %s\n", strerror(errno));
      return 2;
    }
    burst(NULL); /* wakes the purger, whose next sleep is refused */
    long ticks = sum_other_threads(cpu_ticks_of);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start); /* the vDSO: no system call to refuse */
    do
      clock_gettime(CLOCK_MONOTONIC, &now);
    while (now.tv_sec - start.tv_sec < 3);
    ticks = sum_other_threads(cpu_ticks_of) - ticks;
    /* A purger asleep for its whole period meets the filter only at its next sleep.
     * poll() is no sleep the filter refuses. */
    for (int i = 0; argc > 3 && strcmp(argv[3], "end") == 0 && i < 300 && thread_count() > 1; i++)
      poll(NULL, 0, 100);
    printf("refused: %ld thread(s) before the filter, %ld after; %.2f s of CPU in 3 s; %ld MiB "
           "resident\n",
           before, thread_count(), (double)ticks / (double)sysconf(_SC_CLK_TCK), resident_mib());
    return 0;
  }
#endif
  fprintf(stderr,
          "usage: idle_check small|unshare|alive|exited|main|quiet|fork|fork_unshare|seccomp|"
          "plain|seccomp_thread|refused ...\n");
  return 2;
}
