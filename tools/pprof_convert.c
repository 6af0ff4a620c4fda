/* jemalloc's heap_v2 text profile to pprof's profile.proto (gzipped), with protobuf-c's
 * generated encoder for profile.proto and zlib for the gzip stream. */
#define _GNU_SOURCE
#include "pprof_convert.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "profile.pb-c.h"

typedef Perftools__Profiles__Profile Profile;
typedef Perftools__Profiles__ValueType ValueType;
typedef Perftools__Profiles__Sample Sample;
typedef Perftools__Profiles__Mapping Mapping;
typedef Perftools__Profiles__Location Location;
typedef Perftools__Profiles__Function Function;
typedef Perftools__Profiles__Line Line;

/* One r-xp line of MAPPED_LIBRARIES. */
struct map {
  uint64_t start, limit, offset;
  char *path;
};

/* One '@' stack with its "t*:" figures, as read (addresses leaf first). */
struct stack {
  uint64_t *addr;
  size_t n;
  uint64_t cur_objs, cur_bytes, acc_objs, acc_bytes;
};

struct conv {
  char *err;
  size_t errlen;
  unsigned long lineno;
  uint64_t period;
  struct stack *stacks;
  size_t n_stacks, cap_stacks;
  struct map *maps;
  size_t n_maps, cap_maps;
  /* Distinct addresses (already moved onto the call instruction) -> Location id, open
   * addressing; 0 marks an empty slot (address 0 is never a frame kept). */
  uint64_t *loc_addr;
  uint64_t *loc_id;
  size_t loc_cap, n_locs;
  char **strings;
  size_t n_strings, cap_strings;
  /* String id + 1 by hash of the string, open addressing, at most half full: a big
   * server's profile names tens of thousands of functions. */
  size_t *str_slot;
  size_t str_cap;
};

__attribute__((format(printf, 2, 3))) static int fail(struct conv *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (c->errlen) {
    size_t used = 0;
    if (c->lineno) {
      int k = snprintf(c->err, c->errlen, "line %lu: ", c->lineno);
      used = k > 0 && (size_t)k < c->errlen ? (size_t)k : 0;
    }
    vsnprintf(c->err + used, c->errlen - used, fmt, ap);
  }
  va_end(ap);
  return -1;
}

static int grow(struct conv *c, void **arr, size_t *cap, size_t need, size_t size) {
  if (need <= *cap)
    return 0;
  size_t ncap = *cap ? *cap * 2 : 16;
  while (ncap < need)
    ncap *= 2;
  void *p = realloc(*arr, ncap * size);
  if (!p)
    return fail(c, "out of memory");
  *arr = p;
  *cap = ncap;
  return 0;
}

/* A decimal (base 10) or hex (base 16) number at *s, advancing *s; -1 if none or it
 * overflows. */
