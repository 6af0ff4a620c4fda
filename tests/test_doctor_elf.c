/* Tests for tools/doctor_elf.c: ELF32/64 in both byte orders read right, and truncated,
 * corrupt or randomly mutated images give an error, never a read out of bounds. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "doctor_elf.h"

static const char *const names[] = {"malloc", "mallctl", "free"};
#define N_NAMES (sizeof names / sizeof names[0])

/* The synthetic image's layout: file offsets double as virtual addresses (one PT_LOAD
 * at 0), so every DT_ pointer is its own offset. */
enum {
  SIZE = 0x600, PHOFF = 0x40, INTERP = 0x200, STRTAB = 0x240, SYMTAB = 0x300, HASH = 0x380,
  DYNAMIC = 0x400, SHOFF = 0x500,
};
static const char interp[] = "/lib64/ld-linux-x86-64.so.2";
/* Offsets in the string table: 1 libc.so.6, 11 libjemalloc.so.2, 28 malloc, 35 free. */
static const char strtab[] = "\0libc.so.6\0libjemalloc.so.2\0malloc\0free";

struct image {
  unsigned char b[SIZE];
  int b64, be;
};

static void put(struct image *im, size_t off, int n, uint64_t v) {
  for (int i = 0; i < n; i++)
    im->b[off + (size_t)(im->be ? n - 1 - i : i)] = (unsigned char)(v >> (8 * i));
}

static void put_word(struct image *im, size_t off, uint64_t v) {
  put(im, off, im->b64 ? 8 : 4, v);
}

static size_t dyn_entry(struct image *im, size_t i, uint64_t tag, uint64_t val) {
  size_t e = im->b64 ? 16 : 8, off = DYNAMIC + i * e;
  put_word(im, off, tag);
  put_word(im, off + e / 2, val);
  return i + 1;
}

static void phdr(struct image *im, int i, uint32_t type, uint64_t off, uint64_t size) {
  size_t p = PHOFF + (size_t)i * (im->b64 ? 56 : 32);
  put(im, p, 4, type);
  if (im->b64) {
    put(im, p + 8, 8, off);
    put(im, p + 16, 8, off); /* p_vaddr */
    put(im, p + 32, 8, size);
    put(im, p + 40, 8, size);
  } else {
    put(im, p + 4, 4, off);
    put(im, p + 8, 4, off);
    put(im, p + 16, 4, size);
    put(im, p + 20, 4, size);
  }
}

static void shdr(struct image *im, int i, uint32_t type, uint64_t off, uint64_t size, uint32_t link,
                 uint64_t entsize) {
  size_t s = SHOFF + (size_t)i * (im->b64 ? 64 : 40);
  put(im, s + 4, 4, type);
  if (im->b64) {
    put(im, s + 24, 8, off);
    put(im, s + 32, 8, size);
    put(im, s + 40, 4, link);
    put(im, s + 56, 8, entsize);
  } else {
    put(im, s + 16, 4, off);
    put(im, s + 20, 4, size);
    put(im, s + 24, 4, link);
    put(im, s + 36, 4, entsize);
  }
}

static void sym(struct image *im, int i, uint32_t name, uint16_t shndx) {
  size_t s = SYMTAB + (size_t)i * (im->b64 ? 24 : 16);
  put(im, s, 4, name);
  put(im, s + (im->b64 ? 6 : 14), 2, shndx);
}

/* A dynamically linked x86-64-like executable: interpreter, two DT_NEEDED, a defined
 * malloc and an undefined free; sections on request, DT_HASH or DT_GNU_HASH. */
