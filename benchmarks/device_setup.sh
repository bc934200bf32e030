#!/usr/bin/env bash
# Prepares .device, the folder that benchmarks/device.sh carries to the GPU machine, from
# ../shared as ../shared/device/README.md describes: the Jupyter stack's wheels (the GPU
# machine has torch, pytest and the scientific stack, but no Jupyter) at .device/*.whl; the
# full MNIST at .device/MNIST/raw/; and at .device/runs/, the finished runs of unfinished
# notebooks that benchmarks/carry_runs.py finds for today's f1lib. Run here, once per
# session, from anywhere:
#   bash benchmarks/device_setup.sh            # SHARED=/path/to/shared to read another copy
# It starts from an empty .device each time, so nothing left there by an older plan travels,
# and checks the MNIST files against the md5 sums that the shared README publishes.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
[ -d "$SHARED/device/wheels" ] || { echo "no $SHARED/device/wheels: set SHARED" >&2; exit 1; }
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
rm -rf .device
mkdir -p .device/MNIST/raw
cp "$SHARED"/device/wheels/*.whl .device/
cp "$SHARED"/data/MNIST/raw/*.gz .device/MNIST/raw/
# the uncompressed files' md5 sums, as ../shared/device/README.md gives them
published="2646ac647ad5339dbf082846283269ea  t10k-images-idx3-ubyte
27ae3e4e09519cfbb04c329615203637  t10k-labels-idx1-ubyte
6bbc9ace898e44ae57da46a324031adb  train-images-idx3-ubyte
a25bea736e30d166cdddb491f175f624  train-labels-idx1-ubyte"
found=$(for f in .device/MNIST/raw/*.gz; do
    echo "$(gunzip -c "$f" | md5sum | cut -d' ' -f1)  $(basename "${f%.gz}")"; done)
[ "$found" = "$published" ] || { echo "MNIST differs from the published md5 sums:" >&2
                                 echo "$found" >&2; exit 1; }
# finished runs of notebooks that an earlier session left unfinished, if today's f1lib trained them
py=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
$py benchmarks/carry_runs.py --into .device/runs
echo ".device: $(ls .device/*.whl | wc -l) wheels, MNIST $(du -sh .device/MNIST | cut -f1);" \
     "$(du -sh .device | cut -f1) in all (the working tree that travels may hold 64 MiB)"