static int number(const char **s, int base, uint64_t *out) {
  const char *p = *s;
  if (base == 16 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
    p += 2;
  int any = 0;
  uint64_t v = 0;
  for (;; p++) {
    int d;
    if (*p >= '0' && *p <= '9')
      d = *p - '0';
    else if (base == 16 && *p >= 'a' && *p <= 'f')
      d = *p - 'a' + 10;
    else if (base == 16 && *p >= 'A' && *p <= 'F')
      d = *p - 'A' + 10;
    else
      break;
    if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
      return -1;
    v = v * (uint64_t)base + (uint64_t)d;
    any = 1;
  }
  if (!any)
    return -1;
  *s = p;
  *out = v;
  return 0;
}

static int literal(const char **s, const char *lit) {
  size_t n = strlen(lit);
  if (strncmp(*s, lit, n) != 0)
    return -1;
  *s += n;
  return 0;
}

/* "  t*: OBJS: BYTES [OBJS: BYTES]", the figures of one stack or of the whole dump. */
static int parse_counts(const char *s, struct stack *st) {
  if (literal(&s, "  t*: ") || number(&s, 10, &st->cur_objs) || literal(&s, ": ") ||
      number(&s, 10, &st->cur_bytes) || literal(&s, " [") || number(&s, 10, &st->acc_objs) ||
      literal(&s, ": ") || number(&s, 10, &st->acc_bytes) || literal(&s, "]"))
    return -1;
  return *s == '\0' ? 0 : -1;
}

/* "@ 0xADDR 0xADDR ...", leaf first. */
static int parse_stack(struct conv *c, const char *s, struct stack *st) {
  size_t cap = 0;
  s += 1;
  while (*s == ' ') {
    while (*s == ' ')
      s++;
    if (*s == '\0')
      break;
    uint64_t a;
    if (number(&s, 16, &a) || (*s != ' ' && *s != '\0'))
      return fail(c, "a stack address is not a hex number");
    if (grow(c, (void **)&st->addr, &cap, st->n + 1, sizeof *st->addr))
      return -1;
    st->addr[st->n++] = a;
  }
  if (*s != '\0')
    return fail(c, "malformed stack line");
  /* No address at all (a sample its profiler could not unwind) is kept, with no
   * location, so that its bytes still count in the profile's total. */
  return 0;
}

/* "START-LIMIT PERMS OFFSET DEV INODE PATH" from /proc/self/maps: executable mappings of
 * a file are kept, the rest is no code. */
static int parse_map(struct conv *c, const char *s) {
  uint64_t start, limit, offset;
  if (number(&s, 16, &start) || literal(&s, "-") || number(&s, 16, &limit) || *s != ' ')
    return fail(c, "malformed MAPPED_LIBRARIES line");
  s++;
  char perms[5] = {0};
  for (int i = 0; i < 4; i++) {
    if (!*s || *s == ' ')
      return fail(c, "malformed MAPPED_LIBRARIES permissions");
    perms[i] = *s++;
  }
  if (literal(&s, " ") || number(&s, 16, &offset))
    return fail(c, "malformed MAPPED_LIBRARIES offset");
  /* dev and inode, then spaces, then the path (which may contain spaces). */
  for (int field = 0; field < 2; field++) {
    while (*s == ' ')
      s++;
    while (*s && *s != ' ')
      s++;
  }
  while (*s == ' ')
    s++;
  if (perms[2] != 'x' || *s != '/' || limit <= start)
    return 0;
  if (grow(c, (void **)&c->maps, &c->cap_maps, c->n_maps + 1, sizeof *c->maps))
    return -1;
  char *path = strdup(s);
  if (!path)
    return fail(c, "out of memory");
  c->maps[c->n_maps++] = (struct map){start, limit, offset, path};
  return 0;
}

static int read_dump(struct conv *c, FILE *in) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int rc = -1, in_maps = 0, want_counts = 0, seen_maps = 0;
  struct stack total = {0};
  while ((len = getline(&line, &cap, in)) >= 0) {
    c->lineno++;
    if (len > 0 && line[len - 1] == '\n') {
      line[--len] = '\0';
    } else {
      /* jemalloc ends every line, the copied maps' too: a last line without its
       * newline is a file cut short (a full disk, a copy interrupted). */
      fail(c, "truncated: the last line is incomplete");
      goto out;
    }
    if ((size_t)len != strlen(line)) {
      fail(c, "a NUL byte: not a text heap profile");
      goto out;
    }
    if (c->lineno == 1) {
      const char *s = line;
      if (literal(&s, "heap_v2/") || number(&s, 10, &c->period) || *s || c->period == 0) {
        fail(c, "not a jemalloc heap_v2 profile (first line is not heap_v2/PERIOD)");
        goto out;
      }
      continue;
    }
    if (c->lineno == 2) {
      if (parse_counts(line, &total)) {
        fail(c, "expected the totals line '  t*: OBJS: BYTES [OBJS: BYTES]'");
        goto out;
      }
      continue;
    }
    if (in_maps) {
      if (*line && parse_map(c, line))
        goto out;
      continue;
    }
    if (want_counts) {
      if (parse_counts(line, &c->stacks[c->n_stacks - 1])) {
        fail(c, "expected '  t*: OBJS: BYTES [OBJS: BYTES]' after a stack");
        goto out;
      }
      want_counts = 0;
    } else if (line[0] == '@') {
      if (grow(c, (void **)&c->stacks, &c->cap_stacks, c->n_stacks + 1, sizeof *c->stacks))
        goto out;
      c->stacks[c->n_stacks] = (struct stack){0};
      c->n_stacks++;
      if (parse_stack(c, line, &c->stacks[c->n_stacks - 1]))
        goto out;
      want_counts = 1;
    } else if (strcmp(line, "MAPPED_LIBRARIES:") == 0) {
      in_maps = seen_maps = 1;
    } else if (strncmp(line, "  t", 3) != 0 && *line) {
      /* Per-thread lines ("  tN: ...") repeat what "t*" adds up; anything else is not
       * part of the format. */
      fail(c, "unexpected line '%.40s'", line);
      goto out;
    }
  }
  if (ferror(in)) {
    c->lineno = 0;
    fail(c, "reading the profile: %s", strerror(errno));
    goto out;
  }
  c->lineno = 0;
  if (c->period == 0) { /* no first line at all */
    fail(c, "empty input: not a heap profile");
    goto out;
  }
  if (want_counts) {
    fail(c, "truncated: the last stack has no figures");
    goto out;
  }
  if (!seen_maps) {
    fail(c, "truncated: no MAPPED_LIBRARIES section (needed to name the code)");
    goto out;
  }
  rc = 0;
out:
  free(line);
  return rc;
}

