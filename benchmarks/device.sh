#!/usr/bin/env bash
# One GPU session's work, in two commands of under 10 minutes each (the device
# tool's limit), run from the repository root with `.device` carried
# (../shared/device/README.md: wheels and the full MNIST):
#
#   bash benchmarks/device.sh bench    CUDA tests, then every benchmark on CUDA
#   bash benchmarks/device.sh paper    the whole book under the paper profile
#                                       (python -m f1lib.reproduce, as make reproduce)
#
# Logs and results go to $OUT (device.log, bench.log, paper.log, notebook_logs/,
# results.tgz with book/*.ipynb, figures/ and README.md). If the CUDA-graph
# tests fail, `paper` runs the notebooks with cuda_graph=False and says so in
# its log. The device's copy of the checkout has no .git: name the commit, e.g.
#   run(carry=[".device"], command="F1LIB_GIT_COMMIT=<local HEAD> bash benchmarks/device.sh paper")
# and unpack results.tgz here (tar xzf) to commit what it produced.
# Here, without a GPU: OUT=/tmp/out PROFILE=smoke PY=.venv/bin/python bash benchmarks/device.sh paper
set -uo pipefail
cd "$(dirname "$0")/.."
phase=${1:?usage: device.sh bench|paper}
OUT=${OUT:?set OUT to the folder that comes back}
PROFILE=${PROFILE:-paper}
mkdir -p "$OUT"

if [ -d .device ] && ls .device/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .device/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site:$PWD
    gunzip -kf .device/MNIST/raw/*.gz || exit 1
    export F1LIB_DATA=$PWD/.device
fi
py=${PY:-python3}  # here: PY=.venv/bin/python, the Makefile's environment
export F1LIB_GIT_COMMIT=${F1LIB_GIT_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}

{
    date -u +"%Y-%m-%dT%H:%M:%SZ"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
        || echo "no GPU"
    $py -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0])"
    echo "commit $F1LIB_GIT_COMMIT"
} >> "$OUT/device.log"

case $phase in
bench)
    {
        $py -m pytest -q tests/test_cuda.py tests/test_train_runs.py 2>&1 | tail -15
        # one outer loop of 600 steps against two, twice each: about 2 minutes on an H100
        echo "== benchmarks/smnist.py"; time $py benchmarks/smnist.py --outer 1 --repeats 2
        echo "== benchmarks/segnet.py"; time $py benchmarks/segnet.py --repeats 2
    } > "$OUT/bench.log" 2>&1
    ;;
paper)
    extra=()
    if [ "$PROFILE" = paper ] && \
       ! $py -m pytest -q -x tests/test_cuda.py > "$OUT/cuda_tests.log" 2>&1; then
        extra=(--set cuda_graph=False)
        echo "CUDA tests failed (cuda_tests.log): notebooks run with cuda_graph=False" \
            >> "$OUT/device.log"
    fi
    start=$(date +%s)
    # all four notebooks at once: lp_bound and sky_histogram are CPU work, and the
    # GPU notebooks' captured steps leave the CPU cores free for them
    # stopped before the device's 10-minute limit so that what finished still comes back;
    # run `paper` again on the still-warm machine and the notebooks resume from .cache/
    timeout "${PAPER_LIMIT_S:-540}" \
        $py -m f1lib.reproduce --profile "$PROFILE" --jobs 4 "${extra[@]}" > "$OUT/paper.log" 2>&1
    status=$?
    [ $status -eq 124 ] && echo "stopped after ${PAPER_LIMIT_S:-540} s: run paper again to resume" \
        >> "$OUT/device.log"
    cp -r .cache/reproduce "$OUT/notebook_logs" 2>/dev/null
    echo "reproduce --profile $PROFILE ${extra[*]}: exit $status, $(( $(date +%s) - start )) s" \
        | tee -a "$OUT/device.log"
    tar czf "$OUT/results.tgz" book/*.ipynb figures README.md
    ;;
*)
    echo "unknown phase $phase: bench or paper" >&2; exit 2
    ;;
esac
