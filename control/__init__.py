"""The controller's world: loading V+M, acting in real envs, CMA-ES training and evaluation."""
