#!/usr/bin/env bash
# A GPU run of the training script (python -m model.training.train, seed 0). From scratch, time caps
# end the VAE (3 min) and flow (4.2 min) stages, so the run fits the time it is given on any card;
# training.json records the steps. The shipped `model/checkpoints/kinema-shapes` came from this script
# with KINEMA_VAE_STAGE=model/training/stages/vae-4x.pt and KINEMA_TRAIN_ARGS="--init-from PREVIOUS
# --max-hours 0.125 --checkpoint-every 500": 7.5 minutes of flow on one H200, 8.5 minutes in all.
# KINEMA_TRAIN_ARGS="--vae-spatial 8" builds the previous checkpoint's layout.
#
#   scripts/train_on_gpu.sh [OUT_DIR]     (OUT_DIR: where the pipeline, its tarball and the log go)
#
# On a machine without this project's Python packages, wheels in .whl/ (diffusers, transformers) are
# installed to /tmp/site first. While it trains, the latest checkpoint is copied to OUT_DIR as a tarball
# every 15 s, so a run cut short still leaves a model. KINEMA_TRAIN_ARGS are appended (they win).
# KINEMA_VAE_STAGE names a finished VAE stage (an earlier run's OUT.work/vae.pt, such as the one trained
# on a CPU in model/training/stages/): the run resumes from it and spends its time on the flow stage.
set -u
export PYTHONUNBUFFERED=1
OUT_DIR=${1:-${OUT:-/tmp/kinema-train-out}}
RUN=/tmp/kinema-run
mkdir -p "$OUT_DIR" "$RUN"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$PY -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')" || exit 1

snapshot() {
  if [ -f "$RUN/kinema-shapes/model_index.json" ]; then
    tar -C "$RUN" -czf "$OUT_DIR/kinema-shapes.tgz.partial" kinema-shapes 2>/dev/null \
      && mv "$OUT_DIR/kinema-shapes.tgz.partial" "$OUT_DIR/kinema-shapes.tgz"
  fi
  cp "$RUN/kinema-shapes.work/vae.pt" "$OUT_DIR/vae.pt" 2>/dev/null
}

if [ -n "${KINEMA_VAE_STAGE:-}" ]; then
  mkdir -p "$RUN/kinema-shapes.work" && cp "$KINEMA_VAE_STAGE" "$RUN/kinema-shapes.work/vae.pt" || exit 1
fi
started=$(date +%s)
$PY -m model.training.train --out "$RUN/kinema-shapes" --seed 0 --device cuda --pause-file /nonexistent \
  --vae-frame-steps 100000 --vae-frame-batch 64 --vae-clip-steps 100000 --vae-clip-batch 16 --vae-minutes 3 \
  --clips 20000 --steps 100000 --batch 256 --checkpoint-every 1000 --max-hours 0.07 ${KINEMA_TRAIN_ARGS:-} \
  >"$OUT_DIR/train.log" 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
  sleep 15
  snapshot
  tail -n 1 "$OUT_DIR/train.log"
done
wait "$pid"
rc=$?
snapshot
echo "training exited $rc after $(($(date +%s) - started)) s"
grep -v "Writing model shards" "$OUT_DIR/train.log" | tail -n 60
cp "$RUN/kinema-shapes/training.json" "$OUT_DIR/training.json" 2>/dev/null
exit $rc
