// The C++ workload for bench/run: std::map, std::string and vectors built and torn
// down, so operator new and sized delete dominate. Prints its operation count and a
// checksum that a broken allocator could not reproduce.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

int main(int argc, char **argv) {
  double scale = argc > 1 ? std::atof(argv[1]) : 1.0;
  long rounds = static_cast<long>(40 * scale);
  if (rounds < 1)
    rounds = 1;
  std::uint64_t x = 42, check = 0, ops = 0;
  for (long r = 0; r < rounds; r++) {
    std::map<std::string, std::vector<std::string>> index;
    for (int i = 0; i < 20000; i++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      std::string key = "k" + std::to_string(x % 4000);
      index[key].push_back(std::string(x % 64, 'v') + std::to_string(i));
      ops += 3;
    }
    for (auto &kv : index)
      check += kv.first.size() + kv.second.size() + kv.second.back().size();
  }
  std::printf("cxx: %llu operations, check %llu\n", static_cast<unsigned long long>(ops),
              static_cast<unsigned long long>(check));
  return 0;
}
