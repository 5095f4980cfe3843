#!/usr/bin/env bash
# Everything that needs a GPU, in one pass (a lent GPU machine's image already has torch, Triton,
# transformers, numba and pybind11, but no network): build the package in place, run the tests
# marked gpu, time the Triton kernels (bench/gpu_check.py), then the smoke pipeline on CUDA.
#
#     bash bench/gpu_session.sh OUT_DIR [MUTANT_KERNELS_DIR]
#
# With MUTANT_KERNELS_DIR (a copy of an older kernels/ folder) the GPU kernel tests also run
# against those kernels, which should fail where a fix went in; kernels/ is restored after.
set -uo pipefail
out=${1:?usage: bash bench/gpu_session.sh OUT_DIR [MUTANT_KERNELS_DIR]}
mutant=${2:-}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0 TOKENIZERS_PARALLELISM=false
py=${PYTHON:-python3}
nvidia-smi -L
$py -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', \
triton.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
$py -m pip install -q --no-deps --no-build-isolation -e . > "$out/install.log" 2>&1 || {
  tail -5 "$out/install.log"; echo "pip failed: building in place instead"
  $py setup.py -q build_ext --inplace && ln -sfn ../../kernels prmfast/kernels/triton \
    && export PYTHONPATH=$PWD; } || exit 1
$py -m pytest -q -p no:cacheprovider -m gpu tests/kernels/test_kernels_triton_on_gpu.py \
  tests/test_device.py 2>&1 | tee "$out/gpu_tests.log" | tail -15
$py bench/gpu_check.py "$out/gpu_check.json" 2>&1 | tee "$out/gpu_check.log"
start=$(date +%s)
$py -m prmfast.train --preset smoke --set model.device=cuda --out /tmp/prmfast_gpu_smoke > "$out/smoke.log" 2>&1
echo "smoke pipeline, model.device=cuda: rc=$? in $(( $(date +%s) - start )) s"
cp /tmp/prmfast_gpu_smoke/report.md "$out/smoke_report.md" 2>/dev/null
if [[ -n "$mutant" ]]; then
  rm -rf /tmp/kernels_kept && cp -r kernels /tmp/kernels_kept && cp "$mutant"/*.py kernels/
  $py -m pytest -q -p no:cacheprovider tests/kernels/test_kernels_triton_on_gpu.py 2>&1 \
    | tee "$out/mutant_tests.log" | tail -8
  rm -rf kernels && cp -r /tmp/kernels_kept kernels
fi