static const struct map *find_map(const struct conv *c, uint64_t a) {
  for (size_t i = 0; i < c->n_maps; i++)
    if (a >= c->maps[i].start && a < c->maps[i].limit)
      return &c->maps[i];
  return NULL;
}

static size_t str_hash(const char *s) {
  size_t h = 14695981039346656037ull & SIZE_MAX; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * (size_t)1099511628211ull;
  return h;
}

/* Rebuilds the table at twice the size (or 1024 slots) from the strings so far. */
static int str_rehash(struct conv *c) {
  size_t cap = c->str_cap ? c->str_cap * 2 : 1024;
  size_t *slot = calloc(cap, sizeof *slot);
  if (!slot)
    return fail(c, "out of memory");
  for (size_t i = 0; i < c->n_strings; i++) {
    size_t at = str_hash(c->strings[i]) & (cap - 1);
    while (slot[at])
      at = (at + 1) & (cap - 1);
    slot[at] = i + 1;
  }
  free(c->str_slot);
  c->str_slot = slot;
  c->str_cap = cap;
  return 0;
}

static int64_t intern(struct conv *c, const char *s) {
  if (2 * (c->n_strings + 1) > c->str_cap && str_rehash(c) != 0)
    return -1;
  size_t at = str_hash(s) & (c->str_cap - 1);
  for (; c->str_slot[at]; at = (at + 1) & (c->str_cap - 1))
    if (strcmp(c->strings[c->str_slot[at] - 1], s) == 0)
      return (int64_t)c->str_slot[at] - 1;
  if (grow(c, (void **)&c->strings, &c->cap_strings, c->n_strings + 1, sizeof *c->strings))
    return -1;
  char *d = strdup(s);
  if (!d)
    return fail(c, "out of memory");
  c->strings[c->n_strings] = d;
  c->str_slot[at] = c->n_strings + 1;
  return (int64_t)c->n_strings++;
}

static uint64_t location_of(struct conv *c, uint64_t addr) {
  size_t mask = c->loc_cap - 1, i = (size_t)((addr * 0x9E3779B97F4A7C15ull) >> 20) & mask;
  while (c->loc_addr[i] && c->loc_addr[i] != addr)
    i = (i + 1) & mask;
  if (!c->loc_addr[i]) {
    c->loc_addr[i] = addr;
    c->loc_id[i] = ++c->n_locs;
  }
  return c->loc_id[i];
}

/* jeprof's AdjustSamples for heap_v2: a block of average size avg was sampled with
 * probability 1 - exp(-avg/period), so objects and bytes are divided by it. jemalloc
 * 5.3 (prof_unbias) writes figures chosen so that this same step gives its unbiased
 * estimate, so either way the result is what jeprof reports. */
static void unbias(uint64_t period, uint64_t objs, uint64_t bytes, int64_t *o_out, int64_t *b_out) {
  if (objs == 0 || bytes == 0) {
    *o_out = (int64_t)objs;
    *b_out = (int64_t)bytes;
    return;
  }
  double ratio = ((double)bytes / (double)objs) / (double)period;
  double scale = 1.0 / (1.0 - exp(-ratio));
  double o = (double)objs * scale, b = (double)bytes * scale;
  *o_out = o >= 9.2e18 ? INT64_MAX : (int64_t)llround(o);
  *b_out = b >= 9.2e18 ? INT64_MAX : (int64_t)llround(b);
}

