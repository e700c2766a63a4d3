#!/usr/bin/env bash
# Benchmarks ccbackup against the shell baselines, side by side in one run.
#
#   bash scripts/bench.sh [backup|rowcount|rrd|restore|crypto|parallel|all]   (default: all)
#
# backup:  a >= 1 GB database of mixed rows; alternately `ccbackup run-now`
#          to a file:// store and `pg_dump -Fc -Z0 DB | zstd -3 -T1 > FILE`;
#          median wall times, the ratio of the medians, the median of
#          the per-pair ratios and ccbackup's peak RSS. The table is frozen
#          and checkpointed first and one unmeasured pair warms the cache.
# rowcount: the same database backed up by `ccbackup run-now` with
#          row_counts on (the default: rows counted in the dump stream) and
#          off, alternately; the ratio is on/off (target: <= 1.02, counting
#          must cost nearly nothing and the server nothing).
# rrd:     5,000 and 50,000 Concertim-sized RRD files (the range Concertim
#          sites reach); `ccbackup run-now` (rrd source) against
#          `tar -cf - DIR | zstd -3 -T1 > FILE`.
# parallel: four databases of about 250 MB each; `ccbackup run-now` with
#          `postgres.parallel: 1` against the shell dumping them one after
#          another, and `parallel: 4` against the shell dumping all four at
#          once (`&` + `wait`), each `pg_dump -Fc -Z0 | zstd -3 -T1`.
# restore: the backup's dump restored by `ccbackup restore` (which creates
#          the target database) against `createdb; zstd -dc FILE |
#          pg_restore -d DB`, and with --jobs 2 against `createdb; zstd -d
#          FILE; pg_restore -j2` (and, for reference, a bare pg_restore -j2
#          of an already decompressed file).
# crypto:  the same database backed up (`run-now`) and restored (`restore
#          --jobs 1`) plain and encrypted to an age recipient, alternately;
#          the ratio is encrypted/plain (target: <= 1.05 for both).
#
# Environment: BENCH_DIR (default /var/tmp/ccbackup-bench), BENCH_REPS (5),
# BENCH_DB_ROWS (4200000 rows, about 1.1 GB), BENCH_RRD_SIZES ("5000 50000"),
# BENCH_PAR_ROWS (1000000 rows per database, about 250 MB).
# Timing belongs here, never in tests.
#
# Every case also adds a row to one markdown table (case, ccbackup,
# baseline, ratio of medians, per-pair ratio, peak RSS, machine, date),
# printed at the end and kept in $BENCH_DIR/table.md: that table is what
# docs/benchmarks.md shows as the current one.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
dir=${BENCH_DIR:-/var/tmp/ccbackup-bench}
reps=${BENCH_REPS:-5}
rows=${BENCH_DB_ROWS:-4200000}
rrd_sizes=${BENCH_RRD_SIZES:-5000 50000}
par_rows=${BENCH_PAR_ROWS:-1000000}
db=ccbackup_bench

bash scripts/prereqs.sh >/dev/null
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
cargo build --release --locked -q
bin=$(pwd)/target/release/ccbackup
mkdir -p "$dir"
table=$dir/table.md
machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%d GiB", $2 / 1048576 + 0.5}' /proc/meminfo)"
printf '| case | ccbackup (median) | baseline (median) | ratio | per-pair ratio (median, middle half) | ccbackup peak RSS | machine | date |\n|---|---|---|---|---|---|---|---|\n' > "$table"
pg() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres "$@"; }

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a/b}'; }

# Runs a command under GNU time; prints "<wall seconds> <max rss KiB>".
timed() {
  local t0 t1 rss
  t0=$(now)
  /usr/bin/time -f '%M' -o "$dir/.rss" "$@" >/dev/null 2>"$dir/.err" || { cat "$dir/.err" >&2; return 1; }
  t1=$(now)
  rss=$(tail -1 "$dir/.rss")
  echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b-a}') $rss"
}