static void build(struct image *im, int b64, int be, int sections, int gnu_hash) {
  memset(im, 0, sizeof *im);
  im->b64 = b64;
  im->be = be;
  memcpy(im->b, "\177ELF", 4);
  im->b[4] = b64 ? 2 : 1;
  im->b[5] = be ? 2 : 1;
  im->b[6] = 1;
  put(im, 16, 2, 3);  /* ET_DYN */
  put(im, 18, 2, 62); /* EM_X86_64 */
  size_t t = b64 ? 54 : 42;
  if (b64)
    put(im, 32, 8, PHOFF);
  else
    put(im, 28, 4, PHOFF);
  put(im, t, 2, b64 ? 56 : 32);
  put(im, t + 2, 2, 3);
  phdr(im, 0, 1, 0, SIZE);
  phdr(im, 1, 3, INTERP, sizeof interp);
  phdr(im, 2, 2, DYNAMIC, 0x100);
  memcpy(im->b + INTERP, interp, sizeof interp);
  memcpy(im->b + STRTAB, strtab, sizeof strtab);
  sym(im, 1, 28, 12);
  sym(im, 2, 35, 0);
  size_t i = 0;
  i = dyn_entry(im, i, 1, 1);
  i = dyn_entry(im, i, 1, 11);
  i = dyn_entry(im, i, 5, STRTAB);
  i = dyn_entry(im, i, 10, sizeof strtab);
  i = dyn_entry(im, i, 6, SYMTAB);
  i = dyn_entry(im, i, 11, b64 ? 24 : 16);
  if (gnu_hash) {
    /* nbuckets 1, symoffset 1, one bloom word; bucket 0 starts at symbol 1, whose chain
     * ends (low bit set) at symbol 2. */
    put(im, HASH, 4, 1);
    put(im, HASH + 4, 4, 1);
    put(im, HASH + 8, 4, 1);
    size_t bucket = HASH + 16 + (b64 ? 8 : 4);
    put(im, bucket, 4, 1);
    put(im, bucket + 4, 4, 0x10);
    put(im, bucket + 8, 4, 0x11);
    i = dyn_entry(im, i, 0x6ffffef5, HASH);
  } else {
    put(im, HASH, 4, 1);     /* nbucket */
    put(im, HASH + 4, 4, 3); /* nchain: three symbols */
    i = dyn_entry(im, i, 4, HASH);
  }
  dyn_entry(im, i, 0, 0);
  if (sections) {
    if (b64)
      put(im, 40, 8, SHOFF);
    else
      put(im, 32, 4, SHOFF);
    put(im, t + 4, 2, b64 ? 64 : 40);
    put(im, t + 6, 2, 3);
    shdr(im, 1, 11, SYMTAB, 3 * (b64 ? 24 : 16), 2, b64 ? 24 : 16);
    shdr(im, 2, 3, STRTAB, sizeof strtab, 0, 0);
  }
}

static int parse(const unsigned char *mem, size_t len, struct doctor_elf *e, const char **why) {
  struct doctor_src src = {.fd = -1, .mem = mem, .size = len};
  *why = NULL;
  int rc = doctor_elf_read(&src, names, N_NAMES, e, why);
  if (rc != 0)
    assert_non_null(*why);
  return rc;
}

/* Parsed from a heap copy of exactly len bytes, so that a read past the end is a read
 * past the allocation (which a sanitizer or valgrind run reports). */
static int parse_copy(const unsigned char *mem, size_t len, struct doctor_elf *e) {
  unsigned char *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  memcpy(copy, mem, len);
  const char *why;
  int rc = parse(copy, len, e, &why);
  free(copy);
  return rc;
}

static void expect_facts(const struct image *im, const struct doctor_elf *e) {
  assert_int_equal(e->bits, im->b64 ? 64 : 32);
  assert_int_equal(e->big_endian, im->be);
  assert_int_equal(e->type, 3);
  assert_int_equal(e->machine, 62);
  assert_true(e->has_interp);
  assert_string_equal(e->interp, interp);
  assert_true(e->has_dynamic);
  assert_int_equal(e->n_needed, 2);
  assert_string_equal(e->needed[0], "libc.so.6");
  assert_string_equal(e->needed[1], "libjemalloc.so.2");
  assert_true(e->symbols_read);
  assert_int_equal(e->defined, 1u << 0); /* malloc defined; free only referenced */
}

static void test_reads_each_class_and_order(void **state) {
  (void)state;
  for (int v = 0; v < 12; v++) {
    struct image im;
    struct doctor_elf e;
    const char *why;
    build(&im, v & 1, (v >> 1) & 1, v < 4, v >= 8);
    assert_int_equal(parse(im.b, SIZE, &e, &why), 0);
    expect_facts(&im, &e);
  }
}

static void test_static_program(void **state) {
  (void)state;
  struct image im;
  struct doctor_elf e;
  const char *why;
  build(&im, 1, 0, 0, 0);
  put(&im, 54 + 2, 2, 1); /* only the PT_LOAD */
  assert_int_equal(parse(im.b, SIZE, &e, &why), 0);
  assert_false(e.has_interp);
  assert_false(e.has_dynamic);
  assert_int_equal(e.n_needed, 0);
  assert_false(e.symbols_read);
}

