# Warnings for ipcpp's own targets. An INTERFACE target that is never exported:
# consumers of the installed package do not inherit our warning flags.
add_library(ipcpp_warnings INTERFACE)
target_compile_options(ipcpp_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wnon-virtual-dtor
  -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wnull-dereference -Wformat=2
  -Wimplicit-fallthrough
  # Designated initializers of options structs leave the other members at their defaults
  # on purpose; g++ 12 warns about that under -Wextra.
  -Wno-missing-field-initializers
  $<$<BOOL:${IPCPP_WARNINGS_AS_ERRORS}>:-Werror>)