/* Function symbols of one ELF file (below), for naming frames. */
struct symbols;
static struct symbols *symbols_load(const char *path);
static const char *symbols_name(const struct symbols *s, uint64_t file_offset);
static void symbols_free(struct symbols *s);

/* The Function and Line records name_frames() makes, freed with the profile. */
struct named {
  Function *funcs, **func_ptrs;
  Line *lines, **line_ptrs;
  size_t n_funcs;
};

/* Each location gets the name of the function around it from its file's symbol table.
 * go tool pprof symbolizes from DWARF and keeps these names where it finds none: the
 * allocator's own frames in a statically linked program (Debian's jemalloc has no
 * debug information) are then named, and drop_frames can match them; a profile read
 * without the binaries at hand still names functions. */
static int name_frames(struct conv *c, Location *locs, struct named *nm) {
  struct symbols **syms = calloc(c->n_maps + 1, sizeof *syms);
  unsigned char *tried = calloc(c->n_maps + 1, 1);
  /* Function id + 1 by string id; each location adds at most one string. */
  size_t *fid_of = calloc(c->n_strings + c->n_locs + 1, sizeof *fid_of);
  nm->funcs = calloc(c->n_locs + 1, sizeof *nm->funcs);
  nm->func_ptrs = calloc(c->n_locs + 1, sizeof *nm->func_ptrs);
  nm->lines = calloc(c->n_locs + 1, sizeof *nm->lines);
  nm->line_ptrs = calloc(c->n_locs + 1, sizeof *nm->line_ptrs);
  int rc = -1;
  if (!syms || !tried || !fid_of || !nm->funcs || !nm->func_ptrs || !nm->lines || !nm->line_ptrs) {
    fail(c, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < c->n_locs; i++) {
    Location *l = &locs[i];
    if (l->mapping_id == 0)
      continue;
    size_t m = l->mapping_id - 1;
    if (!tried[m]) {
      tried[m] = 1;
      syms[m] = symbols_load(c->maps[m].path);
    }
    const char *name =
        syms[m] ? symbols_name(syms[m], l->address - c->maps[m].start + c->maps[m].offset) : NULL;
    if (name == NULL)
      continue;
    int64_t s = intern(c, name);
    if (s < 0)
      goto out;
    size_t f = fid_of[s] ? fid_of[s] - 1 : nm->n_funcs;
    if (f == nm->n_funcs) {
      fid_of[s] = f + 1;
      nm->funcs[f] = (Function)PERFTOOLS__PROFILES__FUNCTION__INIT;
      nm->funcs[f].id = f + 1;
      nm->funcs[f].name = nm->funcs[f].system_name = s;
      nm->func_ptrs[f] = &nm->funcs[f];
      nm->n_funcs++;
    }
    nm->lines[i] = (Line)PERFTOOLS__PROFILES__LINE__INIT;
    nm->lines[i].function_id = f + 1;
    nm->line_ptrs[i] = &nm->lines[i];
    l->n_line = 1;
    l->line = &nm->line_ptrs[i];
  }
  rc = 0;
out:
  for (size_t m = 0; syms && m < c->n_maps; m++)
    symbols_free(syms[m]);
  free(syms);
  free(tried);
  free(fid_of);
  return rc;
}

static int build_and_write(struct conv *c, const struct pprof_convert_opts *opts, gzFile out) {
  int rc = -1;
  int with_alloc = 0;
  for (size_t i = 0; i < c->n_stacks; i++)
    if (c->stacks[i].acc_objs || c->stacks[i].acc_bytes)
      with_alloc = 1; /* only with jemalloc's prof_accum: otherwise always 0 */
  size_t n_values = with_alloc ? 4 : 2;

  size_t total_frames = 0;
  for (size_t i = 0; i < c->n_stacks; i++)
    total_frames += c->stacks[i].n;
  c->loc_cap = 64;
  while (c->loc_cap < 2 * total_frames + 2)
    c->loc_cap *= 2;
  c->loc_addr = calloc(c->loc_cap, sizeof *c->loc_addr);
  c->loc_id = calloc(c->loc_cap, sizeof *c->loc_id);

  Profile prof = PERFTOOLS__PROFILES__PROFILE__INIT;
  ValueType types[4], period_type = PERFTOOLS__PROFILES__VALUE_TYPE__INIT;
  ValueType *type_ptrs[4];
  Sample *samples = calloc(c->n_stacks + 1, sizeof *samples);
  Sample **sample_ptrs = calloc(c->n_stacks + 1, sizeof *sample_ptrs);
  int64_t *values = calloc((c->n_stacks + 1) * n_values, sizeof *values);
  uint64_t *ids = calloc(total_frames + 1, sizeof *ids);
  Mapping *maps = calloc(c->n_maps + 1, sizeof *maps);
  Mapping **map_ptrs = calloc(c->n_maps + 1, sizeof *map_ptrs);
  Location *locs = NULL;
  Location **loc_ptrs = NULL;
  struct named named = {0};
  uint8_t *buf = NULL;
  if (!c->loc_addr || !c->loc_id || !samples || !sample_ptrs || !values || !ids || !maps ||
      !map_ptrs) {
    fail(c, "out of memory");
    goto out;
  }

  /* The string table starts with "", as profile.proto requires. */
  const char *names[][2] = {{"inuse_objects", "count"},
                            {"inuse_space", "bytes"},
                            {"alloc_objects", "count"},
                            {"alloc_space", "bytes"}};
  if (intern(c, "") < 0)
    goto out;
  for (size_t i = 0; i < n_values; i++) {
    types[i] = (ValueType)PERFTOOLS__PROFILES__VALUE_TYPE__INIT;
    types[i].type = intern(c, names[i][0]);
    types[i].unit = intern(c, names[i][1]);
    if (types[i].type < 0 || types[i].unit < 0)
      goto out;
    type_ptrs[i] = &types[i];
  }
  period_type.type = intern(c, "space");
  period_type.unit = intern(c, "bytes");
  prof.default_sample_type = intern(c, "inuse_space");
  if (period_type.type < 0 || period_type.unit < 0 || prof.default_sample_type < 0)
    goto out;
  prof.n_sample_type = n_values;
  prof.sample_type = type_ptrs;
  prof.period_type = &period_type;
  prof.period = c->period > INT64_MAX ? INT64_MAX : (int64_t)c->period;

  /* Mappings: the first is the program itself (maps lists it first, at its lowest
   * address), which go tool pprof replaces with the binary named on its command line.
   * has_functions stays false, so pprof symbolizes from the files on disk, checking
   * them against the build ID. */
  for (size_t i = 0; i < c->n_maps; i++) {
    Mapping *m = &maps[i];
    *m = (Mapping)PERFTOOLS__PROFILES__MAPPING__INIT;
    m->id = i + 1;
    m->memory_start = c->maps[i].start;
    m->memory_limit = c->maps[i].limit;
    m->file_offset = c->maps[i].offset;
    m->filename = intern(c, c->maps[i].path);
    char hex[2 * 64 + 1];
    if (opts && opts->read_build_ids && pprof_build_id(c->maps[i].path, hex, sizeof hex) == 0)
      m->build_id = intern(c, hex);
    if (m->filename < 0 || m->build_id < 0)
      goto out;
    map_ptrs[i] = m;
  }
  prof.n_mapping = c->n_maps;
  prof.mapping = map_ptrs;
  if (opts && opts->drop_frames && *opts->drop_frames &&
      (prof.drop_frames = intern(c, opts->drop_frames)) < 0)
    goto out;

  const char *drop = opts && opts->drop_mapping && *opts->drop_mapping ? opts->drop_mapping : NULL;
  size_t used_ids = 0;
  for (size_t i = 0; i < c->n_stacks; i++) {
    const struct stack *st = &c->stacks[i];
    size_t first = 0;
    if (drop) {
      while (first < st->n) {
        const struct map *m = find_map(c, st->addr[first]);
        if (!m || !strstr(m->path, drop))
          break;
        first++;
      }
      /* A stack wholly inside the allocator (its own bookkeeping) keeps its frames:
       * its bytes are then still shown, under the allocator's names. */
      if (first == st->n)
        first = 0;
    }
    Sample *s = &samples[i];
    *s = (Sample)PERFTOOLS__PROFILES__SAMPLE__INIT;
    s->location_id = &ids[used_ids];
    for (size_t k = first; k < st->n; k++) {
      /* Every address is a return address (jemalloc unwinds from inside malloc):
       * one byte back lands on the call instruction, whose line is the caller's, as
       * jeprof and pprof's own legacy readers do. */
      uint64_t a = st->addr[k] ? st->addr[k] - 1 : 0;
      if (a == 0)
        continue;
      ids[used_ids++] = location_of(c, a);
      s->n_location_id++;
    }
    int64_t *v = &values[i * n_values];
    unbias(c->period, st->cur_objs, st->cur_bytes, &v[0], &v[1]);
    if (with_alloc)
      unbias(c->period, st->acc_objs, st->acc_bytes, &v[2], &v[3]);
    s->n_value = n_values;
    s->value = v;
    sample_ptrs[i] = s;
  }
  prof.n_sample = c->n_stacks;
  prof.sample = sample_ptrs;

  locs = calloc(c->n_locs + 1, sizeof *locs);
  loc_ptrs = calloc(c->n_locs + 1, sizeof *loc_ptrs);
  if (!locs || !loc_ptrs) {
    fail(c, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < c->loc_cap; i++) {
    if (!c->loc_addr[i])
      continue;
    Location *l = &locs[c->loc_id[i] - 1];
    *l = (Location)PERFTOOLS__PROFILES__LOCATION__INIT;
    l->id = c->loc_id[i];
    l->address = c->loc_addr[i];
    const struct map *m = find_map(c, c->loc_addr[i]);
    l->mapping_id = m ? (uint64_t)(m - c->maps) + 1 : 0;
    loc_ptrs[c->loc_id[i] - 1] = l;
  }
  prof.n_location = c->n_locs;
  prof.location = loc_ptrs;
  if (opts && opts->read_build_ids) {
    if (name_frames(c, locs, &named) != 0)
      goto out;
    prof.n_function = named.n_funcs;
    prof.function = named.func_ptrs;
  }
  prof.n_string_table = c->n_strings;
  prof.string_table = c->strings;

  size_t size = perftools__profiles__profile__get_packed_size(&prof);
  buf = malloc(size ? size : 1);
  if (!buf) {
    fail(c, "out of memory (%zu bytes of profile)", size);
    goto out;
  }
  size_t packed = perftools__profiles__profile__pack(&prof, buf);
  for (size_t done = 0; done < packed;) {
    unsigned chunk = packed - done > (1u << 30) ? (1u << 30) : (unsigned)(packed - done);
    int w = gzwrite(out, buf + done, chunk);
    if (w <= 0) {
      int zerr;
      const char *msg = gzerror(out, &zerr);
      fail(c, "writing the gzip stream: %s", zerr == Z_ERRNO ? strerror(errno) : msg);
      goto out;
    }
    done += (size_t)w;
  }
  rc = 0;
out:
  free(named.funcs);
  free(named.func_ptrs);
  free(named.lines);
  free(named.line_ptrs);
  free(buf);
  free(locs);
  free(loc_ptrs);
  free(samples);
  free(sample_ptrs);
  free(values);
  free(ids);
  free(maps);
  free(map_ptrs);
  return rc;
}

int pprof_convert(FILE *in, gzFile out, const struct pprof_convert_opts *opts, char *err,
                  size_t errlen) {
  struct conv c = {.err = err, .errlen = errlen};
  if (errlen)
    err[0] = '\0';
  int rc = read_dump(&c, in);
  if (rc == 0)
    rc = build_and_write(&c, opts, out);
  for (size_t i = 0; i < c.n_stacks; i++)
    free(c.stacks[i].addr);
  free(c.stacks);
  for (size_t i = 0; i < c.n_maps; i++)
    free(c.maps[i].path);
  free(c.maps);
  for (size_t i = 0; i < c.n_strings; i++)
    free(c.strings[i]);
  free(c.strings);
  free(c.str_slot);
  free(c.loc_addr);
  free(c.loc_id);
  return rc;
}

/* ---- GNU build ID ------------------------------------------------------------------
 * Only this machine's own class and byte order: the profile comes from a process that
 * ran here, so its files are of this machine's kind. */
#if UINTPTR_MAX > 0xffffffffu
typedef Elf64_Ehdr Ehdr;
typedef Elf64_Phdr Phdr;
typedef Elf64_Shdr Shdr;
typedef Elf64_Sym Sym;
#define OWN_CLASS ELFCLASS64
#else
typedef Elf32_Ehdr Ehdr;
typedef Elf32_Phdr Phdr;
typedef Elf32_Shdr Shdr;
typedef Elf32_Sym Sym;
#define OWN_CLASS ELFCLASS32
#endif

static int full_pread(int fd, void *buf, size_t n, uint64_t off) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    got += (size_t)r;
  }
  return 0;
}

