/* Heap profiles: the public calls, and the operator's way in without code changes
 * (ALLOCSHIM_PROF_SIGNAL, _AT_EXIT and _DIR, read once when the library loads). */
#define _GNU_SOURCE
#include "backend.h"
#include "internal.h"

#include <allocshim.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Room for the ".XXXXXX" that mkstemp() fills in. */
#define TMP_SUFFIX ".XXXXXX"

static char prof_dir[PATH_MAX]; /* ALLOCSHIM_PROF_DIR, or "" for the current directory */
static atomic_uint dump_seq;

static int fail(int status, int err) {
  errno = err;
  return status;
}

int alloc_profile_supported(void) { return be_profile_status(); }

/* Support, then arguments, then whether profiling is on: the first problem wins. */
static int profile_ready(void) {
  int status = be_profile_status();
  if (status == ALLOC_ENOTSUP) {
    static atomic_flag said = ATOMIC_FLAG_INIT;
    if (!atomic_flag_test_and_set(&said))
      allocshim_say("alloc_profile_dump: %s", alloc_strerror(ALLOC_ENOTSUP));
    return fail(ALLOC_ENOTSUP, ENOTSUP);
  }
  return status;
}

/* mkdir -p, with mode 0700 for what it creates: profiles show the program's insides. */
static int make_dirs(const char *dir) {
  char buf[PATH_MAX];
  snprintf(buf, sizeof buf, "%s", dir);
  for (char *p = buf + 1;; p++) {
    if (*p != '/' && *p != '\0')
      continue;
    char c = *p;
    *p = '\0';
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
      return -1;
    *p = c;
    if (c == '\0')
      return 0;
  }
}

int alloc_profile_dump(const char *path) {
  int status = profile_ready();
  if (status == ALLOC_ENOTSUP)
    return status;
  if (path != NULL && path[0] == '\0')
    return fail(ALLOC_EINVAL, EINVAL);
  if (path != NULL && strlen(path) + sizeof TMP_SUFFIX > PATH_MAX)
    return fail(ALLOC_EINVAL, ENAMETOOLONG);
  if (status != ALLOC_OK)
    return fail(status, ENOENT);

  char name[PATH_MAX];
  if (path == NULL) {
    if (prof_dir[0] != '\0' && make_dirs(prof_dir) != 0)
      return fail(ALLOC_EIO, errno);
    snprintf(name, sizeof name, "%s%sallocshim.%ld.%u.heap", prof_dir, prof_dir[0] ? "/" : "",
             (long)getpid(), atomic_fetch_add(&dump_seq, 1));
    path = name;
  }
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s" TMP_SUFFIX, path);

  /* mkstemp() is where a missing directory or a permission problem shows, with the
   * real errno; the backend itself only says "failed". */
  int fd = mkstemp(tmp);
  if (fd < 0)
    return fail(ALLOC_EIO, errno);
  close(fd);
  if (be_profile_dump(tmp) != 0) {
    unlink(tmp);
    return fail(ALLOC_EIO, EIO);
  }
  if (rename(tmp, path) != 0) {
    int err = errno;
    unlink(tmp);
    return fail(ALLOC_EIO, err);
  }
  return ALLOC_OK;
}

int alloc_profile_activate(bool active) {
  int status = profile_ready();
  if (status != ALLOC_OK)
    return status == ALLOC_ENOTSUP ? status : fail(status, ENOENT);
  return be_profile_activate(active) == 0 ? ALLOC_OK : fail(ALLOC_EIO, EIO);
}

/* ---- Dumps the operator asks for from outside ----------------------------------- */

/* A dump nobody is waiting for: on failure, say why once, and let the program go on. */
static void dump_unattended(const char *trigger) {
  if (alloc_profile_dump(NULL) == ALLOC_OK)
    return;
  int err = errno;
  static atomic_flag said = ATOMIC_FLAG_INIT;
  if (!atomic_flag_test_and_set(&said))
    allocshim_say("heap profile on %s failed: %s", trigger, strerror(err));
}

static void dump_at_exit(void) { dump_unattended("exit"); }

