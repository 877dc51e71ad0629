#!/usr/bin/env bash
# Every GPU benchmark in one call, for a lent GPU machine whose time is short:
#   1. evaluation speed, K = 5000 on the MNIST test set (eval_speed.py --device cuda),
#   2. the MNIST NLL table: the four rows train at once, each for MINUTES of wall time
#      (mnist_nll.py --max-minutes), then K = 5000 on the test set,
#   3. the captured training step (issue 21): the CUDA tests of tests/test_graph_step.py (a
#      train.graph=on run equals the eager run), then throughput.py with vaekit (the CUDA graph step)
#      against vaekit-eager (train.graph=false), the plain loop and pythae: MLP and conv at batch 128,
#      the MLP at batch 20 and in bf16, then the 5-epoch test-ELBO check of the MLP (9.5 min at most),
#   4. training throughput against the plain loop and pythae (throughput.py, one round).
# Each stage has its own time limit, so one that fails or hangs leaves the others their time.
#
#   bash benchmarks/gpu_checks.sh [MINUTES] [MLP_RUN]
#   STAGES="graph" bash benchmarks/gpu_checks.sh      # only some stages: eval_speed mnist_nll graph throughput
#   SMOKE=1 STAGES="graph" bash benchmarks/gpu_checks.sh   # a few steps each, also on a CPU (results in /tmp)
#
# MLP_RUN: a trained mnist-mlp run folder for the evaluation-speed weights (default: untrained).
# Results: benchmarks/results/{eval_speed,throughput}-gpu.json, throughput-gpu-graph-*.json and
# mnist_nll_gpu-ROW.json; logs in $LOGS (default /tmp/vaekit-gpu-logs); both are also copied to $OUT
# when it is set (a lent machine's output folder). MNIST comes from ../shared/data or VAEKIT_MNIST_NPZ.
set -uo pipefail
cd "$(dirname "$0")"
MINUTES=${1:-4}
RUN=${2:-}
LOGS=${LOGS:-/tmp/vaekit-gpu-logs}
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/../src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
STAGES=${STAGES:-eval_speed mnist_nll graph throughput}
SMOKE=${SMOKE:-}
want() { [[ " $STAGES " == *" $1 "* ]]; }

stage() {  # stage NAME SECONDS COMMAND...: run with a limit, log to $LOGS/NAME.log, print its tail
    local name=$1 limit=$2 t0=$SECONDS
    shift 2
    timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1
    echo "== $name: exit $? after $((SECONDS - t0)) s"
    tail -n 25 "$LOGS/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"

if want graph; then
    if [[ -n $SMOKE ]]; then  # a few steps of every call, results under /tmp: the script runs end to end
        steps=(--steps 10 --reps 1) res=/tmp/throughput-graph x=4  # no ELBO check; a CPU's time limits
    else
        steps=(--steps 300 --reps 1) res=throughput-gpu-graph x=1
    fi
    stage graph_tests $((120 * x)) "$PY" -m pytest -p no:cacheprovider -q ../tests/test_graph_step.py -k on_cuda
    stage graph_b128 $((180 * x)) "$PY" throughput.py "${steps[@]}" --elbo-epochs 0 \
        --systems vaekit vaekit-eager plain pythae --out "$res-b128"
    stage graph_b20 $((80 * x)) "$PY" throughput.py "${steps[@]}" --elbo-epochs 0 --models mlp --batch 20 \
        --systems vaekit vaekit-eager plain --out "$res-b20"
    stage graph_bf16 $((70 * x)) "$PY" throughput.py "${steps[@]}" --elbo-epochs 0 --models mlp \
        --systems vaekit vaekit-eager plain --vaekit-set train.precision=bf16 --out "$res-bf16"
    [[ -n $SMOKE ]] || stage graph_elbo $((120 * x)) "$PY" throughput.py --steps 10 --reps 1 --models mlp \
        --elbo-epochs 5 --systems vaekit vaekit-eager plain --out "$res-elbo"
fi

want eval_speed && stage eval_speed 120 "$PY" eval_speed.py --device cuda ${RUN:+--run "$RUN"} --loop-examples 1000 \
    --pythae-examples 100 --out eval_speed-gpu

want mnist_nll && {
t0=$SECONDS
limit=$(awk "BEGIN {print int($MINUTES * 60 + 150)}")  # training, then K = 5000 on the test set
for row in vae-1 iwae-1 vae-2 iwae-2; do
    timeout "$limit" "$PY" mnist_nll.py --rows "$row" --epochs 3280 --max-minutes "$MINUTES" --threads 4 \
        --set train.precision=fp32 --set train.progress=false \
        --runs /tmp/mnist_nll_gpu --out "mnist_nll_gpu-$row" >"$LOGS/mnist_nll-$row.log" 2>&1 &
done
wait
echo "== mnist_nll: four rows at once, $((SECONDS - t0)) s"
for row in vae-1 iwae-1 vae-2 iwae-2; do
    tail -n 4 "$LOGS/mnist_nll-$row.log"
done
}

want throughput && stage throughput 200 "$PY" throughput.py --steps 390 --reps 1 --elbo-epochs 0 \
    --systems vaekit plain pythae --out throughput-gpu

if [[ -n ${OUT:-} ]]; then  # a lent machine's output folder: the results and logs come back from there
    cp results/*-gpu*.json "$OUT"/ 2>/dev/null
    cp "$LOGS"/*.log "$OUT"/ 2>/dev/null
    echo "== copied results and logs to $OUT"
fi
