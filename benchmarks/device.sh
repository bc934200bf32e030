#!/usr/bin/env bash
# A GPU session's work for issue 7, fitted to its 15 minutes of device time (machine
# start included) and the tool's 10 minutes per command. The same command, called twice
# in a row on one warm machine, does all of it; each step is done once, and each call
# stops itself LIMIT_S seconds after it began so that what it finished comes back:
#
#   1. the CUDA tests (captured steps against eager); if those of capture fail, the
#      notebooks run with cuda_graph=False, and device.log says so
#   2. the benchmarks (smnist.py, segnet.py, and both with --profile), once each, on the GPU alone
#   3. the paper profile's notebooks, all at once (python -m f1lib.reproduce --only the
#      unfinished ones); their runs' checkpoints in .cache/ outlive a call on the warm
#      machine, so the second call resumes them
#
# From the repository root here, after `bash benchmarks/device_setup.sh` (it fills .device):
#   run(carry=[".device"], timeout_s=600,
#       command="F1LIB_GIT_COMMIT=<local HEAD> bash benchmarks/device.sh")
#   run(..., timeout_s=<device time left>,
#       command="LIMIT_S=<that, less 30> F1LIB_GIT_COMMIT=<local HEAD> bash benchmarks/device.sh")
# The second call must follow at once: an idle machine goes back after 30 seconds, and
# everything on it with it. Each call writes to $OUT (at most 8 files come back):
#   device.log     the machine, the commit, what each step did and how long it took
#   cuda_tests.log, paper.log, bench.log
#   results.tgz    the notebooks that finished in this call, the figures/ files that they
#                  wrote, and the notebooks' logs: here, benchmarks/collect_call.py puts
#                  each where it belongs and rebuilds the README's tables
# The tracked files are sent afresh with every call, so a call's tarball holds only its
# own notebooks. If the session ends first, the tarball's .cache/<notebook>-paper/*.json
# are the runs that did finish, beside FINGERPRINT (the f1lib source that trained them,
# which this script writes). Committed in benchmarks/runs/<session>/<notebook>-paper/,
# they are readied for a later session by device_setup.sh (through
# benchmarks/carry_runs.py, while the source that trains them is unchanged) and put back
# in .cache/ here, so that they are not trained again. benchmarks/collect_call.py does the
# unpacking, keeps the runs and logs in benchmarks/runs/, and rebuilds the README's
# and the book's tables.
# Settings: PROFILE (paper), NOTEBOOKS (the stems, default every one), JOBS (4), LIMIT_S
# (570), BENCH (1: every benchmark; 0: none; or the names of those to run: smnist,
# segnet, profile, segnet-profile, segnet-concurrent and cpu-share), PY (python3), CUDA_TESTS (1; 0
# skips them, see step 1), SET (notebook parameters, NAME=VALUE ..., passed to
# f1lib.reproduce --set; for rehearsals, see benchmarks/RESULTS.md).
# Its progress is kept in .cache/device (rm -r it to start over). Here, without a GPU:
#   OUT=/tmp/out PROFILE=smoke BENCH=0 PY=.venv/bin/python bash benchmarks/device.sh
set -uo pipefail
cd "$(dirname "$0")/.."
began=$(date +%s)
OUT=${OUT:?set OUT to the folder that comes back}
PROFILE=${PROFILE:-paper}
LIMIT_S=${LIMIT_S:-570}
BENCH=${BENCH:-1}
JOBS=${JOBS:-4}
py=${PY:-python3}
state=.cache/device  # ignored by git: it survives between calls on a warm machine
mkdir -p "$OUT" "$state" .cache/reproduce
left() { echo $(( LIMIT_S - ($(date +%s) - began) )); }
settled() { [ -e "$state/done_$1" ] || [ -e "$state/failed_$1" ]; }
say() { echo "[$(date -u +%H:%M:%S), ${SECONDS}s] $*" | tee -a "$OUT/device.log"; }

