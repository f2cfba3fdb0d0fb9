# IPCPP_SANITIZERS: a comma-separated list passed to -fsanitize= (e.g. "address,undefined").
# Applies to every target of the build, so that the libraries and the tests agree.
set(IPCPP_SANITIZERS "" CACHE STRING "Sanitizers for the whole build, e.g. address,undefined")
if(IPCPP_SANITIZERS)
  message(STATUS "ipcpp: building with -fsanitize=${IPCPP_SANITIZERS}")
  add_compile_options(-fsanitize=${IPCPP_SANITIZERS} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${IPCPP_SANITIZERS})
endif()