report() { # name ccbackup-times baseline-times rss-list baseline-label
  local c b r pairs
  c=$(tr ' ' '\n' <<<"$2" | grep . | median)
  b=$(tr ' ' '\n' <<<"$3" | grep . | median)
  r=$(tr ' ' '\n' <<<"$4" | grep . | sort -n | tail -1)
  # Runs alternate, so rep i of each side ran under the same conditions;
  # the ratios of those pairs cancel the machine's drift, which on a
  # shared VM moves single runs by 10-20%.
  pairs=$(paste <(tr ' ' '\n' <<<"$2" | grep .) <(tr ' ' '\n' <<<"$3" | grep .) |
    awk '{printf "%.4f\n", $1/$2}' | sort -g)
  printf '\n%s (%s runs each, alternating)\n' "$1" "$reps"
  printf '  %-44s median %8.2f s   runs: %s\n' "ccbackup" "$c" "$2"
  printf '  %-44s median %8.2f s   runs: %s\n' "$5" "$b" "$3"
  printf '  ratio ccbackup/baseline: %s    ccbackup peak RSS: %s MiB\n' "$(ratio "$c" "$b")" "$((r / 1024))"
  awk '{a[NR]=$1} END {m = (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2);
       printf "  per-pair ratios: median %.3f, middle half %.3f to %.3f, all %.3f to %.3f\n",
              m, a[int((NR+3)/4)], a[int((3*NR+3)/4)], a[1], a[NR]}' <<<"$pairs"
  local pp
  pp=$(awk '{a[NR]=$1} END {m = (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2);
       printf "%.3f (%.3f-%.3f)", m, a[int((NR+3)/4)], a[int((3*NR+3)/4)]}' <<<"$pairs")
  printf '| %s | %.2f s | %.2f s (`%s`) | %s | %s | %s MiB | %s | %s |\n' \
    "$1" "$c" "$b" "${5//|/\\|}" "$(ratio "$c" "$b")" "$pp" "$((r / 1024))" "$machine" "$(date -u +%F)" >> "$table"
}

ensure_db() {
  local have
  have=$(pg -d postgres -Atc "SELECT count(*) FROM pg_database WHERE datname = '$db'")
  if [ "$have" = 1 ] && [ "$(pg -d "$db" -Atc "SELECT count(*) FROM bench.items" 2>/dev/null || echo 0)" = "$rows" ]; then
    settle_db
    return
  fi
  echo "generating $db with $rows mixed rows (takes a few minutes)"
  pg -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  pg -d "$db" <<SQL
CREATE SCHEMA bench;
CREATE TABLE bench.items (
  id bigint PRIMARY KEY, name text, digest text, amount numeric(12,2), ratio float8,
  created timestamptz, doc jsonb, note text);
INSERT INTO bench.items
SELECT g, 'item-' || g, md5(g::text), (g % 100000) / 100.0, random(),
       now() - (g || ' seconds')::interval,
       jsonb_build_object('g', g, 'tags', jsonb_build_array('a' || (g % 97), 'b' || (g % 13)), 'ok', g % 2 = 0),
       repeat(md5((g * 7)::text), 1 + g % 3)
FROM generate_series(1, $rows) g;
SQL
  settle_db
}

# Freezes and checkpoints the table so no rep pays for hint-bit writes,
# autovacuum does not start in the middle of the runs, and every run reads
# the same pages. Cheap when there is nothing left to do.
settle_db() {
  pg -d "$db" -c "VACUUM (FREEZE, ANALYZE) bench.items" -c "CHECKPOINT"
}

