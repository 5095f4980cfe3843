"""PPO with unit-test, partial-credit, PRM-dense and oracle-dense rewards (arXiv 2410.17621).

    rewards.py     reward variants -> inputs of kernels.dense_rewards_gae (pure functions)
    algos.py       whitening, KL estimate, LR schedules, checkpoint spacing, per-step seeds
    loss.py        PPOLoss (wraps kernels.ppo_loss)
    experience.py  packed batch, model forwards, make_experience
    trainer.py     PPOTrainer: one iteration, the update, resumable state
    stage.py       the RL stages of `python -m prmfast.train`
"""
from prmfast.rl.algos import checkpoint_steps, lr_factor, whiten
from prmfast.rl.experience import Experience, PackedBatch, ResponseFacts, make_experience
from prmfast.rl.loss import PPOLoss
from prmfast.rl.rewards import REWARDS, RewardInputs, line_rewards

__all__ = ["REWARDS", "Experience", "PPOLoss", "PackedBatch", "ResponseFacts", "RewardInputs",
           "checkpoint_steps", "line_rewards", "lr_factor", "make_experience", "whiten"]
