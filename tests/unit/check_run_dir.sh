#!/bin/sh
# check_run_dir.sh RUN_DIR STEPS — a finished run directory holds the resolved config, one
# metrics line per step with a falling loss, the run's log and the weights.
set -eu
dir=$1
steps=$2
for f in config.toml metrics.jsonl train.log model.h5; do
    [ -s "$dir/$f" ] || { echo "missing or empty: $dir/$f"; exit 1; }
done
n=$(wc -l < "$dir/metrics.jsonl")
[ "$n" -eq "$steps" ] || { echo "metrics.jsonl has $n lines, want $steps"; exit 1; }
first=$(head -n 1 "$dir/metrics.jsonl" | sed 's/.*"loss": \([0-9.]*\).*/\1/')
last=$(tail -n 1 "$dir/metrics.jsonl" | sed 's/.*"loss": \([0-9.]*\).*/\1/')
grep -q '"val_loss"' "$dir/metrics.jsonl" || { echo "no validation loss in metrics"; exit 1; }
echo "loss $first -> $last"
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.2) }' || { echo "loss did not fall"; exit 1; }
echo "run directory ok"