/* The signal handler only writes a byte to this pipe; a dedicated thread does the
 * dump, so nothing unsafe runs in signal context. */
static int wake[2] = {-1, -1};

static void on_signal(int sig) {
  (void)sig;
  int saved = errno;
  char c = 1;
  if (write(wake[1], &c, 1) < 0) { /* a full pipe already has a dump coming */
  }
  errno = saved;
}

static void ignore_signal(int sig) { (void)sig; }

static void *dump_thread(void *arg) {
  (void)arg;
  for (;;) {
    char c;
    ssize_t n = read(wake[0], &c, 1);
    if (n > 0)
      dump_unattended("signal");
    else if (n == 0 || errno != EINTR)
      return NULL;
  }
}

/* A forked child has no dump thread; its signals must not wake the parent's. */
static void forget_signal_in_child(void) {
  if (wake[1] >= 0)
    close(wake[1]);
  wake[1] = -1;
}

int profile_parse_signal(const char *text) {
  static const struct {
    const char *name;
    int sig;
  } names[] = {{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},   {"USR1", SIGUSR1},
               {"USR2", SIGUSR2}, {"ALRM", SIGALRM}, {"TERM", SIGTERM},   {"CONT", SIGCONT},
               {"URG", SIGURG},   {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO},
               {"PWR", SIGPWR},   {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU}};
  if (strncmp(text, "SIG", 3) == 0)
    text += 3;
  char *end;
  long n = strtol(text, &end, 10);
  if (end != text && *end == '\0')
    return n > 0 && n < NSIG && n != SIGKILL && n != SIGSTOP ? (int)n : -1;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(text, names[i].name) == 0)
      return names[i].sig;
  return -1;
}

static void start_signal_dumps(const char *text) {
  int sig = profile_parse_signal(text);
  if (sig < 0) {
    allocshim_say("ALLOCSHIM_PROF_SIGNAL=%s is not a signal that can be caught; ignored", text);
    return;
  }
  if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    allocshim_say("no heap dumps on signal: pipe: %s", strerror(errno));
    return;
  }
  fcntl(wake[0], F_SETFL, 0); /* the reader blocks; only the writer must not */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* the thread inherits "all blocked" */
  pthread_t tid;
  int err = pthread_create(&tid, NULL, dump_thread, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err != 0) {
    allocshim_say("no heap dumps on signal: thread: %s", strerror(err));
    return;
  }
  pthread_detach(tid);
  pthread_atfork(NULL, NULL, forget_signal_in_child);
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, NULL);
}

void profile_start(void) {
  const char *prof = allocshim_env("PROF"), *sig = allocshim_env("PROF_SIGNAL");
  const char *dir = allocshim_env("PROF_DIR");
  bool at_exit = allocshim_env_flag("PROF_AT_EXIT");
  if (prof == NULL && sig == NULL && dir == NULL && !at_exit)
    return;
  int status = be_profile_status();
  if (status == ALLOC_ENOTSUP) {
    /* The operator's runbook may still send the signal: it must not kill the program.
     * A handler (not SIG_IGN) so that exec'd children get the default back. */
    int signo = sig ? profile_parse_signal(sig) : -1;
    if (signo > 0)
      signal(signo, ignore_signal);
    allocshim_say("heap profiling is not supported on this platform: allocshim uses %s %s "
                  "here; the ALLOCSHIM_PROF settings are ignored%s",
                  alloc_backend(), alloc_backend_version(),
                  signo > 0 ? " (the signal is caught and does nothing)" : "");
    return;
  }
  if (status != ALLOC_OK) {
    allocshim_say("ALLOCSHIM_PROF_* settings need ALLOCSHIM_PROF=1; ignored");
    return;
  }
  if (dir != NULL && strlen(dir) + 64 < sizeof prof_dir)
    snprintf(prof_dir, sizeof prof_dir, "%s", dir);
  else if (dir != NULL)
    allocshim_say("ALLOCSHIM_PROF_DIR is too long; profiles go to the current directory");
  if (sig != NULL)
    start_signal_dumps(sig);
  if (at_exit)
    atexit(dump_at_exit);
}
