#!/bin/sh
# Stand-in for Concertim's metric reporting daemon: Concertim-shaped RRD
# files (unspecified/device:<uuid>/<metric>.rrd and __SummaryInfo__), one
# `rrdtool update` per file every 15 seconds, as the real writer does.
#
#   RRD_DIR    where the tree goes (default /var/lib/metric-reporting-daemon/rrds)
#   DEVICES    how many devices (default 5)
#   ONCE=1     create the files, update each once, and exit (tests use it)
set -eu
dir=${RRD_DIR:-/var/lib/metric-reporting-daemon/rrds}
devices=${DEVICES:-5}

mkrrd() { # file ds-count
  [ -e "$1" ] && return 0
  ds="DS:sum:GAUGE:120:U:U"
  [ "$2" = 2 ] && ds="DS:sum:GAUGE:120:U:U DS:num:GAUGE:120:U:U"
  # shellcheck disable=SC2086
  rrdtool create "$1" --step 15 $ds \
    RRA:AVERAGE:0.5:1:240 RRA:AVERAGE:0.5:20:288 RRA:AVERAGE:0.5:240:2160 \
    RRA:MIN:0.5:1:240 RRA:MIN:0.5:20:288 RRA:MIN:0.5:240:2160 \
    RRA:MAX:0.5:1:240 RRA:MAX:0.5:20:288 RRA:MAX:0.5:240:2160
}

mkdir -p "$dir/unspecified/__SummaryInfo__"
i=1
while [ "$i" -le "$devices" ]; do
  dev="$dir/unspecified/device:$(printf '%08d' "$i")-0000-4000-8000-000000000000"
  mkdir -p "$dev"
  for metric in "cpu load" "mem used" "net:rx"; do mkrrd "$dev/$metric.rrd" 1; done
  i=$((i + 1))
done
mkrrd "$dir/unspecified/__SummaryInfo__/power.rrd" 2

while :; do
  now=$(date +%s)
  find "$dir" -name '*.rrd' -type f | while IFS= read -r f; do
    case "$f" in
      */power.rrd) rrdtool update "$f" "$now:$((now % 97)):$((now % 13))" ;;
      *) rrdtool update "$f" "$now:$((now % 89))" ;;
    esac
  done
  [ "${ONCE:-}" = 1 ] && exit 0
  sleep 15
done
