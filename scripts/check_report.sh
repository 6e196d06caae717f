#!/usr/bin/env bash
# Renders a report's index.html in headless Chromium (Debian's `chromium` package) and saves a
# full-page screenshot, to check that the HTML and its SVG figures render.
#   scripts/check_report.sh REPORT_DIR [OUT.png] [HEIGHT]
set -euo pipefail
dir=${1:?usage: scripts/check_report.sh REPORT_DIR [OUT.png] [HEIGHT]}
out=${2:-$dir/screenshot.png}
height=${3:-6000}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "no chromium found (apt-get install chromium)" >&2; exit 1; }
[ -f "$dir/index.html" ] || { echo "$dir/index.html not found" >&2; exit 1; }
index=$(cd "$dir" && pwd)/index.html
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size=1280,"$height" --screenshot="$out" "file://$index" 2>/dev/null
echo "wrote $out"
