/* A bounds-checked reader of ELF headers (32/64-bit, either byte order) for
 * allocshim-doctor: a truncated or hostile file is an error, never a read out of bounds. */
#define _POSIX_C_SOURCE 200809L
#include "doctor_elf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* Limits that no real program reaches but a corrupt header could claim: they bound the
 * memory and time spent on one file. */
#define MAX_PHNUM 4096
#define MAX_DYN 8192
#define MAX_LOADS 64
#define MAX_STRTAB (64u << 20)
#define MAX_SYMS (1u << 24)

enum {
  PT_LOAD_ = 1, PT_DYNAMIC_ = 2, PT_INTERP_ = 3,
  DT_NULL_ = 0, DT_NEEDED_ = 1, DT_HASH_ = 4, DT_STRTAB_ = 5, DT_SYMTAB_ = 6, DT_STRSZ_ = 10,
  DT_SYMENT_ = 11, DT_GNU_HASH_ = 0x6ffffef5,
  SHT_DYNSYM_ = 11,
};

struct load {
  uint64_t off, vaddr, filesz;
};

struct reader {
  const struct doctor_src *src;
  int be, b64;
  struct load loads[MAX_LOADS];
  size_t n_loads;
};

static int read_at(const struct doctor_src *s, uint64_t off, void *buf, size_t len) {
  if (off > s->size || len > s->size - off)
    return -1;
  if (s->fd < 0) {
    memcpy(buf, s->mem + off, len);
    return 0;
  }
  unsigned char *p = buf;
  while (len > 0) {
    ssize_t n = pread(s->fd, p, len, (off_t)off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) /* the file shrank under us: as good as truncated */
      return -1;
    p += n;
    off += (uint64_t)n;
    len -= (size_t)n;
  }
  return 0;
}

/* base + i * stride, or UINT64_MAX (which no read can reach) when it would wrap: a
 * corrupt offset must not wrap round to a valid one. */
static uint64_t at(uint64_t base, uint64_t i, uint64_t stride) {
  if (stride != 0 && i > UINT64_MAX / stride)
    return UINT64_MAX;
  uint64_t d = i * stride;
  return base > UINT64_MAX - d ? UINT64_MAX : base + d;
}

static uint64_t get(const struct reader *r, const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v = v << 8 | p[r->be ? i : n - 1 - i];
  return v;
}

/* A word of the file's natural size at p: 4 bytes for ELF32, 8 for ELF64. */
static uint64_t word(const struct reader *r, const unsigned char *p) {
  return get(r, p, r->b64 ? 8 : 4);
}

/* The file offset of a virtual address, through the PT_LOAD segments; -1 if none holds it. */
static int vaddr_to_off(const struct reader *r, uint64_t va, uint64_t *off) {
  for (size_t i = 0; i < r->n_loads; i++) {
    const struct load *l = &r->loads[i];
    if (va >= l->vaddr && va - l->vaddr < l->filesz) {
      *off = at(l->off, va - l->vaddr, 1);
      return 0;
    }
  }
  return -1;
}

/* A string table read whole: names are looked up many times, and pread per name would
 * cost a system call per symbol. */
static unsigned char *load_strtab(const struct reader *r, uint64_t off, uint64_t size) {
  if (size == 0 || size > MAX_STRTAB)
    return NULL;
  unsigned char *t = malloc((size_t)size);
  if (t && read_at(r->src, off, t, (size_t)size) != 0) {
    free(t);
    t = NULL;
  }
  return t;
}

/* The NUL-terminated name at idx in a table of size bytes, if it is shorter than max;
 * NULL otherwise. The search stops at max: a hostile table with no NUL and a million
 * symbols pointing into it must not cost a scan to its end per symbol. */
static const char *name_at(const unsigned char *tab, uint64_t size, uint64_t idx, size_t max) {
  if (!tab || idx >= size)
    return NULL;
  uint64_t room = size - idx < max ? size - idx : max;
  return memchr(tab + idx, '\0', (size_t)room) ? (const char *)tab + idx : NULL;
}