static int notes_build_id(const unsigned char *p, size_t n, size_t align, char *hex,
                          size_t hexlen) {
  size_t pos = 0;
  while (n - pos >= 12) {
    uint32_t namesz, descsz, type;
    memcpy(&namesz, p + pos, 4);
    memcpy(&descsz, p + pos + 4, 4);
    memcpy(&type, p + pos + 8, 4);
    pos += 12;
    size_t name_end = (size_t)namesz + (align - 1);
    name_end -= name_end % align;
    size_t desc_end = (size_t)descsz + (align - 1);
    desc_end -= desc_end % align;
    if (name_end > n - pos || desc_end > n - pos - name_end)
      return -1;
    if (type == NT_GNU_BUILD_ID && namesz == 4 && memcmp(p + pos, "GNU", 4) == 0 && descsz > 0 &&
        descsz <= 64 && hexlen >= 2 * (size_t)descsz + 1) {
      for (uint32_t i = 0; i < descsz; i++)
        snprintf(hex + 2 * i, 3, "%02x", p[pos + name_end + i]);
      return 0;
    }
    pos += name_end + desc_end;
  }
  return -1;
}

/* The ELF file at `path` opened, its header in `eh`: a descriptor, or -1. The path
 * comes from the dump, which anyone may have written: a FIFO must not hang the tool,
 * nor a device be opened for its side effects. Regular files only. */
