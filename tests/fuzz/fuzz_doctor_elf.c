/* libFuzzer harness for tools/doctor_elf.c: any bytes as an ELF file, under
 * AddressSanitizer (this reader, unlike the shim, may use it): error or facts, no crash. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "doctor_elf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const names[] = {"malloc", "mallctl", "mi_malloc", "tc_malloc"};
  struct doctor_src src = {.fd = -1, .mem = data, .size = size};
  struct doctor_elf e;
  const char *why = NULL;
  if (doctor_elf_read(&src, names, 4, &e, &why) == 0 && !memchr(e.interp, '\0', sizeof e.interp))
    __builtin_trap(); /* the interpreter must come back terminated */
  return 0;
}
