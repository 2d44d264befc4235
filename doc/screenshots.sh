#!/bin/sh
# Screenshots of the built site in a headless browser, to check by eye that
# math renders offline and that figures and their legends are readable.
#
#   sh doc/screenshots.sh [HTML_DIR] [OUT_DIR]
#
# HTML_DIR defaults to doc/_build/html (build it first, see doc/README.md),
# OUT_DIR to doc/_build/screenshots. Needs Debian's chromium
# (apt-get install chromium). The pages are opened from file:// with the
# network switched off, as an offline reader would see them. The PNGs are
# build outputs: do not commit them.
set -eu
html=$(cd "${1:-doc/_build/html}" && pwd)
out=${2:-doc/_build/screenshots}
mkdir -p "$out"
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
    echo "no chromium found: apt-get install chromium" >&2
    exit 1
fi
for page in index annealing performance collapse missing_values; do
    # --virtual-time-budget lets MathJax typeset before the picture is taken;
    # the proxy settings send every network request nowhere.
    "$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
        --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
        --proxy-server="127.0.0.1:9" --proxy-bypass-list="<-loopback>" \
        --virtual-time-budget=10000 --window-size=1400,2400 \
        --screenshot="$out/$page.png" "file://$html/$page.html" 2>/dev/null
    echo "$out/$page.png"
done
