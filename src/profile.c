/* Heap profiles: the public calls, and the operator's way in without code changes
 * (ALLOCSHIM_PROF_SIGNAL, _AT_EXIT and _DIR, read once when the library loads). */
#define _GNU_SOURCE
#include "backend.h"
#include "internal.h"

#include <allocshim.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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

/* The handler only posts this semaphore (sem_post is async-signal-safe); a dedicated
 * thread waits on it and does the dump, so nothing unsafe runs in signal context. A
 * semaphore, not a pipe: a descriptor is something the program can close (closefrom),
 * or be handed as its own stdin/stdout when it starts with those closed, and then the
 * handler writes into the program's files. One post per signal, one dump per post. */
static sem_t wake;
/* The process whose thread waits on `wake`. A forked child has a copy of the semaphore
 * but no thread (fork copies only the caller), and a child that has not exec'd may
 * not safely start one; so in a child the signal is caught and does nothing: it
 * neither dumps nor reaches the parent. Compared in the handler, which needs no
 * pthread_atfork and holds for children made by clone() or vfork() too. */
static pid_t dumper;

static void on_signal(int sig) {
  (void)sig;
  int saved = errno;
  if (getpid() == dumper) /* EOVERFLOW: SEM_VALUE_MAX dumps are already owed */
    sem_post(&wake);
  errno = saved;
}

static void ignore_signal(int sig) { (void)sig; }

static void *dump_thread(void *arg) {
  (void)arg;
  for (;;) {
    if (sem_wait(&wake) == 0)
      dump_unattended("signal");
    else if (errno != EINTR)
      return NULL;
  }
}

/* Signals the operator may not choose, and why. A fault signal (SEGV, BUS, ILL, FPE)
 * is raised again by the faulting instruction as soon as a handler returns: caught, a
 * real crash becomes an endless loop of dumps. The others are the ones whose default
 * action is a core dump someone relies on (abort, debuggers, seccomp, ^\ for a hung
 * program's core), or that the kernel sends in the program's ordinary work, where
 * catching changes what the program does: PIPE (a program that should die on a closed
 * pipe would go on), CHLD (a dump per child that exits), job control (a background
 * read of the terminal with TTIN caught is retried forever), and the resource limits. */
static const struct signal_name {
  const char *name;
  int sig;
  const char *refused; /* NULL: may be chosen */
} signal_names[] = {
    {"HUP", SIGHUP, NULL},
    {"INT", SIGINT, NULL},
    {"QUIT", SIGQUIT, "its default action is a core dump, the way to see inside a hung program"},
    {"ILL", SIGILL, "it reports a crash; caught, a real crash would loop forever"},
    {"TRAP", SIGTRAP, "debuggers and breakpoints use it"},
    {"ABRT", SIGABRT, "abort() and failed assertions raise it"},
    {"IOT", SIGIOT, "abort() and failed assertions raise it"},
    {"BUS", SIGBUS, "it reports a crash; caught, a real crash would loop forever"},
    {"FPE", SIGFPE, "it reports a crash; caught, a real crash would loop forever"},
    {"KILL", SIGKILL, "it cannot be caught"},
    {"USR1", SIGUSR1, NULL},
    {"SEGV", SIGSEGV, "it reports a crash; caught, a real crash would loop forever"},
    {"USR2", SIGUSR2, NULL},
    {"PIPE", SIGPIPE, "the kernel sends it on writes to a closed pipe or socket"},
    {"ALRM", SIGALRM, NULL},
    {"TERM", SIGTERM, NULL},
#ifdef SIGSTKFLT
    {"STKFLT", SIGSTKFLT, NULL},
#endif
    {"CHLD", SIGCHLD, "the kernel sends it whenever a child process ends"},
    {"CONT", SIGCONT, NULL},
    {"STOP", SIGSTOP, "it cannot be caught"},
    {"TSTP", SIGTSTP, "it is job control (^Z)"},
    {"TTIN", SIGTTIN, "it is job control: a background read of the terminal would retry forever"},
    {"TTOU", SIGTTOU, "it is job control: a background write to the terminal would retry forever"},
    {"URG", SIGURG, NULL},
    {"XCPU", SIGXCPU, "the kernel sends it at the CPU time limit"},
    {"XFSZ", SIGXFSZ, "the kernel sends it at the file size limit"},
    {"VTALRM", SIGVTALRM, NULL},
    {"PROF", SIGPROF, NULL},
    {"WINCH", SIGWINCH, NULL},
    {"IO", SIGIO, NULL},
    {"POLL", SIGPOLL, NULL},
#ifdef SIGPWR
    {"PWR", SIGPWR, NULL},
#endif
    {"SYS", SIGSYS, "it reports a crash (a bad system call, seccomp)"},
};