if [ -d .device ] && ls .device/*.whl >/dev/null 2>&1; then
    if [ ! -e /tmp/site/papermill ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
            .device/*.whl || exit 1
    fi
    export PYTHONPATH=/tmp/site:$PWD
    gunzip -kf .device/MNIST/raw/*.gz || exit 1
    export F1LIB_DATA=$PWD/.device
fi
# finished runs that an earlier session brought back (benchmarks/carry_runs.py): the notebooks
# find them in .cache/ and do not train them again; a run already there is kept
carried=0
for folder in .device/runs/*/; do
    [ -d "$folder" ] || continue
    mkdir -p ".cache/$(basename "$folder")"
    for file in "$folder"*.json; do
        target=".cache/$(basename "$folder")/$(basename "$file")"
        [ -e "$file" ] && [ ! -e "$target" ] || continue
        cp "$file" "$target" && carried=$(( carried + 1 ))
    done
done
every="smnist segnet profile segnet-profile segnet-concurrent cpu-share"
case $BENCH in 1) benches=$every ;; 0) benches="" ;; *) benches=$BENCH ;; esac
for name in $benches; do
    if [[ " $every " != *" $name "* ]]; then
        echo "cannot start: BENCH names no benchmark '$name' ($every; 1 for all," \
             "0 for none)" | tee -a "$OUT/device.log" >&2
        exit 2
    fi
done
if [ "${CUDA_TESTS:-1}" != 0 ] && [ "${CUDA_TESTS:-1}" != 1 ]; then
    echo "cannot start: CUDA_TESTS is 1 (run them) or 0 (skip them), not '$CUDA_TESTS'" \
        | tee -a "$OUT/device.log" >&2
    exit 2
fi
# fail in seconds, not after the CUDA tests, when what the notebooks need did not travel
if ! missing=$($py -c "import papermill, pytest" 2>&1); then
    echo "cannot start: ${missing##*$'\n'}; was .device set up (bash benchmarks/device_setup.sh)" \
         "and named in carry?" | tee -a "$OUT/device.log" >&2
    exit 2
fi
all=${NOTEBOOKS:-$(cd book && ls *.ipynb | sed 's/\.ipynb$//' | tr '\n' ' ')}
if [ "$PROFILE" = paper ] && [[ " $all " == *" mnist "* ]] \
        && [ ! -e "${F1LIB_DATA:-.device}/MNIST/raw/train-images-idx3-ubyte" ]; then
    echo "cannot start: the paper profile's MNIST notebook needs the full MNIST in" \
         "\$F1LIB_DATA/MNIST/raw (bash benchmarks/device_setup.sh puts it in .device)" \
        | tee -a "$OUT/device.log" >&2
    exit 2
fi
export F1LIB_GIT_COMMIT=${F1LIB_GIT_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
# the notebooks' records name this commit (f1lib.provenance.git_state), not the HEAD of a
# .git that the GPU machine's copy may hold (there, the last commit landed)
export PYTHONUNBUFFERED=1
# the key of every run this machine trains (f1lib.study), written beside the runs that come back
fingerprint=$($py -c "from f1lib.study import library_fingerprint; print(library_fingerprint())" \
    2>/dev/null)
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
        || echo "no GPU"
    $py -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0])"
    echo "commit $F1LIB_GIT_COMMIT; f1lib ${fingerprint:-unknown};" \
         "profile $PROFILE; limit ${LIMIT_S}s"
} >> "$OUT/device.log" 2>&1
say "call starts; done before: $(cd "$state" && ls | tr '\n' ' ')"
[ $carried -gt 0 ] && say "carried from an earlier session: $carried finished runs (.device/runs)"

