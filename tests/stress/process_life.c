/* Process life under the shim: fork with busy threads, fork+exec, a signal landing
 * inside malloc, threads exiting while others free their blocks, dlopen and dlmopen
 * across the boundary (RTLD_DEEPBIND too), and allocation before main and after it.
 * usage: process_life PHASE [PLUGIN]   (each phase exits 0 when it held) */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if !ALLOCSHIM_GLIBC
/* musl has neither dlmopen nor RTLD_DEEPBIND. The phases that need them are not run
 * there (tests/CMakeLists.txt); these stand-ins only let the others be built. */
#define RTLD_DEEPBIND 0
#define LM_ID_BASE    0
#define LM_ID_NEWLM   (-1)
static void *dlmopen(long lmid, const char *file, int mode) {
  (void)lmid, (void)file, (void)mode;
  return NULL;
}
#endif

static const char *phase = "start";

/* A hang is a failure too: say where, and stop. Only the deadline may end the wait:
 * the thread starts with every signal blocked (the phases' SIGPROF and SIGALRM go to
 * other threads), and an early return from the sleep just sleeps again. */
static void *watchdog(void *arg) {
  unsigned seconds = (unsigned)(uintptr_t)arg;
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += seconds;
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL) != 0) {
  }
  fprintf(stderr, "process_life: WATCHDOG: %s still running after %us\n", phase, seconds);
  _exit(3);
}

static void start_watchdog(unsigned seconds) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* the new thread inherits this mask */
  pthread_t dog;
  if (pthread_create(&dog, NULL, watchdog, (void *)(uintptr_t)seconds) == 0)
    pthread_detach(dog);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void churn(unsigned seed, int ops) {
  void *slot[64] = {0};
  for (int i = 0; i < ops; i++) {
    seed = seed * 1103515245u + 12345u;
    int k = (int)(seed >> 16) % 64;
    free(slot[k]);
    size_t n = (seed >> 8) % 3000 + 1;
    slot[k] = malloc(n);
    if (slot[k])
      memset(slot[k], k, n < 16 ? n : 16);
  }
  for (int k = 0; k < 64; k++)
    free(slot[k]);
}

/* ---- allocation before main and after it ---------------------------------------- */
static char *before_main;
__attribute__((constructor)) static void ctor(void) {
  before_main = malloc(1000);
  if (before_main)
    strcpy(before_main, "allocated before main");
}
__attribute__((destructor)) static void dtor(void) {
  if (before_main == NULL || strcmp(before_main, "allocated before main") != 0)
    _exit(4);
  free(before_main);
  free(malloc(123)); /* and allocate after main, too */
}

/* ---- fork with 8 busy threads, then heavy allocation in the child --------------- */
static atomic_bool stop;
static void *busy(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  while (!atomic_load(&stop))
    churn(seed++, 1000);
  return NULL;
}

