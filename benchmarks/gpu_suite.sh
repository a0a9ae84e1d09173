#!/usr/bin/env bash
# Issue 6's GPU figures in one call on a lent H100/H200 (the device tool; see docs/PERFORMANCE.md).
#
#   bash benchmarks/wheels_for_gpu.sh          # here, once: the wheels below into .whl/
#   bash benchmarks/gpu_suite.sh PART...    PART: env | check | bench | peers (= peers_base
#                                                 peers_large) | flags | profile | recipe | attn |
#                                                 gelu | more;  PROFILE_ONLY=large128 profiles
#                                                 one shape
#
# Each BERT-large run takes ~85 s on an H100/H200 (mostly XLA's compile and GEMM autotuning):
# pick parts to fit the device tool's 10-minute command limit.
#
# Uses the machine's own jax/jaxlib (CUDA) with what it lacks carried as wheels in .whl/ (gitignored;
# fetch them with `pip download --no-deps` for the machine's Python): ml-collections, grain,
# array-record, portpicker; the pinned flax and optax, used only with PINS=1 (if the machine's own
# do not run bertjax); transformers<5 for Hugging Face's Flax BERT, with the tokenizers and
# huggingface_hub it accepts. Logs (tarred, logs.tgz) and one JSON line per bench run
# (results.jsonl) go to $OUT.
set -u
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD
PY=python3
CUDNN=(--config.model.attention_dropout_rate=0.0 --config.model.attention_impl=cudnn)
RUN=(--peers none --rounds 1 --steps 10 --warmup 3)

setup() {
  if [ -d .whl ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/ml_collections-*.whl .whl/grain-*.whl .whl/array_record-*.whl .whl/portpicker-*.whl
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/pins .whl/flax-*.whl .whl/optax-*.whl
    # transformers 4.x (the last with Flax BERT) and the tokenizers / huggingface_hub it accepts
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/hf .whl/transformers-*.whl \
      .whl/tokenizers-*.whl .whl/huggingface_hub-*.whl
    export PYTHONPATH=$PWD:/tmp/site
  fi
  # PINS=1: the project's flax and optax instead of the machine's (if bertjax does not run there).
  if [ "${PINS:-0}" = 1 ]; then export PYTHONPATH=$PWD:/tmp/pins:/tmp/site; fi
}

# bench NAME TIMEOUT ARGS...: one bench run; the table to stdout, the JSON line to results.jsonl.
bench() {
  local name=$1 limit=$2
  shift 2
  echo "== $name: ${XLA_FLAGS:-} $*"
  timeout "$limit" $PY -m bertjax.bench "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  grep -v '^{' "$OUT/$name.log" | grep -v -i "warning\|^I[0-9]\|^W[0-9]" | tail -8
  if [ $rc -eq 0 ]; then
    tail -1 "$OUT/$name.log" | $PY -c "import json,sys; r=json.load(sys.stdin); r['name']='$name'; r['xla_flags']='${XLA_FLAGS:-}'; print(json.dumps(r))" >>"$OUT/results.jsonl"
  else
    echo "   exit $rc"; tail -3 "$OUT/$name.log"
  fi
}

part_env() {
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  $PY -c "import jax, jaxlib, flax, optax, ml_collections; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__); print(jax.devices())"
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
}

part_check() { timeout 180 $PY benchmarks/gpu_check.py 2>&1 | grep -v -i warning | tee "$OUT/check.log"; }

part_bench() {  # BERT-base and -large at 128 and 512, bf16, cuDNN attention, no remat
  bench large128 180 --config configs/bert_large.py --batch_size 256 --seq_len 128 "${CUDNN[@]}" "${RUN[@]}"
  bench large512 180 --config configs/bert_large.py --batch_size 64 --seq_len 512 "${CUDNN[@]}" "${RUN[@]}"
  bench base128 150 --config configs/bert_base.py --batch_size 256 --seq_len 128 "${CUDNN[@]}" "${RUN[@]}"
  bench base512 150 --config configs/bert_base.py --batch_size 64 --seq_len 512 "${CUDNN[@]}" "${RUN[@]}"
}

part_peers() { part_peers_base; part_peers_large; }

part_peers_base() {  # PyTorch (bf16 autocast, SDPA, fused AdamW) and HF Flax BERT beside BERT-base
  # at 128, JAX held to 45% of the GPU's memory so that PyTorch has the rest
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.45 PYTHONPATH=$PYTHONPATH:/tmp/hf bench peers_base128 300 \
    --config configs/bert_base.py --batch_size 256 --seq_len 128 "${CUDNN[@]}" \
    --peers hf_flax,torch --rounds 1 --steps 10 --warmup 3
}

part_peers_large() {  # PyTorch beside BERT-large at 512: batch 64 fits 45% of an H200, 32 of an H100
  local mib b=32
  mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1)
  [ "${mib:-0}" -gt 100000 ] && b=64
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.45 bench peers_large512 300 --config configs/bert_large.py \
    --batch_size $b --seq_len 512 "${CUDNN[@]}" --peers torch --rounds 1 --steps 10 --warmup 3
}