# 1. CUDA tests, once. Graphs go off only when capture itself is in doubt: a failed test
# of a captured or sync-free step, or a test run that ended before its verdicts (a failed
# TF32 or other check is reported, and leaves the graphs on). CUDA_TESTS=0 skips them, for a
# session whose f1lib source they passed on the same kind of GPU (a log in benchmarks/runs
# says so): they would tell nothing new, and cost half a minute of its device time
if [ ! -e "$state/cuda_graph" ] && [ "${CUDA_TESTS:-1}" = 0 ]; then
    echo True > "$state/cuda_graph"
    say "CUDA tests skipped (CUDA_TESTS=0); CUDA graphs: True"
fi
if [ ! -e "$state/cuda_graph" ]; then
    $py -m pytest -q tests/test_cuda.py > "$OUT/cuda_tests.log" 2>&1
    code=$?
    if [ $code = 0 ] || { [ $code = 1 ] && ! grep -qE \
            "^(FAILED|ERROR) [^ ]*::test_[a-z0-9_]*(graph|captured|synchronise)" "$OUT/cuda_tests.log"; }; then
        echo True > "$state/cuda_graph"
    else
        echo False > "$state/cuda_graph"
    fi
    say "CUDA tests: exit $code ($(tail -1 "$OUT/cuda_tests.log")); CUDA graphs: $(cat "$state/cuda_graph")"
fi
extra=()
for setting in ${SET:-}; do extra+=(--set "$setting"); done
if [ "$(cat "$state/cuda_graph")" = False ]; then
    extra+=(--set cuda_graph=False)
    say "a CUDA test of captured or sync-free steps failed: notebooks run with cuda_graph=False"
fi

# 2. the benchmarks, first: they are issue 7's measure and take about two minutes, which a
# book that outlasts the session would otherwise leave them without; and they want the GPU
# to themselves. Each runs once, whatever its outcome, for at most 3x its estimate (H100)
bench() {  # NAME SCRIPT SECONDS_IT_NEEDS ARGS...
    local name=$1 script="benchmarks/$2.py" need=$3 code
    local what=$script  # how the log names it: the script, and the label where they differ
    [ "$name" != "$2" ] && what="$script ($name)"
    shift 3
    [ -e "$state/bench_$name" ] && return 0
    if [ "$(left)" -lt $(( need + 30 )) ]; then
        say "$what waits: $(left) s left, it needs about $need"
        return 0
    fi
    local cap=$(( $(left) - 30 < 3 * need ? $(left) - 30 : 3 * need ))
    echo "== $script $*" >> "$OUT/bench.log"
    timeout $cap $py "$script" "$@" >> "$OUT/bench.log" 2>&1
    code=$?
    echo $code > "$state/bench_$name"
    say "$what: exit $code$([ $code = 124 ] && echo ", stopped after $cap s")"
}
for name in $benches; do
    case $name in  # seconds: smnist.py took 120 on an H200 (benchmarks/runs/2026-11-27-h200)
        smnist) bench smnist smnist 120 --outer 1 --repeats 2 ;;
        segnet) bench segnet segnet 75 --repeats 2 ;;  # 60 s before the autotuned row
        # where the 40-run step's time goes: torch.profiler, eager and as a graph (estimate)
        profile) bench profile smnist 60 --profile 30 --outer 1 ;;
        # where the sky notebook's SegNet step spends its time, at the paper profile's size
        segnet-profile) bench segnet-profile segnet 60 --profile 30 --size 128 192 ;;
        # whether the sky notebook's runs train faster six at once than three (its
        # side_by_side), in f1lib's layout; 66 s with --concurrent 3 in all three (H200)
        segnet-concurrent) bench segnet-concurrent segnet 120 --concurrent 3 6 \
            --layouts branches --size 128 192 --inner 100 --repeats 2 ;;
        # four kernels' CPU work at once: torch's threads, or f1lib.reproduce's share (estimate)
        cpu-share) bench cpu-share cpu_share 60 --repeats 1 ;;
    esac
done

