/* A program built against the backend's own library (libjemalloc or libmimalloc) and
 * run with the shim preloaded: the backend's API must reach the shim's copy of it, so
 * that its pointers and malloc's cross freely. Exit 0 only if they do. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(USE_JEMALLOC_API)
void *mallocx(size_t size, int flags);
void dallocx(void *p, int flags);
#define API_NAME       "mallocx"
#define api_alloc(n)   mallocx((n), 0)
#define api_release(p) dallocx((p), 0)
#else
void *mi_malloc(size_t size);
void mi_free(void *p);
#define API_NAME       "mi_malloc"
#define api_alloc(n)   mi_malloc(n)
#define api_release(p) mi_free(p)
#endif

static const char *provider(const char *symbol) {
  Dl_info info;
  void *fn = dlsym(RTLD_DEFAULT, symbol);
  return fn && dladdr(fn, &info) && info.dli_fname ? info.dli_fname : "?";
}

/* argv[1]: the object that must provide the backend's API: the shim itself, or the
 * backend's own library when the shim is linked to it (and so uses that very copy). */
int main(int argc, char **argv) {
  const char *want = argc > 1 ? argv[1] : "liballocshim";
  const char *api = provider(API_NAME), *libc_api = provider("malloc");
  if (strstr(api, want) == NULL || strstr(libc_api, "liballocshim") == NULL) {
    fprintf(stderr, "backend_api: %s comes from %s (want %s), malloc from %s\n", API_NAME, api,
            want, libc_api);
    return 1;
  }
  /* Both directions, many sizes. A second jemalloc would crash here; mimalloc frees
   * another copy's blocks without complaint, so for it the provider check above is the
   * test, and this loop only proves the pointers are accepted. */
  for (size_t n = 1; n <= (1u << 22); n = n * 3 + 1) {
    char *a = api_alloc(n), *b = malloc(n);
    if (a == NULL || b == NULL)
      return 1;
    memset(a, 1, n);
    memset(b, 2, n);
    free(a);
    api_release(b);
  }
  printf("backend_api: %s from %s, malloc from %s: one allocator\n", API_NAME, api, libc_api);
  return 0;
}
