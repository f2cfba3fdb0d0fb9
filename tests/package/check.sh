#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then configures, builds and runs a
# consumer that finds it with find_package(ipcpp).
#   check.sh BUILD_DIR SOURCE_DIR [SANITIZERS]
set -euo pipefail
build=$1 source=$2 sanitizers=${3:-}
work=$(mktemp -d "${TMPDIR:-/tmp}/ipcpp-package-XXXXXX")
pids=()
cleanup() {
  [ ${#pids[@]} -gt 0 ] && { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
flags=()
if [ -n "$sanitizers" ]; then
  flags+=("-DCMAKE_CXX_FLAGS=-fsanitize=$sanitizers" "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=$sanitizers"
         "-DCMAKE_MODULE_LINKER_FLAGS=-fsanitize=$sanitizers")
fi
cmake -S "$source/tests/package" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" "${flags[@]}" >/dev/null
cmake --build "$work/build" >/dev/null
"$work/build/consumer"
# The custom engine lists its own task, the built-ins and those of the loaded library.
listed=$("$work/build/consumer_engine" --profile-dir "$work/profile" \
  --load "$work/build/libconsumer_tasks.so" --list-functions)
for f in consumer_hello consumer_twice getpid; do
  grep -q "^$f	" <<<"$listed" || { echo "check.sh: $f missing from:"; echo "$listed"; exit 1; }
done
grep -q "^consumer_hello	.*\[program\]$" <<<"$listed"

# The installed controller, the custom engine with the task library, and the client program.
"$work/prefix/bin/ipcpp-profile" create --profile-dir "$work/profile" >/dev/null
"$work/prefix/bin/ipcpp-controller" --profile-dir "$work/profile" --ping 200 --log-level warning \
  2>"$work/controller.log" &
pids+=($!)
"$work/build/consumer_engine" --profile-dir "$work/profile" --timeout 30 \
  --load "$work/build/libconsumer_tasks.so" 2>"$work/engine.log" &
pids+=($!)
if ! "$work/build/consumer_client" "$work/profile"; then
  echo "check.sh: the client failed; controller and engine logs:"
  cat "$work/controller.log" "$work/engine.log"
  exit 1
fi