# 3. the notebooks not yet finished, stopped in time for the tarball
todo=() launched=()
for name in $all; do settled "$name" || todo+=("$name"); done
# At its limit, reproduce interrupts the notebooks' kernels and gives them GRACE seconds to
# write their studies' checkpoints at the step they stop (f1lib.signals.HeldSignals); 20 s more
# are left for the tarball
GRACE=15
if [ ${#todo[@]} -gt 0 ] && [ "$(left)" -gt $(( 30 + GRACE )) ]; then
    say "notebooks: ${todo[*]} (profile $PROFILE ${extra[*]}), for at most $(( $(left) - 20 )) s"
    launched=("${todo[@]}")
    start=$(date +%s)
    # lp_bound stacks all runs of a variant, so its two jobs want two processes; the other
    # cores stay with the GPU notebooks' host threads
    timeout -k $(( GRACE + 5 )) $(( $(left) - 20 - GRACE )) \
        $py -m f1lib.reproduce --profile "$PROFILE" --jobs "$JOBS" --grace $GRACE \
        --only "${todo[@]}" --set workers=2 "${extra[@]}" > "$OUT/paper.log" 2>&1
    status=$?
    spent=$(( $(date +%s) - start ))
    echo $(( $(cat "$state/paper_s" 2>/dev/null || echo 0) + spent )) > "$state/paper_s"
    for name in "${todo[@]}"; do  # a failed notebook is not tried again
        grep -q "^== $name.ipynb done" "$OUT/paper.log" && touch "$state/done_$name"
        grep -q "^== $name.ipynb FAILED" "$OUT/paper.log" && touch "$state/failed_$name"
    done
    case $status in 124|137) say "stopped at the call's limit: call again to resume" ;; esac
    say "reproduce exit $status after $spent s; notebooks' time over all calls $(cat "$state/paper_s") s"
fi
# what this call finished: the notebooks and the figure files their records list (reproduce
# puts back the figures of a notebook stopped midway, unless the call's SIGKILL came first)
finished=()
for name in "${todo[@]}"; do [ -e "$state/done_$name" ] && finished+=("$name"); done
mapfile -t outputs < <([ ${#finished[@]} -gt 0 ] && $py -c "import sys
from f1lib.provenance import notebook_outputs
for name in sys.argv[1:]:
    print(f'book/{name}.ipynb', *notebook_outputs('figures', name + '.ipynb'), sep='\n')
" "${finished[@]}")
# and the runs that finished inside notebooks that did not (f1lib.study keeps each in
# .cache/<notebook>-<profile>/<key>.json): a later session carries them back and trains
# only the runs still missing
mapfile -t runs_done < <(ls .cache/*-"$PROFILE"/*.json 2>/dev/null)
# with the f1lib source that trained them, for benchmarks/collect_call.py to keep them by; the
# runs carried here were trained by the same (benchmarks/carry_runs.py carries no other)
stamps=()
if [ -n "$fingerprint" ]; then
    for folder in $(printf '%s\n' "${runs_done[@]}" | xargs -r -n1 dirname | sort -u); do
        echo "$fingerprint" > "$folder/FINGERPRINT" && stamps+=("$folder/FINGERPRINT")
    done
fi
# and the logs of the notebooks that ran in this call (a stopped notebook's partial copy,
# beside them, stays here); an earlier call's logs, still on the warm machine, came back then
logs=()
for name in "${launched[@]}"; do
    [ -e ".cache/reproduce/$name.log" ] && logs+=(".cache/reproduce/$name.log")
done
tar czf "$OUT/results.tgz" -T /dev/null "${outputs[@]}" "${runs_done[@]}" "${stamps[@]}" \
    "${logs[@]}"  # -T /dev/null: an empty tarball, not an error, when there is nothing
say "results.tgz: ${#finished[@]} notebooks (${finished[*]}), ${#outputs[@]} files, ${#runs_done[@]} finished runs of unfinished notebooks"

say "call ends"
