/* A small allocation-heavy C program with a checkable answer: blocks of many sizes
 * and alignments, filled, resized and verified. Prints the page size it ran with. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SLOTS 2048

int main(void) {
  static unsigned char *slot[SLOTS];
  static size_t len[SLOTS];
  uint64_t x = 88172645463325252ull, sum = 0;
  int bad = 0;
  for (int round = 0; round < 12; round++) {
    for (int i = 0; i < SLOTS; i++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      /* mostly small, some up to 64 KiB, a few up to 1 MiB: page-sized and larger */
      size_t n = x % 64 == 0 ? x % (1 << 20) : x % 5 == 0 ? x % (1 << 16) : x % 2048;
      if (slot[i] != NULL) {
        for (size_t k = 0; k < len[i]; k++)
          bad += slot[i][k] != (unsigned char)(i + k);
        sum += len[i];
      }
      if (x % 3 == 0) {
        unsigned char *p = realloc(slot[i], n + 1);
        if (p == NULL)
          return 1;
        slot[i] = p;
      } else {
        free(slot[i]);
        if (posix_memalign((void **)&slot[i], (size_t)1 << (x % 13 + 3), n + 1) != 0)
          return 1;
      }
      len[i] = n + 1;
      for (size_t k = 0; k < len[i]; k++)
        slot[i][k] = (unsigned char)(i + k);
    }
  }
  for (int i = 0; i < SLOTS; i++)
    free(slot[i]);
  printf("page size %ld, %llu bytes verified, %d bad\n", sysconf(_SC_PAGESIZE),
         (unsigned long long)sum, bad);
  return bad == 0 ? 0 : 1;
}