part_flags() {  # cuBLAS for every matmul instead of XLA's Triton GEMM choices
  XLA_FLAGS=--xla_gpu_enable_triton_gemm=false bench base128_notriton 150 \
    --config configs/bert_base.py --batch_size 256 --seq_len 128 "${CUDNN[@]}" "${RUN[@]}"
  XLA_FLAGS=--xla_gpu_enable_triton_gemm=false bench large128_notriton 180 \
    --config configs/bert_large.py --batch_size 256 --seq_len 128 "${CUDNN[@]}" "${RUN[@]}"
}

part_profile() {  # per-kernel trace + compiled HLO of two steps, kept under $OUT/prof_*
  for spec in "large128 configs/bert_large.py 256 128" "base512 configs/bert_base.py 64 512"; do
    set -- $spec
    if [ -n "${PROFILE_ONLY:-}" ] && [ "$1" != "$PROFILE_ONLY" ]; then continue; fi
    echo "== profile $1"
    timeout 240 $PY benchmarks/profile_step.py --config "$2" --batch_size "$3" --seq_len "$4" \
      "${CUDNN[@]}" --steps 10 --profile --save_to "$OUT/prof_$1" 2>&1 | grep -v -i "warning\|^I[0-9]\|^W[0-9]" | tail -25
  done
}

part_attn() {  # XLA's own attention (no custom call) against the cuDNN rows of part_bench
  bench base128_xlaattn 150 --config configs/bert_base.py --batch_size 256 --seq_len 128 \
    --config.model.attention_dropout_rate=0.0 --config.model.attention_impl=xla "${RUN[@]}"
  bench large128_xlaattn 180 --config configs/bert_large.py --batch_size 256 --seq_len 128 \
    --config.model.attention_dropout_rate=0.0 --config.model.attention_impl=xla "${RUN[@]}"
}

part_gelu() {  # google-research/bert's tanh GELU, which cuBLASLt applies in the GEMM epilogue
  XLA_FLAGS=--xla_gpu_enable_cublaslt=true bench large128_tanh_lt 180 \
    --config configs/bert_large.py --batch_size 256 --seq_len 128 "${CUDNN[@]}" \
    --config.model.hidden_act=gelu_tanh "${RUN[@]}"
}

part_more() {  # a larger batch; every flag that helped, with the tanh GELU
  bench large128_b512 180 --config configs/bert_large.py --batch_size 512 --seq_len 128 "${CUDNN[@]}" "${RUN[@]}"
  XLA_FLAGS="--xla_gpu_enable_cublaslt=true --xla_gpu_enable_cudnn_layer_norm=true" \
    bench large128_tanh_lt_ln 180 --config configs/bert_large.py --batch_size 256 --seq_len 128 \
    "${CUDNN[@]}" --config.model.hidden_act=gelu_tanh "${RUN[@]}"
}

part_recipe() {  # BERT's own attention dropout 0.1: the einsum attention path
  bench large128_attndrop 180 --config configs/bert_large.py --batch_size 256 --seq_len 128 "${RUN[@]}"
}

setup
for part in "$@"; do "part_$part"; done
(cd "$OUT" && ls *.log >/dev/null 2>&1 && tar czf logs.tgz *.log && rm -f *.log)
echo "== results"
[ -f "$OUT/results.jsonl" ] && $PY -c "
import json
for line in open('$OUT/results.jsonl'):
    r = json.loads(line)
    peers = ' '.join(f\"{k} {v['step_ms']:.1f}ms x{v['bertjax_speedup']:.2f}\" for k, v in r['peers'].items())
    print(f\"{r['name']:20} {r['step_ms']:8.1f} ms {r['sequences_per_sec']:8.1f} seq/s {r['model_tflops_per_sec']:7.1f} TFLOP/s MFU {100*r['mfu']:5.1f}% {peers}\")
"
