"""The learned parts of the world model: V (ConvVAE) and M (MDN-RNN)."""

from models.mdnrnn import (
    CARRACING_CONFIG,
    DOOM_CONFIG,
    MDNRNN,
    LSTMState,
    MDNOutput,
    MDNRNNConfig,
    SingleBiasLSTM,
    done_from_logit,
    done_loss,
    gmm_nll,
    mdnrnn_loss,
    reward_loss,
    sample_next_z,
)
from models.vae import ConvVAE, VAEConfig, frames_to_tensor, vae_loss

__all__ = [
    "CARRACING_CONFIG",
    "DOOM_CONFIG",
    "MDNRNN",
    "ConvVAE",
    "LSTMState",
    "MDNOutput",
    "MDNRNNConfig",
    "SingleBiasLSTM",
    "VAEConfig",
    "done_from_logit",
    "done_loss",
    "frames_to_tensor",
    "gmm_nll",
    "mdnrnn_loss",
    "reward_loss",
    "sample_next_z",
    "vae_loss",
]