static void test_truncated_everywhere(void **state) {
  (void)state;
  for (int v = 0; v < 4; v++) {
    struct image im;
    struct doctor_elf e;
    build(&im, v & 1, v >> 1, 1, 0);
    for (size_t len = 0; len < SIZE; len++) {
      int rc = parse_copy(im.b, len, &e);
      /* Everything lies below SHOFF + section headers; earlier cuts lose a part. */
      if (len < (size_t)(SHOFF + 3 * (im.b64 ? 64 : 40)))
        assert_int_equal(rc, -1);
    }
    assert_int_equal(parse_copy(im.b, SIZE, &e), 0);
  }
}

struct corruption {
  const char *what;
  void (*apply)(struct image *im);
};

static void bad_magic(struct image *im) { im->b[1] = 'X'; }
static void bad_class(struct image *im) { im->b[4] = 3; }
static void bad_order(struct image *im) { im->b[5] = 0; }
static void phoff_wraps(struct image *im) { put(im, 32, 8, UINT64_MAX - 8); }
static void phnum_huge(struct image *im) { put(im, 56, 2, 0xffff); }
static void phentsize_small(struct image *im) { put(im, 54, 2, 8); }
static void interp_unterminated(struct image *im) { memset(im->b + INTERP, 'a', sizeof interp); }
static void interp_too_long(struct image *im) { phdr(im, 1, 3, INTERP, 4096); }
static void interp_outside(struct image *im) { phdr(im, 1, 3, UINT64_MAX - 4, 16); }
static void dynamic_outside(struct image *im) { phdr(im, 2, 2, SIZE - 8, 0x100); }
static void dynamic_huge(struct image *im) { phdr(im, 2, 2, DYNAMIC, UINT64_MAX); }
static void strsz_huge(struct image *im) { dyn_entry(im, 3, 10, UINT64_MAX); }
static void strsz_past_end(struct image *im) { dyn_entry(im, 3, 10, SIZE); }
static void strtab_unmapped(struct image *im) { dyn_entry(im, 2, 5, 0x100000); }
static void needed_outside(struct image *im) { dyn_entry(im, 0, 1, 0xffffffff); }
static void needed_unterminated(struct image *im) { dyn_entry(im, 3, 10, 5); }
static void shoff_wraps(struct image *im) { put(im, 40, 8, UINT64_MAX - 16); }
static void shentsize_small(struct image *im) { put(im, 58, 2, 4); }
static void dynsym_link_outside(struct image *im) { shdr(im, 1, 11, SYMTAB, 72, 9, 24); }
static void dynsym_size_huge(struct image *im) { shdr(im, 1, 11, SYMTAB, UINT64_MAX, 2, 24); }
static void dynsym_entsize_zero(struct image *im) { shdr(im, 1, 11, SYMTAB, 72, 2, 0); }
static void dynstr_outside(struct image *im) { shdr(im, 2, 3, SIZE - 4, 64, 0, 0); }

static void test_corruptions(void **state) {
  (void)state;
  static const struct corruption cases[] = {
      {"bad magic", bad_magic},
      {"bad class", bad_class},
      {"bad byte order", bad_order},
      {"e_phoff wraps", phoff_wraps},
      {"e_phnum 0xffff", phnum_huge},
      {"e_phentsize 8", phentsize_small},
      {"PT_INTERP unterminated", interp_unterminated},
      {"PT_INTERP 4 KiB", interp_too_long},
      {"PT_INTERP past the end", interp_outside},
      {"PT_DYNAMIC past the end", dynamic_outside},
      {"PT_DYNAMIC size huge", dynamic_huge},
      {"DT_STRSZ huge", strsz_huge},
      {"DT_STRSZ past the end", strsz_past_end},
      {"DT_STRTAB in no segment", strtab_unmapped},
      {"DT_NEEDED outside the strings", needed_outside},
      {"DT_NEEDED unterminated", needed_unterminated},
      {"e_shoff wraps", shoff_wraps},
      {"e_shentsize 4", shentsize_small},
      {"SHT_DYNSYM sh_link outside", dynsym_link_outside},
      {"SHT_DYNSYM size huge", dynsym_size_huge},
      {"SHT_DYNSYM entsize 0", dynsym_entsize_zero},
      {"string section past the end", dynstr_outside},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct image im;
    struct doctor_elf e;
    build(&im, 1, 0, 1, 0);
    cases[i].apply(&im);
    if (parse_copy(im.b, SIZE, &e) != -1)
      fail_msg("%s: accepted", cases[i].what);
  }
}