/* Decimal digits only, no sign, at most 9 of them: a signal number or an RTMIN offset. */
static int small_number(const char *text) {
  int n = 0;
  for (const char *p = text; *p; p++) {
    if (*p < '0' || *p > '9' || p - text >= 9)
      return -1;
    n = n * 10 + (*p - '0');
  }
  return text[0] ? n : -1;
}

int profile_parse_signal(const char *text, const char **why) {
  const char *unused;
  if (why == NULL)
    why = &unused;
  *why = "it is not a signal name (USR2, SIGUSR2, RTMIN+3) or number";
  if (strncmp(text, "SIG", 3) == 0)
    text += 3;
  int n = small_number(text);
  if (strncmp(text, "RTMIN", 5) == 0 || strncmp(text, "RTMAX", 5) == 0) {
    int off = text[5] == '\0' ? 0 : small_number(text + 6);
    if (off < 0 || (text[5] != '\0' && text[5] != (text[4] == 'N' ? '+' : '-')))
      return -1;
    n = text[4] == 'N' ? SIGRTMIN + off : SIGRTMAX - off;
    if (n < SIGRTMIN || n > SIGRTMAX) {
      *why = "it is outside SIGRTMIN..SIGRTMAX";
      return -1;
    }
  } else if (n < 0) {
    for (size_t i = 0; i < sizeof signal_names / sizeof signal_names[0]; i++)
      if (strcmp(text, signal_names[i].name) == 0)
        n = signal_names[i].sig;
    if (n < 0)
      return -1;
  }
  for (size_t i = 0; i < sizeof signal_names / sizeof signal_names[0]; i++)
    if (n == signal_names[i].sig && signal_names[i].refused) {
      *why = signal_names[i].refused;
      return -1;
    }
  if (n >= SIGRTMIN && n <= SIGRTMAX)
    return n;
  /* Between the standard signals and SIGRTMIN lie glibc's own (thread cancellation,
   * setxid): sigaction refuses them. */
  *why = n > 0 && n < SIGRTMIN ? "the C library reserves it" : "it is not a signal on this system";
  for (size_t i = 0; i < sizeof signal_names / sizeof signal_names[0]; i++)
    if (n == signal_names[i].sig)
      return n;
  return -1;
}

/* The signal for ALLOCSHIM_PROF_SIGNAL, or -1 after saying why it was refused. */
static int chosen_signal(const char *text) {
  const char *why;
  int sig = profile_parse_signal(text, &why);
  if (sig < 0)
    allocshim_say("ALLOCSHIM_PROF_SIGNAL=%s refused: %s; no heap dumps on signal", text, why);
  return sig;
}

static bool catch_signal(int sig, void (*handler)(int)) {
  struct sigaction sa = {0};
  sa.sa_handler = handler;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(sig, &sa, NULL) == 0)
    return true;
  allocshim_say("no heap dumps on signal: sigaction(%d): %s", sig, strerror(errno));
  return false;
}

static void start_signal_dumps(int sig) {
  if (sem_init(&wake, 0, 0) != 0) {
    allocshim_say("no heap dumps on signal: semaphore: %s", strerror(errno));
    return;
  }
  dumper = getpid();
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
  catch_signal(sig, on_signal);
}