bench_backup() {
  ensure_db
  echo "database size: $(pg -d "$db" -Atc "SELECT pg_size_pretty(pg_database_size('$db'))")"
  cat > "$dir/backup.yaml" <<YAML
store:
  url: file://$dir/store
jobs:
  - name: bench
    sources:
      - name: db
        postgres: {host: 127.0.0.1, port: 5432, user: postgres, databases: [$db], globals: false}
YAML
  local c="" b="" r="" out
  # One unmeasured pair first: the first run after generating or a restart
  # reads the table into the page cache for both sides.
  rm -rf "$dir/store"
  timed "$bin" --config "$dir/backup.yaml" --log-format json run-now >/dev/null
  timed sh -c "pg_dump -h 127.0.0.1 -U postgres -Fc -Z0 $db | zstd -q -3 -T1 > '$dir/baseline.dump.zst'" >/dev/null
  for i in $(seq 1 "$reps"); do
    rm -rf "$dir/store"
    out=$(timed "$bin" --config "$dir/backup.yaml" --log-format json run-now); c="$c ${out% *}"; r="$r ${out#* }"
    out=$(timed sh -c "pg_dump -h 127.0.0.1 -U postgres -Fc -Z0 $db | zstd -q -3 -T1 > '$dir/baseline.dump.zst'"); b="$b ${out% *}"
    echo "  rep $i done"
  done
  report "backup of $db" "$c" "$b" "$r" "pg_dump -Fc -Z0 | zstd -3 -T1 > FILE"
  echo "  sizes: ccbackup $(du -sb "$dir/store" | cut -f1) B, baseline $(stat -c %s "$dir/baseline.dump.zst") B"
}

bench_rowcount() {
  ensure_db
  local src="postgres: {host: 127.0.0.1, port: 5432, user: postgres, databases: [$db], globals: false"
  for mode in on off; do
    local flag=true
    [ "$mode" = off ] && flag=false
    cat > "$dir/rowcount-$mode.yaml" <<YAML
store:
  url: file://$dir/rowcount-$mode-store
jobs:
  - name: bench
    sources:
      - name: db
        $src, row_counts: $flag}
YAML
  done
  local on="" off="" r="" out
  for i in $(seq 1 "$reps"); do
    rm -rf "$dir/rowcount-on-store" "$dir/rowcount-off-store"
    out=$(timed "$bin" --config "$dir/rowcount-on.yaml" --log-format json run-now); on="$on ${out% *}"; r="$r ${out#* }"
    out=$(timed "$bin" --config "$dir/rowcount-off.yaml" --log-format json run-now); off="$off ${out% *}"
    echo "  rep $i done"
  done
  report "backup of $db, row counts on (ratio: on/off)" "$on" "$off" "$r" "ccbackup run-now, row_counts: false"
  local tables
  tables=$( (find "$dir/rowcount-on-store" -name manifest.json -exec grep -ho '"rows": *[0-9]*' {} + || true) | tr '\n' ' ')
  echo "  recorded counts: ${tables:-none}"
}

ensure_rrds() { # count
  local nrrd=$1 root=$dir/rrds-$1 n
  n=$( (find "$root" -name '*.rrd' 2>/dev/null || true) | wc -l)
  [ "$n" = "$nrrd" ] && return
  echo "creating $nrrd RRD files (copies of a few rrdtool-made templates)"
  rm -rf "$root"; mkdir -p "$root/unspecified/__SummaryInfo__" "$dir/tpl"
  local start=$(( $(date +%s) - 86400 ))
  for t in 0 1 2 3 4 5 6 7; do
    rrdtool create "$dir/tpl/$t.rrd" --start "$start" --step 15 DS:sum:GAUGE:120:U:U \
      RRA:AVERAGE:0.5:1:240 RRA:AVERAGE:0.5:20:288 RRA:AVERAGE:0.5:240:2160 \
      RRA:MIN:0.5:1:240 RRA:MIN:0.5:20:288 RRA:MIN:0.5:240:2160 \
      RRA:MAX:0.5:1:240 RRA:MAX:0.5:20:288 RRA:MAX:0.5:240:2160
    # A day of samples so the archives hold varied data, not zeros.
    seq 1 400 | awk -v s="$start" -v t="$t" '{printf "%d:%f ", s + $1 * 15, sin($1 / (10 + t)) * 100 + t}' |
      xargs -n 200 rrdtool update "$dir/tpl/$t.rrd"
  done
  local per=10 d=0 i=0
  while [ "$i" -lt "$nrrd" ]; do
    local dev="$root/unspecified/device:$(printf '%08x' "$d")-aaaa-4bbb-8ccc-dddddddddddd"
    mkdir -p "$dev"
    for m in $(seq 1 $per); do
      [ "$i" -ge "$nrrd" ] && break
      cp "$dir/tpl/$((i % 8)).rrd" "$dev/metric $m: load.rrd"
      i=$((i + 1))
    done
    d=$((d + 1))
  done
}

