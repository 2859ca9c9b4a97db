#!/bin/sh
# Install the Debian packages named as arguments when any of their programs are
# missing. As root on Debian/Ubuntu this runs apt-get; elsewhere it says in one line
# what to install and exits 2.
set -e
missing=""
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
    echo "cachebench needs these packages; install them with: sudo apt-get install$missing" >&2
    exit 2
fi
