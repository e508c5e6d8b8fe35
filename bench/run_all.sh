#!/usr/bin/env bash
# Runs every benchmark in bench/ one after the other (about 40 minutes on 2 cores), each
# against its own fresh PostgreSQL database (TALLY_BENCH_POSTGRES, default
# postgresql://postgres@127.0.0.1:5432/postgres), saves each one's output under bench/results/
# (or $BENCH_RESULTS), then prints every summary. bench/event_storage.py runs when it exists.
# Exits 1 when a benchmark failed (a correctness check, or it could not run); a missed
# performance target is reported, not failed.
#
#   bash bench/run_all.sh            # or: make bench
set -uo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
results=${BENCH_RESULTS:-bench/results}
mkdir -p "$results"
status=0
ran=()
run() {
    local name=$1
    shift
    ran+=("$name")
    echo "=== $name: $python bench/$name.py $* ==="
    if ! timeout 3600 "$python" "bench/$name.py" "$@" 2>&1 | tee "$results/$name.txt"; then
        echo "=== $name FAILED ===" | tee -a "$results/$name.txt"
        status=1
    fi
}
run consume_http --organizations 1,1000 --sweep 16,32,64,128,256
run batch_ingest
run usage_stats
run page_query
if [ -f bench/event_storage.py ]; then
    run event_storage
fi
echo "=== summaries (outputs in $results/) ==="
for name in "${ran[@]}"; do
    echo "--- $name"
    # the summary follows the output's first empty line; a failure names itself
    awk 'summary || /^$/ { summary = 1; print; next } /FAILED/' "$results/$name.txt"
done
exit $status
