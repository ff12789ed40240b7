#!/usr/bin/env bash
# Small-scale reproduction of the paper's SST-5 and IMDB tables (docs/reproduction.md).
# Each run prints one JSON line (test accuracy at the best-validation epoch, parameters,
# compression, seconds); results go to OUT (default ./repro). Needs TINYTT_DATA.
#
#   TINYTT_DATA=../shared/data bash examples/reproduce_tables.sh [OUT]
#
# Budget (stated in docs/reproduction.md): 1-layer BiLSTM, hidden 128, embedding 256,
# dropout 0.5, Adam 1e-3, batch 64; SST-5 6 epochs at 256 tokens, IMDB 3 epochs at 256 tokens,
# SST-2 3 epochs at 64 tokens; Penn Treebank: a 1-layer LSTM language model, 2 epochs.
set -uo pipefail
out="${1:-repro}"
mkdir -p "$out"
common=(--task classify --model bilstm --readout mean --emb-dim 256 --hidden 128 --layers 1
        --dropout 0.5 --lr 1e-3 --batch-size 64 --seed 0 --json --no-progress)
run() {  # name, extra args...
  local name="$1"; shift
  echo "== $name: tinytt train ${common[*]} $*" >&2
  python -m tinytt train "${common[@]}" "$@" > "$out/$name.json" 2> "$out/$name.log" \
    && tail -n 1 "$out/$name.json" >&2 || echo "   $name failed (see $out/$name.log)" >&2
}
sst=(--dataset sst5 --max-len 256 --vocab-size 17200 --epochs 6)
run sst5_full  "${sst[@]}" --embedding dense
run sst5_tt1   "${sst[@]}" --embedding tt --tt-shape 24,25,30x4,8,8 --rank 16
run sst5_tt2   "${sst[@]}" --embedding tt --tt-shape 10,10,12,15x4,4,4,4 --rank 16
run sst5_tt3   "${sst[@]}" --embedding tt --tt-shape 4,5,5,5,6,6x2,2,2,2,4,4 --rank 16
imdb=(--dataset imdb --max-len 256 --vocab-size 25000 --epochs 3)
run imdb_full  "${imdb[@]}" --embedding dense
run imdb_tt1   "${imdb[@]}" --embedding tt --tt-shape 25,30,40x4,8,8 --rank 16
run imdb_tt2   "${imdb[@]}" --embedding tt --tt-shape 10,10,15,20x4,4,4,4 --rank 16
run imdb_tt3   "${imdb[@]}" --embedding tt --tt-shape 5,5,5,5,6,8x2,2,2,2,4,4 --rank 16
run imdb_tt1_r8 "${imdb[@]}" --embedding tt --tt-shape 25,30,40x4,8,8 --rank 8
run imdb_tt2_r8 "${imdb[@]}" --embedding tt --tt-shape 10,10,15,20x4,4,4,4 --rank 8
run imdb_tt3_r8 "${imdb[@]}" --embedding tt --tt-shape 5,5,5,5,6,8x2,2,2,2,4,4 --rank 8
sst2=(--dataset sst2 --max-len 64 --vocab-size 15000 --epochs 3)
run sst2_full  "${sst2[@]}" --embedding dense
run sst2_tt1   "${sst2[@]}" --embedding tt --cores 3 --rank 16
# Penn Treebank language model (its own settings, so not through ``run``'s classifier options)
lm=(--task lm --dataset ptb --emb-dim 256 --hidden 256 --layers 1 --dropout 0.3 --lr 2e-3 --batch-size 64
    --bptt 35 --vocab-size 10002 --epochs 2 --seed 0 --json --no-progress)
for emb in dense tt; do
  echo "== ptb_$emb: tinytt train ${lm[*]} --embedding $emb" >&2
  extra=(); [ "$emb" = tt ] && extra=(--cores 3 --rank 16)
  python -m tinytt train "${lm[@]}" --embedding "$emb" "${extra[@]}" > "$out/ptb_$emb.json" 2> "$out/ptb_$emb.log" \
    && tail -n 1 "$out/ptb_$emb.json" >&2 || echo "   ptb_$emb failed (see $out/ptb_$emb.log)" >&2
done
