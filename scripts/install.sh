#!/usr/bin/env bash
# Set up ovss-bench in ./.venv. Usage: scripts/install.sh [--test]
#   TORCH_SPEC   torch requirement to install first (default torch==2.13.0: the CPU wheel on machines
#                without CUDA here; on a GPU machine install your CUDA build of torch into .venv first
#                and set TORCH_SPEC=skip).
# WordNet (for ActiveSAM's hypernym tokens) comes from Debian's wordnet packages when this runs as root
# with apt-get; otherwise the hypernym table shipped in the package is used.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[[ "${1:-}" == "--test" ]] && extras="[test]"
export PIP_DISABLE_PIP_VERSION_CHECK=1
[[ -x .venv/bin/python ]] || python3 -m venv .venv
if [[ "${TORCH_SPEC:-}" != "skip" ]]; then
    .venv/bin/pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
.venv/bin/pip install -q -e ".${extras}"
if [[ ! -f /usr/share/wordnet/data.noun ]] && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base wordnet-sense-index) \
        >/dev/null 2>&1 || echo "install.sh: WordNet packages not installed; the shipped hypernym table will be used" >&2
fi
echo "install.sh: ready (.venv)"