/* ALLOCSHIM_PROF_SAMPLE: whole bytes, 1 to 2^40 (a sample per TiB is already next to
 * none). Digits only: strtoull would take "-1" as ULLONG_MAX, and an overflow as the
 * same, and either would switch sampling off in silence. Parsed by hand because it
 * runs inside jemalloc's first allocation, where errno must stay as it was. */
bool profile_parse_sample(const char *text, unsigned long long *bytes) {
  unsigned long long n = 0;
  for (const char *p = text; *p; p++) {
    if (*p < '0' || *p > '9')
      return false;
    n = n * 10 + (unsigned long long)(*p - '0');
    if (n > PROF_SAMPLE_MAX)
      return false;
  }
  if (n == 0)
    return false;
  *bytes = n;
  return true;
}

/* "0", "no" and the like: the operator switched profiling off on purpose. */
static bool said_no(const char *v) {
  static const char *const no[] = {"0", "n", "no", "false", "off"};
  for (size_t i = 0; v != NULL && i < sizeof no / sizeof no[0]; i++)
    if (strcasecmp(v, no[i]) == 0)
      return true;
  return false;
}

void profile_start(void) {
  const char *prof = allocshim_env("PROF"), *sig = allocshim_env("PROF_SIGNAL");
  const char *dir = allocshim_env("PROF_DIR"), *sample = allocshim_env("PROF_SAMPLE");
  bool at_exit = allocshim_env_flag("PROF_AT_EXIT");
  bool others = sig != NULL || dir != NULL || sample != NULL || at_exit;
  if (prof == NULL && !others)
    return;
  int signo = sig ? chosen_signal(sig) : -1;
  int status = be_profile_status();
  if (status != ALLOC_OK) {
    /* The operator's runbook may still send the signal: it must not kill the program.
     * A handler (not SIG_IGN) so that exec'd children get the default back. */
    bool caught = signo > 0 && catch_signal(signo, ignore_signal);
    const char *note = caught ? " (the signal is caught and does nothing)" : "";
    if (said_no(prof)) {
      if (others)
        allocshim_say("ALLOCSHIM_PROF=%s switches heap profiling off; the other ALLOCSHIM_PROF_* "
                      "settings are ignored%s",
                      prof, note);
    } else if (status == ALLOC_ENOTSUP) {
      allocshim_say("heap profiling is not supported on this platform: allocshim uses %s %s "
                    "here; the ALLOCSHIM_PROF settings are ignored%s",
                    alloc_backend(), alloc_backend_version(), note);
    } else if (prof == NULL) {
      allocshim_say("ALLOCSHIM_PROF_* settings need ALLOCSHIM_PROF=1; ignored%s", note);
    } else if (allocshim_env_flag("PROF")) {
      allocshim_say("ALLOCSHIM_PROF=%s, but jemalloc's profiling is off (MALLOC_CONF has the last "
                    "word); the ALLOCSHIM_PROF_* settings are ignored%s",
                    prof, note);
    } else {
      allocshim_say("ALLOCSHIM_PROF=%s is neither 1 nor 0; heap profiling is off%s%s", prof,
                    others ? " and the other ALLOCSHIM_PROF_* settings are ignored" : "", note);
    }
    return;
  }
  unsigned long long bytes;
  if (sample != NULL && !profile_parse_sample(sample, &bytes))
    allocshim_say("ALLOCSHIM_PROF_SAMPLE=%s refused: not a whole number of bytes from 1 to "
                  "%llu; jemalloc's default sampling is kept",
                  sample, (unsigned long long)PROF_SAMPLE_MAX);
  if (dir != NULL && strlen(dir) + 64 < sizeof prof_dir)
    snprintf(prof_dir, sizeof prof_dir, "%s", dir);
  else if (dir != NULL)
    allocshim_say("ALLOCSHIM_PROF_DIR is too long; profiles go to the current directory");
  if (signo > 0)
    start_signal_dumps(signo);
  if (at_exit)
    atexit(dump_at_exit);
}
