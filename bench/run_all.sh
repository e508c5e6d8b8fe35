#!/usr/bin/env bash
# Runs every benchmark in bench/ one after the other (about 30 minutes on 2 cores), each
# against its own fresh PostgreSQL database (TALLY_BENCH_POSTGRES, default
# postgresql://postgres@127.0.0.1:5432/postgres), and saves each one's output under
# bench/results/ (or $BENCH_RESULTS). Exits non-zero when a benchmark's correctness check
# failed; a missed performance target is reported, not failed.
#
#   bash bench/run_all.sh            # or: make bench
set -uo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
results=${BENCH_RESULTS:-bench/results}
mkdir -p "$results"
status=0
run() {
    local name=$1
    shift
    echo "=== $name: $python bench/$name.py $* ==="
    if ! timeout 3600 "$python" "bench/$name.py" "$@" 2>&1 | tee "$results/$name.txt"; then
        echo "=== $name FAILED ==="
        status=1
    fi
}
run consume_http --sweep 16,32,64,128,256
run batch_ingest
run usage_stats
run page_query
echo "=== summaries ==="
for name in consume_http batch_ingest usage_stats page_query; do
    sed -n '/^$/,$p' "$results/$name.txt"
done
exit $status
