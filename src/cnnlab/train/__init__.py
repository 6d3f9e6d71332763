"""Training and evaluation: recipes (recipe.py), optimizers and schedules (optim.py), the loop with exact
resume (loop.py), checkpoints (checkpoint.py), evaluation with TTA and ensembles (evaluate.py), DDP (ddp.py).

Nothing is imported here: `cnnlab models` and friends should not pay for torch's optimizer machinery.
"""