bench_rrd() {
  local n
  for n in $rrd_sizes; do bench_rrd_tree "$n"; done
}

bench_rrd_tree() { # count
  local nrrd=$1
  ensure_rrds "$nrrd"
  cat > "$dir/rrd.yaml" <<YAML
store:
  url: file://$dir/rrdstore
jobs:
  - name: rrd
    sources:
      - name: rrd
        rrd: {path: $dir/rrds-$nrrd}
YAML
  # Warm the page cache so both sides read from memory.
  tar -cf - -C "$dir" "rrds-$nrrd" | cat > /dev/null
  local c="" b="" r="" out
  for i in $(seq 1 "$reps"); do
    rm -rf "$dir/rrdstore"
    out=$(timed "$bin" --config "$dir/rrd.yaml" --log-format json run-now); c="$c ${out% *}"; r="$r ${out#* }"
    out=$(timed sh -c "tar -cf - -C '$dir' rrds-$nrrd | zstd -q -3 -T1 > '$dir/baseline.tar.zst'"); b="$b ${out% *}"
    echo "  rep $i done"
  done
  report "archive of $nrrd RRD files" "$c" "$b" "$r" "tar -cf - DIR | zstd -3 -T1 > FILE"
}

bench_restore() {
  ensure_db
  [ -f "$dir/backup.yaml" ] || bench_backup
  [ -d "$dir/store" ] || "$bin" --config "$dir/backup.yaml" run-now >/dev/null
  [ -f "$dir/baseline.dump.zst" ] || pg_dump -h 127.0.0.1 -U postgres -Fc -Z0 "$db" | zstd -q -3 -T1 > "$dir/baseline.dump.zst"
  zstd -q -d -f "$dir/baseline.dump.zst" -o "$dir/baseline.dump"
  local t=${db}_restore
  local c1="" b1="" c2="" b2="" p2="" r="" out
  # Baselines start from the same place ccbackup does: a compressed dump and
  # no target database, so they include `createdb` (and, for -j2, the
  # decompression pg_restore -j needs). The bare `pg_restore -j2` of an
  # already decompressed file is shown too, for reference.
  local mk="createdb -h 127.0.0.1 -U postgres -T template0 $t"
  restore_j2_ccbackup() {
    pg -d postgres -c "DROP DATABASE IF EXISTS $t WITH (FORCE)"
    out=$(timed "$bin" --config "$dir/backup.yaml" --log-format json restore --source db --target-db "$t" --jobs 2 --staging-dir "$dir"); c2="$c2 ${out% *}"
  }
  restore_j2_baseline() {
    pg -d postgres -c "DROP DATABASE IF EXISTS $t WITH (FORCE)"
    out=$(timed sh -c "$mk && zstd -q -d -f '$dir/baseline.dump.zst' -o '$dir/tmp.dump' && pg_restore -h 127.0.0.1 -U postgres --exit-on-error -j 2 -d $t '$dir/tmp.dump'; rc=\$?; rm -f '$dir/tmp.dump'; exit \$rc"); b2="$b2 ${out% *}"
  }
  for i in $(seq 1 "$reps"); do
    pg -d postgres -c "DROP DATABASE IF EXISTS $t WITH (FORCE)"
    out=$(timed "$bin" --config "$dir/backup.yaml" --log-format json restore --source db --target-db "$t" --staging-dir "$dir"); c1="$c1 ${out% *}"; r="$r ${out#* }"
    pg -d postgres -c "DROP DATABASE IF EXISTS $t WITH (FORCE)"
    out=$(timed sh -c "$mk && zstd -q -dc '$dir/baseline.dump.zst' | pg_restore -h 127.0.0.1 -U postgres --exit-on-error -d $t"); b1="$b1 ${out% *}"
    # Whichever of the two --jobs 2 runs goes second starts right after the
    # other deleted its 1.09 GB decompressed file, with that much page cache
    # free to write its own (single runs showed the decompression step
    # several times faster then), so the order alternates from rep to rep.
    if [ $((i % 2)) = 1 ]; then
      restore_j2_ccbackup; restore_j2_baseline
    else
      restore_j2_baseline; restore_j2_ccbackup
    fi
    pg -d postgres -c "DROP DATABASE IF EXISTS $t WITH (FORCE)" -c "CREATE DATABASE $t TEMPLATE template0"
    out=$(timed pg_restore -h 127.0.0.1 -U postgres --exit-on-error -j 2 -d "$t" "$dir/baseline.dump"); p2="$p2 ${out% *}"
    echo "  rep $i done"
  done
  pg -d postgres -c "DROP DATABASE IF EXISTS $t WITH (FORCE)"
  report "restore of $db (--jobs 1)" "$c1" "$b1" "$r" "createdb; zstd -dc FILE | pg_restore -d DB"
  report "restore of $db (--jobs 2)" "$c2" "$b2" "$r" "createdb; zstd -d FILE; pg_restore -j2"
  report "restore of $db (--jobs 2, reference)" "$c2" "$p2" "$r" "pg_restore -j2 of a decompressed file"
}

