# Makes every name of the static archive's joined object local except the export list,
# so that a program linked with liballocshim.a meets no internal name of the shim's.
#
# usage: cmake -DOBJCOPY=... -DREADELF=... -DEXPORTS=exports.txt -DJOINED=joined.o -DRESULT=out.o
#        -DKEEP=keep.txt -P AllocshimLocalize.cmake
# A COMDAT group's signature stays global as well: the final link keeps one group of
# each name across all the program's objects and may keep the program's copy (i686's
# __x86.get_pc_thunk.* is in every PIC object and in the C library's start files); the
# discarded copy's references would then point at a local name defined nowhere.
foreach(_v OBJCOPY READELF EXPORTS JOINED RESULT KEEP)
  if(NOT DEFINED ${_v})
    message(FATAL_ERROR "AllocshimLocalize.cmake: ${_v} not given")
  endif()
endforeach()

execute_process(COMMAND ${READELF} -gW ${JOINED} OUTPUT_VARIABLE _groups COMMAND_ERROR_IS_FATAL ANY)
string(REGEX MATCHALL "\\[[^]\n]+\\] contains" _signatures "${_groups}")
list(TRANSFORM _signatures REPLACE "^\\[(.*)\\] contains$" "\\1")
list(REMOVE_DUPLICATES _signatures)

file(READ ${EXPORTS} _keep)
foreach(_s IN LISTS _signatures)
  string(APPEND _keep "${_s}\n")
endforeach()
file(WRITE ${KEEP} "${_keep}")
execute_process(COMMAND ${OBJCOPY} --keep-global-symbols=${KEEP} ${JOINED} ${RESULT}
                COMMAND_ERROR_IS_FATAL ANY)
