# WebAssembly guest modules, built by the normal build with Debian's clang 14 for wasm32-wasi
# (whatever the host compiler is). See docs/guest.md.
#
#   realm_add_wasm_module(NAME SOURCES a.cc b.c ... [INCLUDES dir...] [DEFINES X=1 ...]
#                         [LINK_FLAGS -Wl,... ...])
#
# produces ${CMAKE_BINARY_DIR}/bin/guests/NAME.wasm: a WASI reactor (`_initialize`) that imports
# its memory (`env.memory`), declares a maximum of REALM_WASM_MAX_MEMORY bytes (the host creates
# the memory with the tenant's cap, which must not exceed it) and REALM_WASM_STACK_SIZE bytes of
# stack. The custom target NAME builds it as part of `all`; its target property WASM_FILE holds
# the path (use $<TARGET_PROPERTY:NAME,WASM_FILE> in tests).
#
# Compile: -O3 -msimd128 -fno-exceptions. Link: without -O, because with binaryen installed clang
# runs wasm-opt after linking at -O levels, and `--strip-all` breaks SIMD modules there; debug
# info is dropped with --strip-debug (Debian's wasm32 libc++ carries it: 236 KB -> 33 KB).
#
# When the toolchain is missing, REALM_WASM_AVAILABLE is OFF and realm_add_wasm_module does
# nothing (tests that need a module should check REALM_WASM_AVAILABLE); scripts/setup.sh installs
# it: clang-14 lld-14 wasi-libc libc++-14-dev-wasm32 libc++abi-14-dev-wasm32
# libclang-rt-14-dev-wasm32.

set(REALM_WASM_MAX_MEMORY 4294967296 CACHE STRING
    "Maximum linear memory a guest module declares, bytes (4 GiB = the wasm32 limit: the host's cap decides)")
set(REALM_WASM_STACK_SIZE 262144 CACHE STRING "Guest shadow-stack size in bytes")

find_program(REALM_WASM_CXX NAMES clang++-14 DOC "clang++ used for the wasm32-wasi guests")
find_program(REALM_WASM_CC NAMES clang-14 DOC "clang used for the wasm32-wasi guests")
find_program(REALM_WASM_LD NAMES wasm-ld-14 wasm-ld DOC "lld's wasm linker (clang finds it)")

set(REALM_WASM_AVAILABLE OFF)
if(REALM_WASM_CXX AND REALM_WASM_CC AND REALM_WASM_LD)
  # Probe once: a C++ reactor that uses libc++ must compile and link.
  set(_probe_dir ${CMAKE_BINARY_DIR}/CMakeFiles/wasm-probe)
  file(MAKE_DIRECTORY ${_probe_dir})
  file(WRITE ${_probe_dir}/probe.cc
       "#include <string>\n#include <vector>\n"
       "extern \"C\" __attribute__((export_name(\"probe\"))) int probe() {\n"
       "  std::vector<std::string> v{\"a\"}; return (int)v[0].size(); }\n")
  execute_process(
    COMMAND ${REALM_WASM_CXX} --target=wasm32-wasi -std=c++20 -O1 -fno-exceptions
            -mexec-model=reactor -Wl,--import-memory ${_probe_dir}/probe.cc -o ${_probe_dir}/probe.wasm
    RESULT_VARIABLE _probe_rc OUTPUT_QUIET ERROR_VARIABLE _probe_err)
  if(_probe_rc EQUAL 0)
    set(REALM_WASM_AVAILABLE ON)
  else()
    message(WARNING "wasm32-wasi toolchain unusable, guest modules are skipped "
                    "(run scripts/setup.sh): ${_probe_err}")
  endif()
else()
  message(WARNING "clang-14/wasm-ld not found: wasm guest modules are skipped (run scripts/setup.sh)")
endif()
message(STATUS "wasm32 guests: ${REALM_WASM_AVAILABLE}")

set(REALM_WASM_COMPILE_FLAGS --target=wasm32-wasi -O3 -msimd128 -fno-exceptions -fvisibility=hidden
                             -Wall -Wextra -Wno-unused-parameter)
set(REALM_WASM_GUEST_DIR ${CMAKE_BINARY_DIR}/bin/guests)

function(realm_add_wasm_module name)
  cmake_parse_arguments(W "" "" "SOURCES;INCLUDES;DEFINES;LINK_FLAGS" ${ARGN})
  if(NOT REALM_WASM_AVAILABLE)
    return()
  endif()
  if(NOT W_SOURCES)
    message(FATAL_ERROR "realm_add_wasm_module(${name}): no SOURCES")
  endif()
  set(launcher)
  if(CCACHE_PROGRAM)
    set(launcher ${CCACHE_PROGRAM})
  endif()
  set(inc_flags -I${CMAKE_SOURCE_DIR}/src)
  foreach(dir IN LISTS W_INCLUDES)
    get_filename_component(dir "${dir}" ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    list(APPEND inc_flags -I${dir})
  endforeach()
  set(def_flags -DREALM_GUEST=1)
  foreach(def IN LISTS W_DEFINES)
    list(APPEND def_flags -D${def})
  endforeach()

  set(obj_dir ${CMAKE_CURRENT_BINARY_DIR}/wasm/${name})
  set(objects)
  foreach(src IN LISTS W_SOURCES)
    get_filename_component(src_abs "${src}" ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    file(RELATIVE_PATH rel ${CMAKE_SOURCE_DIR} ${src_abs})
    string(REGEX REPLACE "[/.]" "_" obj_name "${rel}")
    set(obj ${obj_dir}/${obj_name}.o)
    if(src_abs MATCHES "\\.c$")
      set(compiler ${REALM_WASM_CC})
      set(std_flag -std=c11)
    else()
      set(compiler ${REALM_WASM_CXX})
      set(std_flag -std=c++20)
    endif()
    add_custom_command(
      OUTPUT ${obj}
      COMMAND ${launcher} ${compiler} ${REALM_WASM_COMPILE_FLAGS} ${std_flag} ${def_flags}
              ${inc_flags} -MD -MF ${obj}.d -c ${src_abs} -o ${obj}
      DEPENDS ${src_abs}
      DEPFILE ${obj}.d
      COMMENT "wasm32 compile ${rel}"
      VERBATIM COMMAND_EXPAND_LISTS)
    list(APPEND objects ${obj})
  endforeach()

  set(out ${REALM_WASM_GUEST_DIR}/${name}.wasm)
  # No -O here (see above); --strip-debug keeps the module small, names stay for trap messages.
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${REALM_WASM_GUEST_DIR}
    COMMAND ${REALM_WASM_CXX} --target=wasm32-wasi -mexec-model=reactor -Wl,--import-memory
            -Wl,--max-memory=${REALM_WASM_MAX_MEMORY} -Wl,-z,stack-size=${REALM_WASM_STACK_SIZE}
            -Wl,--strip-debug ${W_LINK_FLAGS} ${objects} -o ${out}
    DEPENDS ${objects}
    COMMENT "wasm32 link bin/guests/${name}.wasm"
    VERBATIM COMMAND_EXPAND_LISTS)
  add_custom_target(${name} ALL DEPENDS ${out})
  set_target_properties(${name} PROPERTIES WASM_FILE ${out})
endfunction()