bench_crypto() {
  ensure_db
  rm -rf "$dir/keys"
  "$bin" keys generate "$dir/keys" >/dev/null
  local pg_src="postgres: {host: 127.0.0.1, port: 5432, user: postgres, databases: [$db], globals: false}"
  cat > "$dir/plain.yaml" <<YAML
store:
  url: file://$dir/plainstore
jobs:
  - name: bench
    sources:
      - name: db
        $pg_src
YAML
  cat > "$dir/enc.yaml" <<YAML
store:
  url: file://$dir/encstore
encryption:
  recipients: ["$(cat "$dir/keys/age-recipient.txt")"]
  identity_file: $dir/keys/age-identity.txt
jobs:
  - name: bench
    sources:
      - name: db
        $pg_src
YAML
  local t=${db}_crypto
  local cp="" ce="" r="" rp="" re="" rr="" out
  for i in $(seq 1 "$reps"); do
    rm -rf "$dir/plainstore" "$dir/encstore"
    out=$(timed "$bin" --config "$dir/plain.yaml" --log-format json run-now); cp="$cp ${out% *}"
    out=$(timed "$bin" --config "$dir/enc.yaml" --log-format json run-now); ce="$ce ${out% *}"; r="$r ${out#* }"
    pg -d postgres -c "DROP DATABASE IF EXISTS $t WITH (FORCE)"
    out=$(timed "$bin" --config "$dir/plain.yaml" --log-format json restore --source db --target-db "$t"); rp="$rp ${out% *}"
    pg -d postgres -c "DROP DATABASE IF EXISTS $t WITH (FORCE)"
    out=$(timed "$bin" --config "$dir/enc.yaml" --log-format json restore --source db --target-db "$t"); re="$re ${out% *}"; rr="$rr ${out#* }"
    echo "  rep $i done"
  done
  pg -d postgres -c "DROP DATABASE IF EXISTS $t WITH (FORCE)"
  report "encrypted backup of $db (ratio: encrypted/plain)" "$ce" "$cp" "$r" "plain ccbackup run-now"
  report "encrypted restore of $db, --jobs 1 (ratio: encrypted/plain)" "$re" "$rp" "$rr" "plain ccbackup restore"
  echo "  stored: plain $(du -sb "$dir/plainstore" | cut -f1) B, encrypted $(du -sb "$dir/encstore" | cut -f1) B"
}

