#!/bin/bash
# Issue 17, target 3: four times the PRM data (collect.num_prompts 256 instead of 64: 2048
# responses per seed), from each paper seed's SFT policy and 48-iteration baseline checkpoints;
# then the policy-initialised PRM (selection full, within-task early stopping) and the frozen
# SmolLM2 PRM (as results/paper_frozen_prm) on it.
set -u
cd <worktree of 0c4f1d4>
PY=/work/main/.venv/bin/python
R=runs
export PYTHONPATH=<worktree of 0c4f1d4> TQDM_DISABLE=1
for s in 0 1 2; do
  d=$R/paper_data4/seed$s; mkdir -p $d
  for x in tokenizer sft rl_baseline; do [ -e $d/$x ] || ln -s $R/paper/seed$s/$x $d/$x; done
  start=$(date +%s)
  $PY -m prmfast.train collect --preset paper --out $d --set seed=$s --set collect.num_prompts=256 > $R/paper_data4/seed${s}_collect.log 2>&1
  echo "seed $s collect rc $? wall $(( $(date +%s) - start )) s $(date)" >> $R/paper_data4/timing.txt
  start=$(date +%s)
  $PY -m prmfast.train prm --preset paper --out $d --set seed=$s --set collect.num_prompts=256 \
    --set prm.selection=full --set prm.early_stop=within_task > $R/paper_data4/seed${s}_prm.log 2>&1
  echo "seed $s prm rc $? wall $(( $(date +%s) - start )) s $(date)" >> $R/paper_data4/timing.txt
done
for s in 0 1 2; do
  d=$R/paper_data4/frozen_seed$s; mkdir -p $d
  for x in tokenizer sft rl_baseline; do [ -e $d/$x ] || ln -s $R/paper/seed$s/$x $d/$x; done
  [ -e $d/prm_data ] || ln -s $R/paper_data4/seed$s/prm_data $d/prm_data
  start=$(date +%s)
  $PY -m prmfast.train prm --preset paper --out $d --set seed=$s --set collect.num_prompts=256 \
    --set prm.selection=full --set prm.early_stop=within_task --set prm.layer=20 \
    --set prm.pretrained=/work/shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \
    > $R/paper_data4/frozen_seed${s}.log 2>&1
  echo "seed $s frozen prm rc $? wall $(( $(date +%s) - start )) s $(date)" >> $R/paper_data4/timing.txt
done
