// A C++ program of our own for the preload tests: 4 threads using new/delete,
// std::string, std::map and over-aligned types, printing a deterministic checksum.
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

struct alignas(128) Slot {
  std::uint64_t value;
  char pad[120];
};

static std::uint64_t work(int seed) {
  std::map<std::string, std::vector<std::uint64_t>> index;
  std::uint64_t x = static_cast<std::uint64_t>(seed) * 0x9E3779B97F4A7C15ull + 1;
  std::uint64_t sum = 0;
  for (int i = 0; i < 60000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    std::string key = "key-" + std::to_string(x % 5000) + std::string(x % 40, 'k');
    index[key].push_back(x);
    if (i % 3 == 0) {
      auto slot = std::make_unique<Slot>();
      slot->value = x;
      if (reinterpret_cast<std::uintptr_t>(slot.get()) % alignof(Slot) != 0)
        return 0; // a misaligned Slot poisons the checksum
      sum += slot->value % 1000;
    }
    if (index.size() > 3000)
      index.erase(index.begin());
  }
  for (const auto &kv : index)
    sum += kv.first.size() + kv.second.size();
  return sum;
}

int main() {
  std::uint64_t results[4] = {};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++)
    threads.emplace_back([t, &results] { results[t] = work(t + 1); });
  for (auto &th : threads)
    th.join();
  for (int t = 0; t < 4; t++)
    std::printf("thread %d: %llu\n", t, static_cast<unsigned long long>(results[t]));
  return 0;
}
