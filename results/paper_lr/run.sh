#!/bin/bash
# Issue 17, lever "learning rates": PPO at a third of the policy learning rate (3e-5 instead of
# 1e-4) for three times the iterations (144), so the policy drifts about as far as in 48
# iterations at 1e-4 but each step averages three times the data. SFT, tokenizer, PRM data and
# PRM linked from runs/paper/seedN. Waits for the PRM-data job to finish (one job on 2 cores).
while pgrep -f "runs/paper_data4/run.sh" >/dev/null; do sleep 10; done
cd <worktree of 0c4f1d4>
start=$(date +%s)
PYTHONPATH=<worktree of 0c4f1d4> /work/main/.venv/bin/python scripts/ablation.py --preset paper --seeds 3 \
  --only sft,sparse --set rl.steps=144 --set rl.policy_lr=3e-5 \
  --runs runs/paper_lr --out /work/main/results/paper_lr > runs/paper_lr/run.log 2>&1
echo "rc $? wall $(( $(date +%s) - start )) s $(date)" >> runs/paper_lr/timing.txt
