#!/usr/bin/env bash
# Installs every Debian package that ipcpp's build, tests and interoperability tests need.
# Idempotent: packages already present are left alone. Runs as root on Debian 12
# (or through sudo when run as another user).
set -euo pipefail

packages=(
  # toolchain
  build-essential g++ cmake ninja-build pkg-config git clang-format
  # libraries
  libzmq3-dev cppzmq-dev nlohmann-json3-dev libcli11-dev doctest-dev
  libssl-dev libsqlite3-dev libspdlog-dev
  # ipcpp-controller's malloc (tools/CMakeLists.txt)
  libjemalloc-dev
  # interoperability tests: the reference ipyparallel / jupyter_client under /usr/bin/python3
  python3 python3-ipyparallel python3-jupyter-client python3-zmq
  # helpers used by tests
  procps
  # the launchers' tests: a real sshd and ssh, Open MPI's and MPICH's mpiexec, a single-node
  # Slurm
  openssh-server openssh-client openmpi-bin mpich slurmctld slurmd slurm-client munge
  # the scaling example's plot (examples/scaling.cpp; optional at run time)
  gnuplot-nox
)

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    exec sudo --preserve-env=DEBIAN_FRONTEND "$0" "$@"
  fi
  echo "install-deps.sh: must run as root (or with sudo available)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps.sh: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "install-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps.sh: done"
