/* The few facts about an ELF file that decide whether LD_PRELOAD can work on it, read
 * without binutils: class, byte order, machine, interpreter, DT_NEEDED, defined symbols. */
#ifndef ALLOCSHIM_DOCTOR_ELF_H
#define ALLOCSHIM_DOCTOR_ELF_H

#include <stddef.h>
#include <stdint.h>

#define DOCTOR_MAX_NEEDED 64
#define DOCTOR_MAX_NAMES 16

/* Where the bytes come from: a file (read with pread, so a 1 GiB program is not read
 * whole) or a buffer (the unit tests). size bounds every read either way. */
struct doctor_src {
  int fd;                   /* -1: mem */
  const unsigned char *mem; /* when fd is -1 */
  uint64_t size;
};

struct doctor_elf {
  int bits;       /* 32 or 64 */
  int big_endian; /* 0 or 1 */
  unsigned type;  /* e_type: 2 ET_EXEC, 3 ET_DYN */
  unsigned machine;
  int has_interp;
  char interp[256];
  int has_dynamic;
  size_t n_needed; /* entries kept in needed[]; more are counted in needed_dropped */
  size_t needed_dropped;
  char needed[DOCTOR_MAX_NEEDED][128];
  /* Bit i set: names[i] (as given to doctor_elf_read) is a defined dynamic symbol. */
  unsigned defined;
  int symbols_read; /* 0: no dynamic symbol table was found (defined says nothing) */
};

/* Reads src's ELF headers into *out. names (up to DOCTOR_MAX_NAMES) are the dynamic
 * symbols whose definition matters. Returns 0, or -1 with *why saying what is wrong
 * with the file (a static string): every offset and size is checked against src->size. */
int doctor_elf_read(const struct doctor_src *src, const char *const *names, size_t n_names,
                    struct doctor_elf *out, const char **why);

#endif