/* Without section headers the symbols are counted through the hash tables, which a
 * hostile file can make claim anything. */
static void test_hash_corruptions(void **state) {
  (void)state;
  struct image im;
  struct doctor_elf e;
  build(&im, 1, 0, 0, 0);
  put(&im, HASH + 4, 4, 0xffffffff); /* nchain: more symbols than the file holds */
  assert_int_equal(parse_copy(im.b, SIZE, &e), -1);
  build(&im, 1, 0, 0, 1);
  /* The bucket's chain starts at SHOFF (no sections here) and never ends in the file. */
  size_t chain0 = HASH + 16 + 8 + 4;
  put(&im, HASH + 16 + 8, 4, 1 + (SHOFF - chain0) / 4);
  for (size_t off = SHOFF; off + 4 <= SIZE; off += 4)
    put(&im, off, 4, 0x10);
  assert_int_equal(parse_copy(im.b, SIZE, &e), -1);
  build(&im, 1, 0, 0, 1);
  put(&im, HASH, 4, 0); /* no buckets */
  assert_int_equal(parse_copy(im.b, SIZE, &e), -1);
  build(&im, 0, 1, 0, 1);
  put(&im, HASH + 16 + 4, 4, 0xfffffff0); /* bucket index far beyond the chains */
  assert_int_equal(parse_copy(im.b, SIZE, &e), -1);
}

/* Random bytes and extreme words over valid images: any verdict, no crash. */
static void test_mutations(void **state) {
  (void)state;
  uint64_t seed = 0x9e3779b97f4a7c15u;
  static const uint64_t extremes[] = {0, 1, 0x7f, 0xff, 0xffff, 0x7fffffff, 0xffffffff,
                                      UINT64_MAX, UINT64_MAX - 7, SIZE, SIZE - 1};
  int accepted = 0;
  for (int round = 0; round < 40000; round++) {
    struct image im;
    struct doctor_elf e;
    build(&im, round & 1, (round >> 1) & 1, (round >> 2) & 1, (round >> 3) & 1);
    int changes = 1 + (int)(seed >> 61);
    for (int c = 0; c < changes; c++) {
      seed = seed * 6364136223846793005u + 1442695040888963407u;
      size_t off = (size_t)(seed >> 33) % (SIZE - 8);
      if (seed & 1)
        im.b[off] = (unsigned char)(seed >> 20);
      else
        put(&im, off & ~(size_t)3, (seed >> 8) & 1 ? 8 : 4,
            extremes[(seed >> 12) % (sizeof extremes / sizeof extremes[0])]);
    }
    if (parse_copy(im.b, SIZE, &e) == 0) {
      accepted++;
      assert_true(e.n_needed <= DOCTOR_MAX_NEEDED);
      assert_non_null(memchr(e.interp, '\0', sizeof e.interp));
    }
  }
  /* Most single changes land in padding: the reader must not reject valid files. */
  assert_true(accepted > 1000);
}

/* This test program itself, through a file descriptor: a real linker's output. */
static void test_reads_itself(void **state) {
  (void)state;
  int fd = open("/proc/self/exe", O_RDONLY);
  if (fd < 0)
    skip();
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  struct doctor_src src = {.fd = fd, .size = (uint64_t)st.st_size};
  struct doctor_elf e;
  const char *why = NULL;
  int rc = doctor_elf_read(&src, names, N_NAMES, &e, &why);
  close(fd);
  if (rc != 0)
    fail_msg("reading /proc/self/exe: %s", why);
  assert_int_equal(e.bits, (int)sizeof(void *) * 8);
  assert_true(e.has_interp);
  assert_true(e.n_needed >= 1);
  assert_true(e.symbols_read);
  assert_false(e.defined & (1u << 0)); /* malloc is only referenced here */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reads_each_class_and_order),
      cmocka_unit_test(test_static_program),
      cmocka_unit_test(test_truncated_everywhere),
      cmocka_unit_test(test_corruptions),
      cmocka_unit_test(test_hash_corruptions),
      cmocka_unit_test(test_mutations),
      cmocka_unit_test(test_reads_itself),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
