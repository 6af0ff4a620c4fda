// Tests for the C++ half of src/front.c: every operator new and delete resolves to
// the shim, and they keep the standard's rules for alignment, nothrow and new-handlers.
#include <dlfcn.h>
#include <malloc.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

extern "C" {
#include <setjmp.h>
#include <stdarg.h>

#include <cmocka.h>
}

namespace {

bool aligned(const void *p, std::size_t a) {
  return (reinterpret_cast<std::uintptr_t>(p) & (a - 1)) == 0;
}

// Where the dynamic linker finds `name` for this program.
std::string provider(const char *name) {
  void *sym = dlsym(RTLD_DEFAULT, name);
  Dl_info info{};
  if (sym == nullptr || dladdr(sym, &info) == 0 || info.dli_fname == nullptr)
    return "";
  return info.dli_fname;
}

void test_operators_resolve_to_shim(void **) {
  const char *sz = std::is_same<std::size_t, unsigned long>::value ? "m" : "j";
  const std::string names[] = {
      std::string("_Znw") + sz,
      std::string("_Zna") + sz,
      std::string("_Znw") + sz + "RKSt9nothrow_t",
      std::string("_Zna") + sz + "RKSt9nothrow_t",
      std::string("_Znw") + sz + "St11align_val_t",
      std::string("_Zna") + sz + "St11align_val_t",
      std::string("_Znw") + sz + "St11align_val_tRKSt9nothrow_t",
      std::string("_Zna") + sz + "St11align_val_tRKSt9nothrow_t",
      "_ZdlPv",
      "_ZdaPv",
      std::string("_ZdlPv") + sz,
      std::string("_ZdaPv") + sz,
      "_ZdlPvSt11align_val_t",
      "_ZdaPvSt11align_val_t",
      std::string("_ZdlPv") + sz + "St11align_val_t",
      std::string("_ZdaPv") + sz + "St11align_val_t",
      "_ZdlPvRKSt9nothrow_t",
      "_ZdaPvRKSt9nothrow_t",
      "_ZdlPvSt11align_val_tRKSt9nothrow_t",
      "_ZdaPvSt11align_val_tRKSt9nothrow_t",
  };
  for (const std::string &n : names) {
    std::string where = provider(n.c_str());
    if (where.find("liballocshim") == std::string::npos)
      fail_msg("%s comes from '%s', not liballocshim", n.c_str(), where.c_str());
  }
}

void test_plain_and_sized(void **) {
  for (std::size_t n = 0; n < 70000; n = n * 2 + 3) {
    char *p = static_cast<char *>(::operator new(n));
    assert_non_null(p);
    assert_true(malloc_usable_size(p) >= n); // the backend knows this block
    std::memset(p, 0x5A, n);
    ::operator delete(p, n);
    char *a = new char[n + 1];
    a[n] = 1;
    delete[] a;
  }
  void *q = ::operator new(100);
  ::operator delete(q); // unsized delete of the same memory
}

struct alignas(64) Line {
  char bytes[64];
};
struct alignas(4096) Page {
  char bytes[100];
};

void test_over_aligned(void **) {
  std::vector<Line *> lines;
  for (int i = 0; i < 100; i++) {
    lines.push_back(new Line());
    assert_true(aligned(lines.back(), 64));
  }
  for (Line *l : lines)
    delete l; // sized + aligned delete
  Page *pages = new Page[3];
  assert_true(aligned(pages, 4096));
  delete[] pages;
  for (std::size_t a = 1; a <= (std::size_t(1) << 20); a <<= 1) {
    void *p = ::operator new(a * 3, std::align_val_t(a));
    assert_true(aligned(p, a));
    ::operator delete(p, a * 3, std::align_val_t(a));
    void *u = ::operator new(10, std::align_val_t(a), std::nothrow);
    assert_true(aligned(u, a));
    ::operator delete(u, std::align_val_t(a));
  }
}

// A size no process can have (above PTRDIFF_MAX), hidden from the optimiser.
std::size_t impossible() {
  volatile std::size_t n = SIZE_MAX / 2 + 4096;
  return n;
}

void test_nothrow_gives_null(void **) {
  assert_null(::operator new(impossible(), std::nothrow));
  assert_null(::operator new[](impossible(), std::nothrow));
  assert_null(::operator new(impossible(), std::align_val_t(64), std::nothrow));
  void *p = ::operator new(16, std::nothrow);
  assert_non_null(p);
  ::operator delete(p, std::nothrow);
}

// Whether allocating with `alloc` (and freeing with `release`) throws std::bad_alloc.
template <typename Alloc, typename Release> bool throws_bad_alloc(Alloc alloc, Release release) {
  try {
    release(alloc());
  } catch (const std::bad_alloc &) {
    return true;
  }
  return false;
}

void test_throwing_new_throws_bad_alloc(void **) {
  assert_true(throws_bad_alloc([] { return ::operator new(impossible()); },
                               [](void *p) { ::operator delete(p); }));
  assert_true(throws_bad_alloc([] { return ::operator new[](impossible(), std::align_val_t(128)); },
                               [](void *p) { ::operator delete[](p, std::align_val_t(128)); }));
}

int handler_calls;
void counting_handler() {
  if (++handler_calls == 3)
    std::set_new_handler(nullptr); // give up: the next failure throws
}

void test_new_handler_loop(void **) {
  handler_calls = 0;
  std::set_new_handler(counting_handler);
  assert_true(throws_bad_alloc([] { return ::operator new(impossible()); },
                               [](void *p) { ::operator delete(p); }));
  assert_int_equal(handler_calls, 3);

  handler_calls = 0;
  std::set_new_handler(counting_handler);
  assert_null(::operator new(impossible(), std::nothrow));
  assert_int_equal(handler_calls, 3);
}

// libstdc++'s nothrow forms catch what a new-handler throws and return nullptr.
int throwing_calls;
void throwing_handler() {
  ++throwing_calls;
  throw std::bad_alloc();
}

void test_nothrow_with_throwing_handler(void **) {
  std::set_new_handler(throwing_handler);
  throwing_calls = 0;
  assert_null(::operator new(impossible(), std::nothrow));
  assert_null(::operator new[](impossible(), std::nothrow));
  assert_null(::operator new(impossible(), std::align_val_t(64), std::nothrow));
  assert_null(::operator new[](impossible(), std::align_val_t(4096), std::nothrow));
  assert_int_equal(throwing_calls, 4); // each asked the handler once
  // The throwing forms still throw, and a later success is unaffected.
  assert_true(throws_bad_alloc([] { return ::operator new(impossible()); },
                               [](void *p) { ::operator delete(p); }));
  void *p = ::operator new(32, std::nothrow);
  assert_non_null(p);
  ::operator delete(p);
  std::set_new_handler(nullptr);
}

void test_containers(void **) {
  std::map<std::string, std::vector<int>> m;
  for (int i = 0; i < 20000; i++)
    m[std::to_string(i * 7919 % 20011)].push_back(i);
  long sum = 0;
  for (auto &kv : m)
    for (int v : kv.second)
      sum += v;
  assert_int_equal(sum, 19999L * 20000 / 2);
}

} // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_operators_resolve_to_shim),
      cmocka_unit_test(test_plain_and_sized),
      cmocka_unit_test(test_over_aligned),
      cmocka_unit_test(test_nothrow_gives_null),
      cmocka_unit_test(test_throwing_new_throws_bad_alloc),
      cmocka_unit_test(test_new_handler_loop),
      cmocka_unit_test(test_nothrow_with_throwing_handler),
      cmocka_unit_test(test_containers),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