ensure_par_dbs() {
  local i have
  for i in 1 2 3 4; do
    have=$(pg -d "${db}_p$i" -Atc "SELECT count(*) FROM bench.items" 2>/dev/null || echo 0)
    if [ "$have" != "$par_rows" ]; then
      echo "generating ${db}_p$i with $par_rows rows"
      pg -d postgres -c "DROP DATABASE IF EXISTS ${db}_p$i WITH (FORCE)" -c "CREATE DATABASE ${db}_p$i"
      pg -d "${db}_p$i" <<SQL
CREATE SCHEMA bench;
CREATE TABLE bench.items (
  id bigint PRIMARY KEY, name text, digest text, amount numeric(12,2), ratio float8,
  created timestamptz, doc jsonb, note text);
INSERT INTO bench.items
SELECT g, 'item-' || g, md5((g + $i)::text), (g % 100000) / 100.0, random(),
       now() - (g || ' seconds')::interval,
       jsonb_build_object('g', g, 'tags', jsonb_build_array('a' || (g % 97), 'b' || (g % 13)), 'ok', g % 2 = 0),
       repeat(md5((g * 7)::text), 1 + g % 3)
FROM generate_series(1, $par_rows) g;
SQL
    fi
    pg -d "${db}_p$i" -c "VACUUM (FREEZE, ANALYZE) bench.items" -c "CHECKPOINT"
  done
}

bench_parallel() {
  ensure_par_dbs
  local n list="${db}_p1, ${db}_p2, ${db}_p3, ${db}_p4"
  for n in 1 4; do
    cat > "$dir/par$n.yaml" <<YAML
store:
  url: file://$dir/parstore
jobs:
  - name: par
    sources:
      - name: db
        postgres: {host: 127.0.0.1, port: 5432, user: postgres, databases: [$list], globals: false, parallel: $n}
YAML
  done
  local one="pg_dump -h 127.0.0.1 -U postgres -Fc -Z0"
  local seq_sh="for i in 1 2 3 4; do $one ${db}_p\$i | zstd -q -3 -T1 > '$dir/par'\$i.zst; done"
  local par_sh="for i in 1 2 3 4; do $one ${db}_p\$i | zstd -q -3 -T1 > '$dir/par'\$i.zst & done; wait"
  local c1="" b1="" c4="" b4="" r="" out
  rm -rf "$dir/parstore"; timed "$bin" --config "$dir/par1.yaml" --log-format json run-now >/dev/null
  for i in $(seq 1 "$reps"); do
    rm -rf "$dir/parstore"
    out=$(timed "$bin" --config "$dir/par1.yaml" --log-format json run-now); c1="$c1 ${out% *}"; r="$r ${out#* }"
    out=$(timed sh -c "$seq_sh"); b1="$b1 ${out% *}"
    rm -rf "$dir/parstore"
    out=$(timed "$bin" --config "$dir/par4.yaml" --log-format json run-now); c4="$c4 ${out% *}"; r="$r ${out#* }"
    out=$(timed sh -c "$par_sh"); b4="$b4 ${out% *}"
    echo "  rep $i done"
  done
  report "4 databases of ~250 MB, parallel: 1" "$c1" "$b1" "$r" "one pg_dump | zstd after another"
  report "4 databases of ~250 MB, parallel: 4" "$c4" "$b4" "$r" "4 x pg_dump | zstd & wait"
}

case "$what" in
  backup) bench_backup ;;
  rowcount) bench_rowcount ;;
  rrd) bench_rrd ;;
  restore) bench_restore ;;
  crypto) bench_crypto ;;
  parallel) bench_parallel ;;
  all) bench_backup; bench_rowcount; bench_rrd; bench_restore; bench_crypto; bench_parallel ;;
  *) echo "usage: $0 [backup|rowcount|rrd|restore|crypto|parallel|all]" >&2; exit 2 ;;
esac

printf '\nCurrent table (also in %s):\n\n' "$table"
cat "$table"
