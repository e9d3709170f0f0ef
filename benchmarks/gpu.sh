#!/usr/bin/env bash
# The GPU run of issue 17, one script for a lent GPU machine (about 6 minutes in all).
#
#   PYTHONPATH=. bash benchmarks/gpu.sh            # on the GPU machine, in the repo root; results in $OUT
#   PYTHON=.venv/bin/python OUT=/tmp/gpu bash benchmarks/gpu.sh --tiny   # dry run on the CPU, tiny sizes
#
# Parts, each under its own timeout so that one hang loses only itself; each writes Markdown
# (and JSON where the harness does) under $OUT/<part>/, and its log to $OUT/<part>.log:
#   env          the card, driver, JAX devices and versions
#   init_check   the fast eager init's draws equal jax.random's on this backend, eager nn.run == jitted
#   train_f32    the train-step tables (tiny, mlp, cnn, transformer, lstm): tlean, raw JAX, flax.nnx,
#                flax.linen, equinox, float32 (PyTorch left out: its stepper runs on the CPU)
#   extras       bfloat16 train steps (tlean vs raw JAX) and attention through
#                jax.nn.dot_product_attention(implementation="cudnn" vs "xla")
#   first_model  a fresh process builds ResNet-18 and GPT-2 small (tlean, PyTorch, flax.nnx, equinox)
#   generate     greedy tokens/s, GPT-2 small and Llama shapes, batch 1 and 8, against transformers (on CUDA)
# Finally $OUT/summary.md concatenates every part's Markdown.
set -u
PYTHON=${PYTHON:-python3}
OUT=${OUT:-benchmarks/results/gpu}
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-.}
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # several processes share the card (first_model's children)
QUICK=""
ROUNDS=3
SCALE=1
if [ "${1:-}" = "--tiny" ]; then QUICK="--quick"; ROUNDS=1; SCALE=3; fi  # CPU dry runs compile slower
mkdir -p "$OUT"
START=$(date +%s)

part() {  # part NAME SECONDS COMMAND...
  local name=$1 limit=$(( $2 * SCALE )); shift 2
  local t0=$(date +%s)
  echo "[gpu.sh] $name (limit ${limit}s) ..."
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "[gpu.sh] $name: exit $rc after $(( $(date +%s) - t0 ))s (total $(( $(date +%s) - START ))s)"
  [ $rc -eq 0 ] || tail -n 20 "$OUT/$name.log"
}

part env 30 bash -c "nvidia-smi || true; $PYTHON -c 'import jax, jaxlib; print(jax.__version__, jaxlib.__version__, jax.devices(), jax.devices()[0].device_kind)'; $PYTHON -c 'import torch; print(torch.__version__, torch.cuda.is_available())'; $PYTHON -m pip list 2>/dev/null | grep -iE '^(jax|flax|equinox|optax|torch|transformers|nvidia-cudnn)' "
part init_check 45 $PYTHON -m benchmarks.init_check $QUICK
part train_f32 140 $PYTHON -m benchmarks $QUICK --models tiny,mlp,cnn,transformer,lstm --frameworks tlean,raw,nnx,linen,equinox --rounds $ROUNDS --out "$OUT/train_f32" --no-chart
part extras 70 $PYTHON -m benchmarks.gpu_extras $QUICK --out "$OUT/extras"
part first_model 70 $PYTHON -m benchmarks $QUICK --models first_model --rounds 1 --out "$OUT/first_model" --no-chart
part generate 80 $PYTHON -m benchmarks $QUICK --models generate --rounds 1 --out "$OUT/generate" --no-chart

{
  echo "# tlean on the GPU (benchmarks/gpu.sh${QUICK:+ --tiny})"; echo
  echo '```'; cat "$OUT/env.log"; echo; cat "$OUT/init_check.log"; echo '```'; echo
  for p in train_f32 first_model generate; do
    [ -f "$OUT/$p/benchmarks.md" ] && sed -n '/^## Results/,$p' "$OUT/$p/benchmarks.md" && echo
  done
  [ -f "$OUT/extras/gpu_extras.md" ] && cat "$OUT/extras/gpu_extras.md"
} > "$OUT/summary.md"
echo "[gpu.sh] done in $(( $(date +%s) - START ))s; summary: $OUT/summary.md"