/* Whether the name at idx is exactly want: compared in place, without a search. */
static int name_is(const unsigned char *tab, uint64_t size, uint64_t idx, const char *want) {
  size_t len = strlen(want) + 1; /* with its NUL */
  return tab && idx < size && size - idx >= len && memcmp(tab + idx, want, len) == 0;
}

/* How many symbols a DT_GNU_HASH table covers: one past the last chain entry of the
 * highest bucket (the section-less way to size the dynamic symbol table). */
static int gnu_hash_count(const struct reader *r, uint64_t off, uint64_t *count) {
  unsigned char h[16], w[4];
  if (read_at(r->src, off, h, sizeof h) != 0)
    return -1;
  uint64_t nbuckets = get(r, h, 4), symoffset = get(r, h + 4, 4), bloom = get(r, h + 8, 4);
  if (nbuckets == 0 || nbuckets > MAX_SYMS || bloom > MAX_SYMS)
    return -1;
  uint64_t buckets = at(at(off, 16, 1), bloom, r->b64 ? 8 : 4);
  uint64_t last = 0;
  for (uint64_t i = 0; i < nbuckets; i++) {
    if (read_at(r->src, at(buckets, i, 4), w, 4) != 0)
      return -1;
    uint64_t b = get(r, w, 4);
    if (b > last)
      last = b;
  }
  if (last < symoffset) {
    *count = symoffset;
    return symoffset > MAX_SYMS ? -1 : 0;
  }
  uint64_t chains = at(buckets, nbuckets, 4);
  for (uint64_t i = last; i - symoffset < MAX_SYMS; i++) {
    if (read_at(r->src, at(chains, i - symoffset, 4), w, 4) != 0)
      return -1;
    if (get(r, w, 4) & 1) {
      *count = i + 1;
      return 0;
    }
  }
  return -1;
}

/* Marks in out->defined the wanted names that the n symbols at off define. */
static int scan_symbols(const struct reader *r, uint64_t off, uint64_t entsize, uint64_t n,
                        const unsigned char *strs, uint64_t strsz, const char *const *names,
                        size_t n_names, struct doctor_elf *out) {
  uint64_t min = r->b64 ? 24 : 16;
  if (entsize < min || entsize > 256 || n > MAX_SYMS)
    return -1;
  unsigned char e[256];
  for (uint64_t i = 0; i < n; i++) {
    if (read_at(r->src, at(off, i, entsize), e, (size_t)min) != 0)
      return -1;
    uint64_t shndx = r->b64 ? get(r, e + 6, 2) : get(r, e + 14, 2);
    if (shndx == 0) /* SHN_UNDEF: a reference, not a definition */
      continue;
    uint64_t idx = get(r, e, 4);
    for (size_t k = 0; k < n_names; k++)
      if (name_is(strs, strsz, idx, names[k]))
        out->defined |= 1u << k;
  }
  out->symbols_read = 1;
  return 0;
}

/* The dynamic symbol table through the section headers, when there are any: 1 if found
 * and read, 0 if there is no SHT_DYNSYM, -1 if the headers are corrupt. */
static int symbols_from_sections(const struct reader *r, uint64_t shoff, uint64_t shentsize,
                                 uint64_t shnum, const char *const *names, size_t n_names,
                                 struct doctor_elf *out) {
  uint64_t min = r->b64 ? 64 : 40;
  if (shoff == 0 || shnum == 0)
    return 0;
  if (shentsize < min || shentsize > 256)
    return -1;
  unsigned char s[256];
  for (uint64_t i = 0; i < shnum; i++) {
    if (read_at(r->src, at(shoff, i, shentsize), s, (size_t)min) != 0)
      return -1;
    if (get(r, s + 4, 4) != SHT_DYNSYM_)
      continue;
    uint64_t off = r->b64 ? get(r, s + 24, 8) : get(r, s + 16, 4);
    uint64_t size = r->b64 ? get(r, s + 32, 8) : get(r, s + 20, 4);
    uint64_t link = r->b64 ? get(r, s + 40, 4) : get(r, s + 24, 4);
    uint64_t entsize = r->b64 ? get(r, s + 56, 8) : get(r, s + 36, 4);
    if (link >= shnum || entsize == 0 || read_at(r->src, at(shoff, link, shentsize), s, (size_t)min) != 0)
      return -1;
    uint64_t stroff = r->b64 ? get(r, s + 24, 8) : get(r, s + 16, 4);
    uint64_t strsz = r->b64 ? get(r, s + 32, 8) : get(r, s + 20, 4);
    unsigned char *strs = load_strtab(r, stroff, strsz);
    if (!strs)
      return -1;
    int rc = scan_symbols(r, off, entsize, size / entsize, strs, strsz, names, n_names, out);
    free(strs);
    return rc == 0 ? 1 : -1;
  }
  return 0;
}