static int fork_threads(void) {
  pthread_t t[8];
  for (int i = 0; i < 8; i++)
    pthread_create(&t[i], NULL, busy, (void *)(uintptr_t)(i + 1));
  int failures = 0;
  for (int round = 0; round < 20; round++) {
    pid_t pid = fork();
    if (pid == 0) {
      alarm(20); /* a deadlocked allocator in the child ends here, not in CI's limit */
      churn(77, 200000);
      pthread_t ct;
      pthread_create(&ct, NULL, busy, (void *)5);
      usleep(1000);
      _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    failures += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  atomic_store(&stop, true);
  for (int i = 0; i < 8; i++)
    pthread_join(t[i], NULL);
  printf("fork_threads: 20 forks from 8 busy threads, %d children failed\n", failures);
  return failures != 0;
}

static int fork_exec(void) {
  int failures = 0;
  for (int i = 0; i < 20; i++) {
    churn((unsigned)i, 1000);
    pid_t pid = fork();
    if (pid == 0) {
      /* The new program takes the preloaded shim too: the host's sh where the shim is
       * built for glibc; where it is not (musl), glibc's loader would refuse the shim
       * outright, so this program execs itself. */
      if (ALLOCSHIM_GLIBC)
        execl("/bin/sh", "sh", "-c", "exit 0", (char *)NULL);
      else
        execl("/proc/self/exe", "process_life", "exit_zero", (char *)NULL);
      _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    failures += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  printf("fork_exec: 20 fork+exec, %d failed\n", failures);
  return failures != 0;
}

/* ---- a signal landing while the main thread is inside malloc --------------------- */
static volatile sig_atomic_t ticks;
static char scratch[64];
static void on_tick(int sig) {
  (void)sig;
  ticks++;
  scratch[ticks % 64] = (char)ticks; /* work, but no allocation: not async-signal-safe */
}

static int signal_in_malloc(void) {
  struct sigaction sa = {0};
  sa.sa_handler = on_tick;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGPROF, &sa, NULL);
  struct itimerval every = {{0, 100}, {0, 100}};
  setitimer(ITIMER_PROF, &every, NULL);
  long ops = 0; /* until 200 signals have landed, most of them inside the allocator */
  for (; ticks < 200 && ops < 1000000000; ops += 100000) /* the watchdog bounds time */
    churn((unsigned)ops, 100000);
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_PROF, &off, NULL);
  printf("signal_in_malloc: %ld operations, %d signals delivered\n", ops, (int)ticks);
  return ticks < 200;
}

/* ---- threads that exit while owning blocks, freed later by others --------------- */
#define OWNERS 8
#define OWNED  2000
static void *owned[OWNERS][OWNED];
static void *owner(void *arg) {
  int me = (int)(uintptr_t)arg;
  for (int i = 0; i < OWNED; i++) {
    owned[me][i] = malloc((size_t)(i % 700) + 1);
    memset(owned[me][i], me, (size_t)(i % 700) + 1);
  }
  return NULL; /* the thread, and its allocator cache, go away */
}
static void *reaper(void *arg) {
  int victim = (int)(uintptr_t)arg;
  for (int i = 0; i < OWNED; i++) {
    if (((unsigned char *)owned[victim][i])[0] != victim)
      return (void *)1;
    free(owned[victim][i]);
  }
  return NULL;
}
static int thread_exit_owner(void) {
  pthread_t t[OWNERS];
  for (int i = 0; i < OWNERS; i++)
    pthread_create(&t[i], NULL, owner, (void *)(uintptr_t)i);
  for (int i = 0; i < OWNERS; i++)
    pthread_join(t[i], NULL);
  int bad = 0;
  for (int i = 0; i < OWNERS; i++) /* half freed by new threads, half by main */
    if (i % 2)
      pthread_create(&t[i], NULL, reaper, (void *)(uintptr_t)i);
    else
      bad += reaper((void *)(uintptr_t)i) != NULL;
  for (int i = 1; i < OWNERS; i += 2) {
    void *r;
    pthread_join(t[i], &r);
    bad += r != NULL;
  }
  printf("thread_exit_owner: %d blocks outlived their threads, %d bad\n", OWNERS * OWNED, bad);
  return bad != 0;
}

/* ---- dlopen / dlclose of a library that allocates across the boundary ----------- */
/* Opened by dlopen, or by dlmopen into the base namespace (lmid LM_ID_BASE). */
static void *open_plugin(const char *plugin, int flags, bool by_dlmopen) {
  return by_dlmopen ? dlmopen(LM_ID_BASE, plugin, RTLD_NOW | flags)
                    : dlopen(plugin, RTLD_NOW | flags);
}

static int dlopen_cross(const char *plugin, int flags, bool by_dlmopen, const char *what) {
  int bad = 0;
  for (int round = 0; round < 50; round++) {
    void *h = open_plugin(plugin, flags, by_dlmopen);
    if (h == NULL) {
      fprintf(stderr, "%s: %s\n", what, dlerror());
      return 1;
    }
    void *(*p_alloc)(size_t) = (void *(*)(size_t))dlsym(h, "plugin_alloc");
    void (*p_free)(void *) = (void (*)(void *))dlsym(h, "plugin_free");
    char *(*p_strdup)(const char *) = (char *(*)(const char *))dlsym(h, "plugin_strdup");
    for (int i = 0; i < 100; i++) {
      unsigned char *a = p_alloc((size_t)i * 37 + 1); /* library mallocs, program frees */
      bad += a == NULL || a[0] != 0x5C;
      free(a);
      char *b = malloc((size_t)i + 10); /* program mallocs, library frees */
      p_free(b);
      char *c = p_strdup("crossing");
      bad += c == NULL || strcmp(c, "crossing") != 0;
      free(realloc(c, 4096));
    }
    dlclose(h);
  }
  dlsym(RTLD_DEFAULT, "allocshim_no_such_symbol"); /* dlerror's message is malloc'd */
  dlerror();
  printf("%s: 50 dlopen/dlclose rounds, 15000 crossings, %d bad\n", what, bad);
  return bad != 0;
}

/* ---- dlmopen into a namespace of its own ---------------------------------------------
 * A new namespace loads its own libc, with glibc's malloc and without the preloaded
 * shim; with RTLD_DEEPBIND it binds to that same libc. Its blocks are only ever its own
 * (crossing namespaces is a bug under any allocator), so the shim leaves it alone. */
static int dlmopen_own_namespace(const char *plugin) {
  int bad = 0;
  for (int round = 0; round < 5; round++) {
    void *h = dlmopen(LM_ID_NEWLM, plugin, RTLD_NOW | RTLD_DEEPBIND);
    if (h == NULL) {
      fprintf(stderr, "dlmopen_newlm: %s\n", dlerror());
      return 1;
    }
    void *(*p_alloc)(size_t) = (void *(*)(size_t))dlsym(h, "plugin_alloc");
    void (*p_free)(void *) = (void (*)(void *))dlsym(h, "plugin_free");
    char *(*p_strdup)(const char *) = (char *(*)(const char *))dlsym(h, "plugin_strdup");
    for (int i = 0; i < 1000; i++) {
      unsigned char *a = p_alloc((size_t)i * 37 + 1);
      bad += a == NULL || a[0] != 0x5C;
      p_free(a);
      char *c = p_strdup("namespace");
      bad += c == NULL || strcmp(c, "namespace") != 0;
      p_free(c);
    }
    dlclose(h);
  }
  printf("dlmopen_newlm: 5 namespaces, 10000 blocks within them, %d bad\n", bad);
  return bad != 0;
}

/* ---- allocation by a library preloaded after the shim, before main --------------- */
static int early(void) {
  unsigned char **block = (unsigned char **)dlsym(RTLD_DEFAULT, "early_block");
  if (block == NULL || *block == NULL) {
    fprintf(stderr, "early: the early library did not run (preload it after the shim)\n");
    return 1;
  }
  int bad = 0;
  for (int i = 0; i < 4096; i++)
    bad += (*block)[i] != 0xE1;
  free(*block);
  printf("early: a block from a constructor run before the shim's, %d bad bytes\n", bad);
  return bad != 0;
}

int main(int argc, char **argv) {
  if (argc < 2)
    return fprintf(stderr, "usage: process_life PHASE [PLUGIN]\n"), 2;
  phase = argv[1];
  start_watchdog(90);
  if (strcmp(phase, "fork_threads") == 0)
    return fork_threads();
  if (strcmp(phase, "fork_exec") == 0)
    return fork_exec();
  if (strcmp(phase, "signal_in_malloc") == 0)
    return signal_in_malloc();
  if (strcmp(phase, "thread_exit_owner") == 0)
    return thread_exit_owner();
  if (strcmp(phase, "dlopen") == 0 && argc > 2)
    return dlopen_cross(argv[2], 0, false, "dlopen");
  if (strcmp(phase, "deepbind") == 0 && argc > 2)
    return dlopen_cross(argv[2], RTLD_DEEPBIND, false, "deepbind");
  if (strcmp(phase, "deepbind_dlmopen") == 0 && argc > 2)
    return dlopen_cross(argv[2], RTLD_DEEPBIND, true, "deepbind_dlmopen");
  if (strcmp(phase, "dlmopen_newlm") == 0 && argc > 2)
    return dlmopen_own_namespace(argv[2]);
  if (strcmp(phase, "exit_zero") == 0) /* fork_exec's child */
    return 0;
  if (strcmp(phase, "early") == 0)
    return early();
  return fprintf(stderr, "process_life: unknown phase %s\n", phase), 2;
}
