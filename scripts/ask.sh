#!/usr/bin/env bash
# The main job in one command: install (first run only), build the index (first run
# only), and ask the bundled corpus a question. Usage: scripts/ask.sh ["질문"]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
question=${1:-"용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?"}
exec .venv/bin/rag ask "$question"