int doctor_elf_read(const struct doctor_src *src, const char *const *names, size_t n_names,
                    struct doctor_elf *out, const char **why) {
  struct reader r = {.src = src};
  unsigned char eh[64], ph[56], dyn[16];
  unsigned char *strs = NULL;
  int rc = -1;
  memset(out, 0, sizeof *out);
  if (n_names > DOCTOR_MAX_NAMES) {
    *why = "too many symbol names asked for";
    return -1;
  }
  if (read_at(src, 0, eh, 16) != 0 || memcmp(eh, "\177ELF", 4) != 0) {
    *why = "not an ELF file";
    return -1;
  }
  if ((eh[4] != 1 && eh[4] != 2) || (eh[5] != 1 && eh[5] != 2) || eh[6] != 1) {
    *why = "unknown ELF class, byte order or version";
    return -1;
  }
  r.b64 = eh[4] == 2;
  r.be = eh[5] == 2;
  out->bits = r.b64 ? 64 : 32;
  out->big_endian = r.be;
  if (read_at(src, 0, eh, r.b64 ? 64 : 52) != 0) {
    *why = "truncated ELF header";
    return -1;
  }
  out->type = (unsigned)get(&r, eh + 16, 2);
  out->machine = (unsigned)get(&r, eh + 18, 2);
  uint64_t phoff = r.b64 ? get(&r, eh + 32, 8) : get(&r, eh + 28, 4);
  uint64_t shoff = r.b64 ? get(&r, eh + 40, 8) : get(&r, eh + 32, 4);
  const unsigned char *tail = eh + (r.b64 ? 54 : 42); /* e_phentsize onwards */
  uint64_t phentsize = get(&r, tail, 2), phnum = get(&r, tail + 2, 2);
  uint64_t shentsize = get(&r, tail + 4, 2), shnum = get(&r, tail + 6, 2);

  uint64_t phmin = r.b64 ? 56 : 32;
  if (phnum > 0 && (phentsize < phmin || phnum > MAX_PHNUM)) {
    *why = "bad program header table size";
    return -1;
  }
  uint64_t dyn_off = 0, dyn_size = 0;
  for (uint64_t i = 0; i < phnum; i++) {
    if (read_at(src, at(phoff, i, phentsize), ph, (size_t)phmin) != 0) {
      *why = "program header outside the file";
      return -1;
    }
    uint64_t type = get(&r, ph, 4);
    uint64_t off = r.b64 ? get(&r, ph + 8, 8) : get(&r, ph + 4, 4);
    uint64_t vaddr = r.b64 ? get(&r, ph + 16, 8) : get(&r, ph + 8, 4);
    uint64_t filesz = r.b64 ? get(&r, ph + 32, 8) : get(&r, ph + 16, 4);
    if (type == PT_LOAD_ && r.n_loads < MAX_LOADS) {
      r.loads[r.n_loads++] = (struct load){off, vaddr, filesz};
    } else if (type == PT_INTERP_) {
      if (filesz == 0 || filesz > sizeof out->interp ||
          read_at(src, off, out->interp, (size_t)filesz) != 0 ||
          !memchr(out->interp, '\0', (size_t)filesz)) {
        *why = "bad PT_INTERP (outside the file, too long or unterminated)";
        return -1;
      }
      out->has_interp = 1;
    } else if (type == PT_DYNAMIC_) {
      if (off > src->size || filesz > src->size - off) {
        *why = "PT_DYNAMIC outside the file";
        return -1;
      }
      out->has_dynamic = 1;
      dyn_off = off;
      dyn_size = filesz;
    }
  }

  uint64_t strtab = 0, strsz = 0, symtab = 0, syment = 0, hash = 0, gnu_hash = 0;
  int have_strtab = 0, have_symtab = 0, have_hash = 0, have_gnu_hash = 0;
  uint64_t needed[DOCTOR_MAX_NEEDED];
  size_t entsize = r.b64 ? 16 : 8;
  for (uint64_t i = 0; out->has_dynamic && i < dyn_size / entsize; i++) {
    if (i >= MAX_DYN || read_at(src, at(dyn_off, i, entsize), dyn, entsize) != 0) {
      *why = "bad PT_DYNAMIC (outside the file or too long)";
      return -1;
    }
    uint64_t tag = word(&r, dyn), val = word(&r, dyn + entsize / 2);
    if (tag == DT_NULL_)
      break;
    switch (tag) {
    case DT_NEEDED_:
      if (out->n_needed < DOCTOR_MAX_NEEDED)
        needed[out->n_needed++] = val;
      else
        out->needed_dropped++;
      break;
    case DT_STRTAB_: strtab = val; have_strtab = 1; break;
    case DT_STRSZ_: strsz = val; break;
    case DT_SYMTAB_: symtab = val; have_symtab = 1; break;
    case DT_SYMENT_: syment = val; break;
    case DT_HASH_: hash = val; have_hash = 1; break;
    case DT_GNU_HASH_: gnu_hash = val; have_gnu_hash = 1; break;
    default: break;
    }
  }

  uint64_t stroff = 0;
  if (have_strtab && vaddr_to_off(&r, strtab, &stroff) == 0)
    strs = load_strtab(&r, stroff, strsz);
  if (out->n_needed > 0 && !strs) {
    *why = "DT_NEEDED without a readable DT_STRTAB";
    goto done;
  }
  size_t kept = 0;
  for (size_t i = 0; i < out->n_needed; i++) {
    if (needed[i] >= strsz) {
      *why = "DT_NEEDED name outside DT_STRTAB";
      goto done;
    }
    const char *n = name_at(strs, strsz, needed[i], sizeof out->needed[0]);
    if (n)
      strcpy(out->needed[kept++], n);
    else
      out->needed_dropped++; /* too long to keep, or running off the table */
  }
  out->n_needed = kept;

  int found = symbols_from_sections(&r, shoff, shentsize, shnum, names, n_names, out);
  if (found < 0) {
    *why = "bad section headers or dynamic symbol table";
    goto done;
  }
  /* No section headers (sstrip, or a loader's view only): the dynamic segment's own
   * pointers, sized by the hash table, which the loader needs and so cannot be missing. */
  if (found == 0 && have_symtab && strs) {
    uint64_t symoff, count = 0, hoff;
    int sized = -1;
    if (have_hash && vaddr_to_off(&r, hash, &hoff) == 0) {
      unsigned char h[8];
      if (read_at(src, hoff, h, 8) == 0) {
        count = get(&r, h + 4, 4); /* nchain: one per symbol */
        sized = 0;
      }
    } else if (have_gnu_hash && vaddr_to_off(&r, gnu_hash, &hoff) == 0) {
      sized = gnu_hash_count(&r, hoff, &count);
    }
    if (sized != 0 || vaddr_to_off(&r, symtab, &symoff) != 0 ||
        scan_symbols(&r, symoff, syment ? syment : (r.b64 ? 24 : 16), count, strs, strsz,
                     names, n_names, out) != 0) {
      *why = "bad dynamic symbol table (DT_SYMTAB, DT_HASH or DT_GNU_HASH)";
      goto done;
    }
  }
  rc = 0;
done:
  free(strs);
  return rc;
}