static int open_elf(const char *path, Ehdr *eh) {
  /* Looked at through O_PATH first, which opens no device (a tape would rewind), then
   * opened for reading through that very descriptor, so a swap in between is no use. */
  int where = open(path, O_PATH | O_CLOEXEC);
  struct stat st;
  if (where < 0)
    return -1;
  if (fstat(where, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(where);
    return -1;
  }
  char self[64];
  snprintf(self, sizeof self, "/proc/self/fd/%d", where);
  int fd = open(self, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  close(where);
  if (fd < 0)
    return -1;
  static const union {
    uint16_t u;
    unsigned char b[2];
  } endian = {1};
  unsigned char own_data = endian.b[0] ? ELFDATA2LSB : ELFDATA2MSB;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || full_pread(fd, eh, sizeof *eh, 0) ||
      memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != OWN_CLASS ||
      eh->e_ident[EI_DATA] != own_data || eh->e_phentsize != sizeof(Phdr) || eh->e_phnum == 0 ||
      eh->e_phnum > 4096) {
    close(fd);
    return -1;
  }
  return fd;
}

int pprof_build_id(const char *path, char *hex, size_t hexlen) {
  Ehdr eh;
  int fd = open_elf(path, &eh);
  if (fd < 0)
    return -1;
  int rc = -1;
  for (unsigned i = 0; i < eh.e_phnum && rc != 0; i++) {
    Phdr ph;
    if (full_pread(fd, &ph, sizeof ph, eh.e_phoff + (uint64_t)i * sizeof ph))
      goto out;
    if (ph.p_type != PT_NOTE || ph.p_filesz == 0 || ph.p_filesz > (1u << 20))
      continue;
    unsigned char *notes = malloc(ph.p_filesz);
    if (!notes)
      goto out;
    if (full_pread(fd, notes, ph.p_filesz, ph.p_offset) == 0)
      rc = notes_build_id(notes, ph.p_filesz, ph.p_align == 8 ? 8 : 4, hex, hexlen);
    free(notes);
  }
out:
  close(fd);
  return rc;
}

/* ---- Function symbols ----------------------------------------------------------------
 * The file's .symtab (every function, local ones too), or .dynsym when it was
 * stripped; sorted by address. A frame's offset in the file becomes the address the
 * symbols use through the PT_LOAD segment that holds it. */

struct fsym {
  uint64_t addr, size;
  uint32_t name;
};

struct symbols {
  struct fsym *syms;
  size_t n;
  char *strtab;
  Phdr *loads;
  size_t n_loads;
};

/* Far beyond any real symbol table: a bound on what a dump can make us read. */
#define SYMBOLS_MAX_BYTES (256u << 20)

static int by_addr(const void *a, const void *b) {
  const struct fsym *x = a, *y = b;
  if (x->addr != y->addr)
    return x->addr < y->addr ? -1 : 1;
  return x->name < y->name ? -1 : x->name > y->name; /* aliases: the same pick every time */
}

void symbols_free(struct symbols *s) {
  if (s == NULL)
    return;
  free(s->syms);
  free(s->strtab);
  free(s->loads);
  free(s);
}

static int read_section(int fd, const Shdr *sh, void **out) {
  if (sh->sh_size == 0 || sh->sh_size > SYMBOLS_MAX_BYTES)
    return -1;
  *out = malloc(sh->sh_size + 1);
  if (*out == NULL || full_pread(fd, *out, sh->sh_size, sh->sh_offset) != 0)
    return -1;
  ((char *)*out)[sh->sh_size] = '\0'; /* a string table ends in NUL, whatever it says */
  return 0;
}

struct symbols *symbols_load(const char *path) {
  Ehdr eh;
  int fd = open_elf(path, &eh);
  if (fd < 0)
    return NULL;
  struct symbols *s = calloc(1, sizeof *s);
  Shdr *sh = NULL;
  Sym *raw = NULL;
  int ok = 0;
  if (s == NULL || eh.e_shentsize != sizeof(Shdr) || eh.e_shnum == 0 || eh.e_shnum >= SHN_LORESERVE)
    goto out;
  s->loads = calloc(eh.e_phnum, sizeof *s->loads);
  sh = calloc(eh.e_shnum, sizeof *sh);
  if (!s->loads || !sh || full_pread(fd, sh, eh.e_shnum * sizeof *sh, eh.e_shoff))
    goto out;
  for (unsigned i = 0; i < eh.e_phnum; i++) {
    Phdr ph;
    if (full_pread(fd, &ph, sizeof ph, eh.e_phoff + (uint64_t)i * sizeof ph))
      goto out;
    if (ph.p_type == PT_LOAD)
      s->loads[s->n_loads++] = ph;
  }
  const Shdr *tab = NULL;
  for (unsigned i = 0; i < eh.e_shnum; i++)
    if (sh[i].sh_type == SHT_SYMTAB || (sh[i].sh_type == SHT_DYNSYM && tab == NULL))
      tab = &sh[i];
  if (tab == NULL || tab->sh_link >= eh.e_shnum || tab->sh_entsize != sizeof(Sym) ||
      read_section(fd, tab, (void **)&raw) ||
      read_section(fd, &sh[tab->sh_link], (void **)&s->strtab))
    goto out;
  size_t n = tab->sh_size / sizeof(Sym), strsz = sh[tab->sh_link].sh_size;
  s->syms = calloc(n + 1, sizeof *s->syms);
  if (!s->syms)
    goto out;
  for (size_t i = 0; i < n; i++) {
    unsigned type = raw[i].st_info & 0xf;
    if ((type == STT_FUNC || type == STT_GNU_IFUNC) && raw[i].st_shndx != SHN_UNDEF &&
        raw[i].st_value != 0 && raw[i].st_name != 0 && raw[i].st_name < strsz)
      s->syms[s->n++] = (struct fsym){raw[i].st_value, raw[i].st_size, raw[i].st_name};
  }
  qsort(s->syms, s->n, sizeof *s->syms, by_addr);
  ok = s->n > 0;
out:
  free(sh);
  free(raw);
  close(fd);
  if (!ok) {
    symbols_free(s);
    return NULL;
  }
  return s;
}

const char *symbols_name(const struct symbols *s, uint64_t file_offset) {
  uint64_t addr = 0;
  size_t k = 0;
  for (; k < s->n_loads; k++)
    if (file_offset >= s->loads[k].p_offset &&
        file_offset - s->loads[k].p_offset < s->loads[k].p_filesz) {
      addr = file_offset - s->loads[k].p_offset + s->loads[k].p_vaddr;
      break;
    }
  if (k == s->n_loads)
    return NULL;
  /* The last symbol at or below addr, if addr lies inside it. */
  size_t lo = 0, hi = s->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (s->syms[mid].addr <= addr)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0)
    return NULL;
  const struct fsym *f = &s->syms[lo - 1];
  return addr - f->addr < f->size ? s->strtab + f->name : NULL;
}
