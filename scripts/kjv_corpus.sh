#!/bin/sh
# Write the King James Version of the Bible (1611, public domain; the text of Debian's
# bible-kjv-text package) as one plain-text file, for `actlab audit --data`:
#   sh scripts/kjv_corpus.sh kjv.txt
# It needs apt-get (Debian or Ubuntu) and no root: the packages are unpacked, not installed.
set -eu
out=$(realpath "${1:-kjv.txt}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get download bible-kjv-text bible-kjv >/dev/null
for deb in ./*.deb; do dpkg-deb -x "$deb" root; done
root/usr/bin/bible -p root/usr/lib "gen1:1-rev22:21" > "$out"
wc -c "$out"
